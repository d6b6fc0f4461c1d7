"""The three independent forward corruptions applied to a `CrystalBatch`.

See docs/spec/mattergen.md §4.

One t per crystal (MatterGen's `UniformTimestepSampler`, t ~ U(1e-5, 1)) drives all three fields.
Padding atoms and graphs are carried through unchanged so that padded slots never see noise.
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxdos.crystal.diffusion import d3pm, lattice, wrapped_normal
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array, PRNGKey

__all__ = ["DiffusionConfig", "Corrupted", "sample_time", "corrupt", "types_to_classes"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DiffusionConfig:
    """The three corruption processes and the training time range.

    Attributes:
        pos: fractional-coordinate wrapped-normal VE.
        cell: lattice VP.
        types: absorbing D3PM (training schedule, T = 1000).
        t_min: lower end of the training time distribution U(t_min, 1).
        mid_fraction: share of training times drawn from U(mid_range) instead (0 = MatterGen):
            more of the gradient where the sampler commits sites, cell and types (issue 12).
        mid_range: (lo, hi) of that share.
    """

    pos: wrapped_normal.WrappedNormalConfig = wrapped_normal.WrappedNormalConfig()
    cell: lattice.LatticeConfig = lattice.LatticeConfig()
    types: d3pm.D3PMConfig = d3pm.D3PMConfig()
    t_min: float = 1e-5
    mid_fraction: float = 0.0
    mid_range: tuple[float, float] = (0.25, 0.55)

    def __post_init__(self):
        if not 0 <= self.t_min < 1:
            raise ValueError(f"t_min: expected in [0, 1), got {self.t_min}")
        if not 0 <= self.mid_fraction <= 1:
            raise ValueError(f"mid_fraction: expected in [0, 1], got {self.mid_fraction}")
        lo, hi = self.mid_range
        if not self.t_min <= lo < hi <= 1:
            raise ValueError(f"mid_range: expected t_min <= lo < hi <= 1, got {self.mid_range}")


class Corrupted(NamedTuple):
    """A noised batch and what the losses need to score it.

    Fields:
        batch: the noisy `CrystalBatch` (types as Z, mask = 101).
        t: `[G]` times.
        pos_sigma: `[N]` per-atom fractional noise scale.
        cell_mean: `[G, 3, 3]` marginal mean of the lattice.
        cell_std: `[G]` marginal std of the lattice.
        k: `[N]` discrete D3PM time per atom.
    """

    batch: CrystalBatch
    t: Array
    pos_sigma: Array
    cell_mean: Array
    cell_std: Array
    k: Array


def types_to_classes(atomic_numbers: Array) -> Array:
    """Z (1..101) -> zero-based class (0..100); padding Z = 0 maps to class 0 (mask it out)."""
    return jnp.maximum(atomic_numbers - 1, 0).astype(jnp.int32)


def sample_time(key: PRNGKey, num_graphs: int, config: DiffusionConfig) -> Array:
    """t ~ U(t_min, 1), `[G]`; with `mid_fraction` > 0 that share of crystals from U(mid_range)."""
    if config.mid_fraction == 0:
        return jax.random.uniform(key, (num_graphs,), minval=config.t_min, maxval=1.0)
    k_t, k_mid, k_pick = jax.random.split(key, 3)
    t = jax.random.uniform(k_t, (num_graphs,), minval=config.t_min, maxval=1.0)
    lo, hi = config.mid_range
    mid = jax.random.uniform(k_mid, (num_graphs,), minval=lo, maxval=hi)
    return jnp.where(jax.random.uniform(k_pick, (num_graphs,)) < config.mid_fraction, mid, t)


def corrupt(key: PRNGKey, batch: CrystalBatch, t: Array, config: DiffusionConfig) -> Corrupted:
    """Sample x_t ~ q(x_t | x_0) for coordinates, lattice and types.

    Args:
        key: PRNG key.
        batch: clean padded batch.
        t: `[G]` times in (0, 1].
        config: corruption settings.
    """
    k_pos, k_cell, k_types = jax.random.split(key, 3)
    n_per_atom = batch.num_atoms[batch.batch]
    sig = wrapped_normal.sigma(t[batch.batch], n_per_atom, config.pos)
    pos_t, _ = wrapped_normal.forward_sample(k_pos, batch.frac_coords, sig)
    pos_t = jnp.where(batch.node_mask[:, None], pos_t, batch.frac_coords)

    cell_t, cell_mean, cell_std = lattice.forward_sample(
        k_cell, batch.lattice, t, batch.num_atoms, config.cell
    )
    cell_t = jnp.where(batch.graph_mask[:, None, None], cell_t, batch.lattice)

    k = d3pm.to_discrete_time(t, config.types.num_steps)[batch.batch]
    x0 = types_to_classes(batch.atomic_numbers)
    x_next = d3pm.q_sample(k_types, x0, k + 1, config.types.num_steps)
    types_t = jnp.where(batch.node_mask, x_next + 1, batch.atomic_numbers)

    noisy = batch._replace(frac_coords=pos_t, lattice=cell_t, atomic_numbers=types_t)
    return Corrupted(noisy, t, sig, cell_mean, cell_std, k)
