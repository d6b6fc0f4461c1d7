"""Score network q_θ of the DOSSampler: a bidirectional DiT with AdaLN-Zero (Appendix C.1).

Input: tokens `[B, L]` (ids of `jaxdos.kernels.tokenizer`, [MASK] = 1026), log K `[B]` and t `[B]`.
Output: float32 log-probabilities `[B, L, V']` over the V' = 1026 predictable classes (1025 levels
and [BG]); [MASK] is never predicted because the head has no column for it. At positions whose
input is already unmasked the output is the one-hot of that token (SUBS "carry-over"), so a
committed bin is never resampled by the predictor and a [BG] prior is inert.

Conditioning follows MDLM's DiT: c = SiLU(MLP(Fourier(log K))) + SiLU(MLP(Fourier(t))) modulates
every block's two LayerNorms (shift, scale) and gates both residual branches; the modulation, the
final AdaLN and the output head start at zero, so the network starts as the uniform distribution.

Positions use a learned absolute embedding instead of RoPE: a DOS bin's meaning is tied to its
energy (E_F sits between bins 127 and 128), and with an all-[MASK] input a purely relative encoding
could not tell bins apart, so it could not even learn the per-bin marginals.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.tokenizer import MASK_ID, N_OUTPUT, VOCAB_SIZE
from jaxdos.sampler.config import ModelConfig

__all__ = ["DOSTransformer", "init_params", "log_probs", "embedding_matrix", "CARRY_LOGIT"]

# Log-probability given to the non-carried classes at committed positions. Finite (not -inf) so
# softmax gradients through it stay finite under guidance; exp(-1e6) is exactly 0 in float32.
CARRY_LOGIT = -1e6


def fourier_features(x, dim: int = 256, max_period: float = 1e4):
    """Sinusoidal features `[B] -> [B, dim]` (cos then sin), as in DiT/MDLM timestep embeddings."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = x.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


class _CondMLP(nn.Module):
    """Fourier features of a scalar -> Linear -> SiLU -> Linear, `[B] -> [B, cond_dim]`."""

    cond_dim: int
    input_scale: float

    @nn.compact
    def __call__(self, x):
        h = fourier_features(x * self.input_scale)
        h = nn.silu(nn.Dense(self.cond_dim, name="fc1")(h))
        return nn.Dense(self.cond_dim, name="fc2")(h)


def _modulate(x, shift, scale):
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class _Block(nn.Module):
    """Pre-LN transformer block with AdaLN-Zero modulation, `[B, L, D] -> [B, L, D]`."""

    config: ModelConfig

    @nn.compact
    def __call__(self, x, c):
        cfg = self.config
        dtype = jnp.bfloat16 if cfg.bf16 else jnp.float32
        b, l, d = x.shape
        h_, dh = cfg.num_heads, d // cfg.num_heads
        mod = nn.Dense(6 * d, kernel_init=nn.initializers.zeros, name="adaln")(c)
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(mod, 6, axis=-1)
        # LayerNorm and the residual stream stay float32; only the matmuls run in `dtype`.
        ln = lambda name: nn.LayerNorm(use_bias=False, dtype=jnp.float32, name=name)
        h = _modulate(ln("ln1")(x), shift1, scale1).astype(dtype)
        qkv = nn.Dense(3 * d, use_bias=False, dtype=dtype, name="qkv")(h)
        q, k, v = jnp.split(qkv.reshape(b, l, 3, h_, dh), 3, axis=2)
        attn = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])  # [B, L, H, Dh]
        out = nn.Dense(d, use_bias=False, dtype=dtype, name="attn_out")(attn.reshape(b, l, d))
        x = x + gate1[:, None, :] * out.astype(jnp.float32)
        h = _modulate(ln("ln2")(x), shift2, scale2).astype(dtype)
        h = nn.gelu(nn.Dense(cfg.mlp_ratio * d, dtype=dtype, name="mlp_in")(h), approximate=True)
        h = nn.Dense(d, dtype=dtype, name="mlp_out")(h)
        return x + gate2[:, None, :] * h.astype(jnp.float32)


class DOSTransformer(nn.Module):
    """q_θ: `(tokens [B, L], log_scale [B], t [B]) -> log-probs [B, L, V']` (see module doc)."""

    config: ModelConfig

    @nn.compact
    def __call__(self, tokens, log_scale, t):
        cfg = self.config
        d = cfg.width
        x = nn.Embed(VOCAB_SIZE, d, name="embed")(tokens)
        pos = self.param("pos_embed", nn.initializers.normal(1.0), (N_BINS, d))
        x = (x + pos[None, : tokens.shape[1]]).astype(jnp.float32)
        if not cfg.time_conditioning:
            t = jnp.zeros_like(t)
        # Input scales spread the useful ranges (t in [0, 1], log K in about [-5, 9]) over the
        # Fourier frequencies, as MD4 feeds 1000 t.
        c = nn.silu(_CondMLP(cfg.cond_dim, 100.0, name="scale_embed")(log_scale))
        c = c + nn.silu(_CondMLP(cfg.cond_dim, 1000.0, name="time_embed")(t))
        for i in range(cfg.num_layers):
            x = _Block(cfg, name=f"block_{i}")(x, c)
        shift, scale = jnp.split(
            nn.Dense(2 * d, kernel_init=nn.initializers.zeros, name="final_adaln")(c), 2, axis=-1
        )
        x = _modulate(nn.LayerNorm(use_bias=False, name="final_ln")(x), shift, scale)
        logits = nn.Dense(N_OUTPUT, kernel_init=nn.initializers.zeros, name="head")(x)
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        committed = tokens != MASK_ID
        carry = jnp.where(
            jax.nn.one_hot(tokens, N_OUTPUT, dtype=jnp.bool_), 0.0, jnp.float32(CARRY_LOGIT)
        )
        return jnp.where(committed[..., None], carry, logp)


def init_params(key, config: ModelConfig):
    """Fresh float32 params of `DOSTransformer(config)` (a flax variables dict)."""
    tokens = jnp.full((1, N_BINS), MASK_ID, jnp.int32)
    one = jnp.ones((1,), jnp.float32)
    return DOSTransformer(config).init(key, tokens, one, one)


def log_probs(params, tokens, log_scale, t, *, config: ModelConfig):
    """`DOSTransformer(config).apply`: `[B, L]`, `[B]`, `[B]` -> `[B, L, V']` float32."""
    return DOSTransformer(config).apply(params, tokens, log_scale, t)


def embedding_matrix(params):
    """E `[V', D]`: the token embedding rows of the 1026 predictable classes (no [MASK] row)."""
    return params["params"]["embed"]["embedding"][:N_OUTPUT]
