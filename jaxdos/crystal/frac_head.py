"""FractionalHead: a coordinate score from fractional offsets, free of the noisy cell.

GemNet-T sees a crystal only through Cartesian distances and angles in the noisy cell. At mid
noise the VP lattice has lost most of its signal, so GemNet cannot tell a bond shortened by
coordinate noise from one shortened by strain, and it fails to learn the coordinate score where
the sampler chooses the sites (docs/results.md, "looking for the fault"). This head reads what
DiffCSP's coordinate network reads (Jiao et al. 2023) less the cell: every pair of atoms in a
crystal exchanges a message built from sin / cos(2 pi k df) of its wrapped fractional offset df,
and the score comes out in fractional coordinates directly. Its atoms start from their (noisy)
types, the time and the conditions (the DOS embedding of paper eq. 2, zero where a crystal is
unconditional). It reads no lattice at all: on one memorised crystal a cell-metric input took
the coordinate error at t = 0.4 from 0.29 to 0.54 (docs/results.md), a nuisance input whose noise
the network learns to follow.

Crystals are laid out densely, `[G, A, A]` pairs with A = the graph's `max_atoms_per_crystal`:
padding pairs cost compute but keep the shapes static.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.crystal.gemnet.basis import periodic_fourier
from jaxdos.crystal.gemnet.layers import AtomEmbedding
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array

__all__ = ["FractionalHead", "FREQUENCIES"]

FREQUENCIES = 8  # k = 1..8: resolves fractional offsets to about 1 / 16 of a cell edge


def _slots(batch: CrystalBatch, max_atoms: int) -> Array:
    """`[N]` dense slot g * A + (index of the atom within its crystal); G * A for padding atoms."""
    dense = batch.batch * max_atoms + batch.atom_index()
    return jnp.where(batch.node_mask, dense, batch.num_graphs * max_atoms)


class FractionalHead(nn.Module):
    """`layers` rounds of all-pairs message passing -> fractional score `[N, 3]`."""

    width: int
    layers: int
    max_atoms: int

    @nn.compact
    def __call__(
        self, batch: CrystalBatch, z: Array, conditions: Sequence[tuple[Array, Array]] = ()
    ) -> Array:
        """Noisy batch, time encoding z `[G, D_t]`, conditions: (emb `[G, Dp]`, mask `[G]`) each."""
        a, g, d = self.max_atoms, batch.num_graphs, self.width
        x = AtomEmbedding(d, name="atom_emb")(batch.atomic_numbers)
        crystal = nn.Dense(d, name="time")(z)
        for i, (emb, mask) in enumerate(conditions):
            crystal = crystal + mask[:, None] * nn.Dense(d, name=f"condition_{i}")(emb)
        x = x + crystal[batch.batch]

        slot = _slots(batch, a)
        dense = lambda v: jnp.zeros((g * a, *v.shape[1:]), v.dtype).at[slot].set(v, mode="drop")
        frac = dense(batch.frac_coords).reshape(g, a, 3)
        real = dense(batch.node_mask).reshape(g, a)
        pair = real[:, :, None] & real[:, None, :] & ~jnp.eye(a, dtype=bool)
        count = jnp.maximum(jnp.sum(pair, axis=-1, keepdims=True), 1).astype(x.dtype)
        # [g, i, j]: receiver i, sender j, offset frac_j - frac_i.
        offsets = frac[:, None] - frac[:, :, None]
        geometry = nn.Dense(d, name="pair_geometry")(periodic_fourier(offsets, FREQUENCIES))

        x = dense(x).reshape(g, a, d)
        for i in range(self.layers):
            recv = nn.Dense(d, name=f"message_{i}_recv")(x)
            send = nn.Dense(d, use_bias=False, name=f"message_{i}_send")(x)
            msg = jax.nn.silu(recv[:, :, None] + send[:, None, :] + geometry)
            msg = jax.nn.silu(nn.Dense(d, name=f"message_{i}_mix")(msg))
            agg = jnp.sum(jnp.where(pair[..., None], msg, 0.0), axis=2) / count
            upd = nn.Dense(d, name=f"update_{i}_0")(jnp.concatenate([x, agg], axis=-1))
            x = x + nn.Dense(d, name=f"update_{i}_1")(jax.nn.silu(upd))
        out = nn.Dense(3, kernel_init=nn.initializers.zeros, name="out")(jax.nn.silu(x))
        return jnp.concatenate([out.reshape(g * a, 3), jnp.zeros((1, 3), out.dtype)])[slot]
