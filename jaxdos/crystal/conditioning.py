"""Conditioning signals for the GemNet-T adapters: the paper's DOS embedding and MatterGen scalars.

DOS (paper Section 4.2, eq. 2): g = GELU(W2 GELU(LN(W1 log(1 + d) + b1)) + b2), 256 -> 512 -> 512.
Params live under `property_embeddings_adapt_dos_conditional_embedding_module/` as a torch-style
Sequential [Linear, LayerNorm, GELU, Linear, GELU]: `layers_0/{kernel,bias}`,
`layers_1/{scale,bias}` (torch LayerNorm weight/bias), `layers_3/{kernel,bias}`.
The per-block adapters that consume g (eqs. 3-4) are built inside `GemNetT`; an unconditional
crystal (m = 0) gets g = 0 and a zero adapter contribution, as MatterGen's ZerosEmbedding does.

Scalars (MatterGen `PropertyEmbedding` with NoiseLevelEncoding + StandardScalerTorch,
docs/spec/mattergen.md §3.1): no trainable parameters; the scaler statistics are static config
(`ScalarProperty`).
"""

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.crystal.gemnet.basis import noise_level_encoding
from jaxdos.crystal.gemnet.config import ScalarProperty
from jaxdos.crystal.gemnet.layers import TorchLinear
from jaxdos.typing import Array

__all__ = ["DosEmbedding", "ScalarCondition", "scalar_property_embedding"]


class ScalarCondition(NamedTuple):
    """A scalar property value per crystal.

    Fields:
        value: `[G]` float raw property value.
        use_cond: `[G]` bool, False = unconditional (zero embedding, no adapter contribution).
    """

    value: Array
    use_cond: Array


class DosEmbedding(nn.Module):
    """Paper eq. 2: DOS `[G, L]` (states/eV/atom, >= 0) -> g `[G, features]`."""

    features: int = 512

    @nn.compact
    def __call__(self, dos: Array) -> Array:
        # log(1 + d) compresses the 0..~3000 range to ~[0, 8] (paper Section 4.2).
        x = jnp.log1p(jnp.maximum(dos, 0.0))
        x = TorchLinear(self.features, name="layers_0")(x)
        x = nn.LayerNorm(epsilon=1e-5, name="layers_1")(x)
        x = jax.nn.gelu(x, approximate=False)
        x = TorchLinear(self.features, name="layers_3")(x)
        return jax.nn.gelu(x, approximate=False)


def scalar_property_embedding(prop: ScalarProperty, cond: ScalarCondition, dim: int) -> Array:
    """MatterGen's conditional scalar embedding `[G, dim]`, zero where `use_cond` is False."""
    v = jnp.where(cond.use_cond, cond.value.astype(jnp.float32), 1.0)  # NaN-safe placeholder
    if prop.log10:
        v = jnp.log10(v)
    v = (v - prop.mean) / prop.std
    emb = noise_level_encoding(jnp.where(cond.use_cond, v, 0.0), dim)
    return jnp.where(cond.use_cond[:, None], emb, 0.0)
