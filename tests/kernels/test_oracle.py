"""Tight-binding oracle: analytic models, numpy reference, invariances, electrons, bad inputs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from oracle_reference import reference_dos, sk_element

from jaxdos.kernels.grid import BIN_WIDTH, FERMI_INDEX, N_BINS
from jaxdos.kernels.oracle import (
    ORACLE_VERSION,
    OracleConfig,
    model_dos,
    oracle_dos,
    oracle_dos_structures,
    sk_blocks,
)
from jaxdos.kernels.properties import band_gap, integrated_dos

CFG = OracleConfig()


def _sc_model(onsite, hops, n_elec, n=16):
    """A model on a simple-cubic lattice: hops = list of (src, dst, (dx, dy, dz), t)."""
    images = [(0, 0, 0)] + sorted({h[2] for h in hops})
    img = np.array([images.index(h[2]) for h in hops], np.int32)
    grid = np.array(list(np.ndindex(n, n, n))) / n
    return _model_dos_jit(
        jnp.asarray(onsite, jnp.float32),
        jnp.asarray([[[h[3]]] for h in hops], jnp.float32),
        jnp.asarray([[h[0]] for h in hops], jnp.int32),
        jnp.asarray([[h[1]] for h in hops], jnp.int32),
        jnp.asarray(img),
        jnp.asarray(images, jnp.float32),
        jnp.asarray(grid, jnp.float32),
        jnp.full((len(grid),), 1.0 / len(grid), jnp.float32),
        float(n_elec),
        float(len(onsite)),
    )


_model_dos_jit = jax.jit(functools.partial(model_dos, sigma=0.1))


def test_simple_cubic_band_width_and_symmetric_dos():
    t = -0.5
    axes = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]
    dos, efermi, eigs = _sc_model([0.0], [(0, 0, a, t) for a in axes], n_elec=1.0)
    eigs = np.asarray(eigs)
    assert eigs.max() - eigs.min() == pytest.approx(12 * abs(t), abs=1e-4)
    assert float(efermi) == pytest.approx(0.0, abs=1e-4)  # half filling of a symmetric band
    dos = np.asarray(dos)
    np.testing.assert_allclose(dos, dos[::-1], atol=2e-3 * dos.max())
    assert BIN_WIDTH * dos.sum() == pytest.approx(2.0, abs=1e-3)  # 2 states per site, all in window


def test_ionic_two_site_gap():
    ea, eb, t = -2.0, 2.0, 0.05
    hops = [(0, 1, (0, 0, 0), t), (1, 0, (0, 0, 0), t), (0, 1, (-1, 0, 0), t), (1, 0, (1, 0, 0), t)]
    dos, efermi, eigs = _sc_model([ea, eb], hops, n_elec=2.0)
    eigs = np.asarray(eigs)
    gap = eigs[:, 1].min() - eigs[:, 0].max()
    assert gap == pytest.approx(abs(ea - eb), abs=2 * t)
    assert float(efermi) == pytest.approx(0.0, abs=0.05)  # mid-gap
    # Algorithm 1 on the smeared DOS: gap minus the smearing reach (3 sigma) on both edges.
    assert float(band_gap(dos)) == pytest.approx(gap - 0.6 - 0.2, abs=0.3)


def test_sk_blocks_match_rotated_frames_and_table():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 3)) * 1.3
    fn = jax.jit(functools.partial(sk_blocks, s_on=10.0, s_cut=11.0, d_min_ratio=0.01))
    blocks = np.asarray(
        fn(
            jnp.asarray(vecs, jnp.float32),
            jnp.full((5,), 2.0),
            jnp.full((5,), 0.9),
            jnp.full((5,), 1.1),
        )
    )
    for e, v in enumerate(vecs):
        ref = np.array([[sk_element(a, b, v, 0.9, 1.1) for b in range(9)] for a in range(9)])
        np.testing.assert_allclose(blocks[e], ref, rtol=2e-4, atol=2e-5)
    # Slater-Koster table entry E_{x, xy} = sqrt(3) l^2 m V_pds + m (1 - 2 l^2) V_pdp.
    v = vecs[0]
    d = np.linalg.norm(v)
    l, m = v[0] / d, v[1] / d
    scale = 7.62 * 1.1**1.5 / d**3.5
    expect = np.sqrt(3) * l * l * m * (-2.95 * scale) + m * (1 - 2 * l * l) * (1.36 * scale)
    assert blocks[0][1, 4] == pytest.approx(expect, rel=1e-4)


def _fcc(a):
    return 0.5 * a * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])


# Small crystals covering s/p, d (with and without p) and mixed bonding.
CRYSTALS = [
    ([11, 17], [[0, 0, 0], [0.5, 0.5, 0.5]], np.eye(3) * 10 / 3),  # CsCl-type NaCl
    ([14, 14], [[0, 0, 0], [0.25, 0.25, 0.25]], _fcc(5.43)),  # Si
    ([29], [[0, 0, 0]], _fcc(3.61)),  # Cu
    ([30, 8], [[0.02, 0, 0], [0.5, 0.47, 0.5]], _fcc(4.3) @ np.diag([1, 1.05, 0.97])),  # ZnO
    (
        [22, 8, 8],
        [[0, 0, 0], [0.3, 0.3, 0.0], [0.7, 0.7, 0.0]],
        np.array([[4.6, 0, 0], [0, 4.6, 0], [0.1, 0, 2.95]]),
    ),  # TiO2-like, low symmetry
]


def _arrays(crystals, a=20):
    m = len(crystals)
    z, f, lat, n = np.zeros((m, a), int), np.zeros((m, a, 3)), np.zeros((m, 3, 3)), np.zeros(m, int)
    for i, (zi, fi, li) in enumerate(crystals):
        z[i, : len(zi)], f[i, : len(zi)], lat[i], n[i] = zi, fi, li, len(zi)
    return z, f, lat, n


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


@pytest.fixture(scope="module")
def batch():
    """One oracle call for every crystal the tests compare (compiles each bucket once)."""
    rng = np.random.default_rng(1)
    rot = _rotation(rng)
    variants = list(CRYSTALS)
    for zi, fi, li in CRYSTALS:  # rotated cells: lattice rows rotated, fractions unchanged
        variants.append((zi, fi, li @ rot.T))
    for zi, fi, li in CRYSTALS:  # permuted atoms
        p = rng.permutation(len(zi))
        variants.append(([zi[j] for j in p], [fi[j] for j in p], li))
    zi, fi, li = CRYSTALS[0]  # 2x supercell along a (k_density * |b_a| = 6 is even)
    fi = np.asarray(fi, float)
    sup_f = np.concatenate([fi * [0.5, 1, 1], fi * [0.5, 1, 1] + [0.5, 0, 0]])
    variants.append((zi + zi, sup_f, li * np.array([[2.0], [1], [1]])))
    dos, ef = oracle_dos(*_arrays(variants))
    return dos, ef


def test_output_shapes_and_version(batch):
    dos, ef = batch
    assert ORACLE_VERSION == "tb-v1"
    assert dos.shape == (3 * len(CRYSTALS) + 1, N_BINS) and dos.dtype == np.float32
    assert np.all(np.isfinite(dos)) and np.all(dos >= 0) and np.all(np.isfinite(ef))


@pytest.mark.parametrize("i", range(len(CRYSTALS)))
def test_matches_numpy_reference(batch, i):
    dos, ef = batch
    ref_dos, ref_ef = reference_dos(*CRYSTALS[i])
    assert ef[i] == pytest.approx(ref_ef, abs=5e-3)
    # float32 + fine-grid smearing vs float64 exact kernel: within 1 % of the peak.
    np.testing.assert_allclose(dos[i], ref_dos, atol=0.01 * ref_dos.max())


def test_rotation_and_permutation_invariance(batch):
    dos, ef = batch
    n = len(CRYSTALS)
    for i in range(n):
        for j in (i + n, i + 2 * n):
            np.testing.assert_allclose(dos[j], dos[i], atol=2e-3 * dos[i].max())
            assert ef[j] == pytest.approx(ef[i], abs=2e-3)


def test_supercell_same_per_atom_dos(batch):
    dos, ef = batch
    np.testing.assert_allclose(dos[-1], dos[0], atol=2e-3 * dos[0].max())
    assert ef[-1] == pytest.approx(ef[0], abs=2e-3)


@pytest.mark.parametrize("i", [0, 1, 3, 4])
def test_electron_count(batch, i):
    dos, _ = batch
    z = CRYSTALS[i][0]
    from jaxdos.kernels.oracle_params import element_table

    _, _, _, below = reference_dos(*CRYSTALS[i], full_output=True)
    per_atom = element_table().valence[z].sum() / len(z)
    assert float(integrated_dos(dos[i])) + below == pytest.approx(per_atom, abs=0.02)


def test_gapped_and_metallic_physics(batch):
    dos, _ = batch
    assert dos[2][FERMI_INDEX - 1 : FERMI_INDEX + 1].mean() > 0.1  # Cu: metal
    assert dos[1][FERMI_INDEX - 3 : FERMI_INDEX + 3].max() == 0.0  # Si: gap at E_F


def test_structures_entry_matches_arrays(batch):
    from pymatgen.core import Lattice, Structure

    zi, fi, li = CRYSTALS[1]
    dos, ef = oracle_dos_structures([Structure(Lattice(li), zi, fi)])
    np.testing.assert_allclose(dos[0], batch[0][1], atol=1e-5)


@pytest.mark.parametrize(
    "field, edit",
    [
        ("frac_coords", lambda z, f, l, n: f.__setitem__((1, 1), f[1, 0] + 1e-3)),
        ("lattice", lambda z, f, l, n: l.__setitem__((1, 2), l[1, 0] + 1e-4)),
        ("atomic_numbers", lambda z, f, l, n: z.__setitem__((1, 0), 43)),
        ("atomic_numbers", lambda z, f, l, n: z.__setitem__((1, 0), 90)),
        ("num_atoms", lambda z, f, l, n: n.__setitem__(1, 0)),
        ("frac_coords", lambda z, f, l, n: f.__setitem__((1, 0, 0), np.nan)),
        ("lattice", lambda z, f, l, n: l.__setitem__((1, 0, 0), np.inf)),
    ],
)
def test_bad_inputs_raise(field, edit):
    z, f, lat, n = _arrays(CRYSTALS[:2])
    edit(z, f, lat, n)
    with pytest.raises(ValueError, match=rf"crystal 1.*{field}|{field}.*crystal 1"):
        oracle_dos(z, f, lat, n)
