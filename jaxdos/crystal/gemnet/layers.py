"""GemNet building blocks with parameters: Dense, ResidualLayer, embeddings; scale constants.

Parameter layout (shared by every GemNet module; the converter relies on it):
    torch `X.linear.weight [out, in]`  ->  flax `X/linear/kernel [in, out]` (transpose);
    torch `X.bias`                     ->  flax `X/bias`;
    torch `nn.Embedding.weight [n, d]` ->  flax `X/embedding [n, d]` (same layout);
    torch ModuleList / Sequential index `X.<i>` -> flax `X_<i>` (`dense_mlp.0` -> `dense_mlp_0`).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.typing import Array

__all__ = [
    "he_orthogonal_init",
    "torch_linear_kernel_init",
    "torch_linear_bias_init",
    "scaled_silu",
    "Dense",
    "ResidualLayer",
    "AtomEmbedding",
    "EdgeEmbedding",
    "TorchLinear",
]


def he_orthogonal_init(key, shape, dtype=jnp.float32) -> Array:
    """GemNet's He-orthogonal init: orthogonal, standardised over fan-in, times 1/sqrt(fan_in).

    `shape` is the flax layout, fan-in leading (`[in, out]`, or `[..., in, out]` for 3-D weights
    whose fan-in is every axis but the last).
    """
    fan_in = math.prod(shape[:-1])
    w = jax.nn.initializers.orthogonal()(key, (fan_in, shape[-1]), dtype)
    mean = jnp.mean(w, axis=0, keepdims=True)
    var = jnp.var(w, axis=0, keepdims=True, ddof=1)
    w = (w - mean) / jnp.sqrt(var + 1e-6)
    return (w / math.sqrt(fan_in)).reshape(shape)


def torch_linear_kernel_init(key, shape, dtype=jnp.float32) -> Array:
    """torch.nn.Linear's default weight init, U(+-1/sqrt(fan_in)), in flax `[in, out]` layout."""
    bound = 1.0 / math.sqrt(shape[0])
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_linear_bias_init(fan_in: int):
    """torch.nn.Linear's default bias init, U(+-1/sqrt(fan_in))."""

    def init(key, shape, dtype=jnp.float32):
        bound = 1.0 / math.sqrt(fan_in)
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def scaled_silu(x: Array) -> Array:
    """GemNet's "swish": SiLU(x) / 0.6, keeping activations near unit variance."""
    return jax.nn.silu(x) * (1.0 / 0.6)


class TorchLinear(nn.Module):
    """A plain torch.nn.Linear (default torch init); params `kernel [in, out]`, `bias`."""

    features: int
    use_bias: bool = True
    zero_init: bool = False  # the adapters' mix-in layers start at exactly zero

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = nn.initializers.zeros if self.zero_init else torch_linear_kernel_init
        kernel = self.param("kernel", init, (x.shape[-1], self.features))
        y = x @ kernel
        if self.use_bias:
            y = y + self.param("bias", torch_linear_bias_init(x.shape[-1]), (self.features,))
        return y


class Dense(nn.Module):
    """GemNet `Dense`: `linear` (no bias unless asked, He-orthogonal) then optional ScaledSiLU."""

    features: int
    activation: bool = False
    use_bias: bool = False
    zero_init: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        init = nn.initializers.zeros if self.zero_init else he_orthogonal_init
        y = nn.Dense(self.features, use_bias=self.use_bias, kernel_init=init, name="linear")(x)
        return scaled_silu(y) if self.activation else y


class ResidualLayer(nn.Module):
    """(x + Dense_swish(Dense_swish(x))) / sqrt(2); params `dense_mlp_{0,1}/linear/kernel`."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        y = Dense(d, activation=True, name="dense_mlp_0")(x)
        y = Dense(d, activation=True, name="dense_mlp_1")(y)
        return (x + y) * (1.0 / math.sqrt(2.0))


class AtomEmbedding(nn.Module):
    """Embedding(101, D) looked up at Z - 1 (Z = 101 is the D3PM mask); `embeddings/embedding`.

    Padding atoms (Z = 0) read row 0; callers mask them.
    """

    emb_size: int
    num_classes: int = 101

    @nn.compact
    def __call__(self, z: Array) -> Array:
        s = math.sqrt(3.0)
        table = nn.Embed(
            self.num_classes,
            self.emb_size,
            embedding_init=lambda k, sh, dt=jnp.float32: jax.random.uniform(k, sh, dt, -s, s),
            name="embeddings",
        )
        return table(jnp.clip(z - 1, 0, self.num_classes - 1))


class EdgeEmbedding(nn.Module):
    """Dense_swish([h_s; h_t; m]) per edge (GemNet `EdgeEmbedding`, param `dense/linear/kernel`)."""

    features: int

    @nn.compact
    def __call__(self, h: Array, m: Array, idx_s: Array, idx_t: Array) -> Array:
        x = jnp.concatenate([h[idx_s], h[idx_t], m], axis=-1)
        return Dense(self.features, activation=True, name="dense")(x)
