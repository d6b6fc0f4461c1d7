"""Synthetic `Records` for data tests (the committed world subset is not needed here)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.data.records import Records
from jaxdos.kernels.grid import bin_centres
from jaxdos.kernels.properties import all_properties
from jaxdos.structures import MAX_ATOMS


def make_records(m: int, seed: int = 0) -> Records:
    """M random crystals (1..20 atoms, sheared 3-7 A cells) with Gaussian-band per-atom DOS."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, MAX_ATOMS + 1, size=m).astype(np.int32)
    z = np.zeros((m, MAX_ATOMS), np.int32)
    frac = np.zeros((m, MAX_ATOMS, 3), np.float32)
    for i in range(m):
        z[i, : n[i]] = rng.integers(1, 84, size=n[i])
        frac[i, : n[i]] = rng.random((n[i], 3))
    lattice = (
        np.eye(3) * rng.uniform(3.0, 7.0, size=(m, 1, 1)) * np.cbrt(n)[:, None, None]
        + rng.uniform(-0.5, 0.5, size=(m, 3, 3))
    ).astype(np.float32)
    x = bin_centres()
    centres = rng.uniform(-9, 9, size=(m, 3, 1))
    dos = (rng.uniform(0.2, 3.0, size=(m, 3, 1)) * np.exp(-((x - centres) ** 2) / 0.5)).sum(1)
    dos = dos.astype(np.float32)
    props = jax.jit(all_properties)(jnp.asarray(dos))
    return Records(
        atomic_numbers=z,
        frac_coords=frac,
        lattice=lattice,
        num_atoms=n,
        dos=dos,
        efermi=rng.normal(size=m).astype(np.float32),
        scale=dos.max(-1),
        band_gap=np.asarray(props["band_gap"]),
        dos_at_fermi=np.asarray(props["dos_at_fermi"]),
        integrated_dos=np.asarray(props["integrated_dos"]),
        ids=np.asarray([f"syn-{i:05d}" for i in range(m)]),
    )
