"""Sampler test helpers: the SMALL config, random weights, synthetic stand-in DOS records."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.data.records import Records
from jaxdos.kernels.grid import bin_centres
from jaxdos.kernels.properties import all_properties
from jaxdos.sampler.config import ModelConfig, RegressorConfig
from jaxdos.structures import MAX_ATOMS

SMALL = ModelConfig(
    num_layers=1,
    width=32,
    num_heads=2,
    cond_dim=16,
    regressor=RegressorConfig(proj_dim=2, hidden=32),
)


def perturbed(params, key, scale=0.3):
    """Random non-zero weights everywhere (zero-init heads would make outputs trivially uniform)."""
    # numpy draws: one eager jax.random call per leaf shape would compile a kernel per shape.
    rng = np.random.default_rng(int(jax.random.randint(key, (), 0, 2**30)))
    return jax.tree.map(lambda x: x + scale * rng.normal(size=x.shape).astype(x.dtype), params)


def toy_dos(n: int, seed: int = 0) -> np.ndarray:
    """`[n, 256]` spectra: half metals, half insulators with a 0.5-3 eV gap containing E_F."""
    rng = np.random.default_rng(seed)
    e = bin_centres()
    out = np.zeros((n, e.size))
    for i in range(n):
        gap = 0.0 if i % 2 == 0 else rng.uniform(0.5, 3.0)
        lo = -rng.uniform(0.0, gap) if gap > 0 else 0.0
        hi = lo + gap
        for _ in range(rng.integers(3, 7)):
            below = rng.random() < 0.5
            c = lo - rng.uniform(0.3, 8.0) if below else hi + rng.uniform(0.3, 8.0)
            out[i] += rng.uniform(0.2, 2.0) * np.exp(-0.5 * ((e - c) / rng.uniform(0.2, 1.0)) ** 2)
        if gap > 0:
            out[i] *= (e < lo) | (e > hi)
    return out.astype(np.float32)


def toy_records(n: int, seed: int = 0) -> Records:
    """`Records` around `toy_dos` (crystal fields are placeholders: one H atom in a unit cube)."""
    dos = toy_dos(n, seed)
    props = {k: np.asarray(v, np.float32) for k, v in all_properties(jnp.asarray(dos)).items()}
    z = np.zeros((n, MAX_ATOMS), np.int32)
    z[:, 0] = 1
    return Records(
        atomic_numbers=z,
        frac_coords=np.zeros((n, MAX_ATOMS, 3), np.float32),
        lattice=np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)).copy(),
        num_atoms=np.ones(n, np.int32),
        dos=dos,
        efermi=np.zeros(n, np.float32),
        scale=np.maximum(dos.max(-1), 1e-6).astype(np.float32),
        ids=np.asarray([f"toy-{seed}-{i}" for i in range(n)]),
        **props,
    )


def two_level_records(n: int, seed: int = 0, p_high: float = 0.75) -> Records:
    """Records whose tokens are independent per bin: level HIGH[j] w.p. `p_high`, else LOW[j].

    K = 1 for every record, so the tokens are exactly the levels (no zero level, so no [BG]).
    The true per-bin conditionals equal the marginals, which a trained model must reproduce.
    """
    rng = np.random.default_rng(seed)
    high = rng.random((n, 256)) < p_high
    levels = np.where(high, HIGH[None], LOW[None])
    dos = (levels / 1024.0).astype(np.float32)
    props = {k: np.asarray(v, np.float32) for k, v in all_properties(jnp.asarray(dos)).items()}
    z = np.zeros((n, MAX_ATOMS), np.int32)
    z[:, 0] = 1
    return Records(
        atomic_numbers=z,
        frac_coords=np.zeros((n, MAX_ATOMS, 3), np.float32),
        lattice=np.broadcast_to(np.eye(3, dtype=np.float32), (n, 3, 3)).copy(),
        num_atoms=np.ones(n, np.int32),
        dos=dos,
        efermi=np.zeros(n, np.float32),
        scale=np.ones(n, np.float32),
        ids=np.asarray([f"two-{seed}-{i}" for i in range(n)]),
        **props,
    )


# Per-bin levels of `two_level_records`: distinct per bin so the model must use positions.
HIGH = 600 + (np.arange(256) * 7) % 400
LOW = 50 + (np.arange(256) * 13) % 300
