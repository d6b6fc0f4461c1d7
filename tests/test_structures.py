"""The shared crystal layer: pack / unpack, pymatgen conversion, the writers, the element policy."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from jaxdos.crystal.diffusion.guidance import ClassifierFree
from jaxdos.crystal.diffusion.sampler import (
    SELECTED_ATOMIC_NUMBERS,
    CrystalSamplingConfig,
    element_logit_bias,
)
from jaxdos.crystal.generate import Generated
from jaxdos.kernels.oracle_params import element_table
from jaxdos.kernels.oracle_prep import validate_inputs
from jaxdos.pipeline.writers import write_outputs
from jaxdos.structures import (
    ALLOWED_Z,
    MAX_ATOMS,
    MAX_Z,
    Crystals,
    from_structures,
    is_allowed,
    pack,
    read_extxyz,
    to_structures,
    unpack,
    write_cif,
    write_extxyz,
)


def _rotation(seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _random_crystals(m: int, seed: int = 0) -> Crystals:
    """M crystals of random sizes and elements in rotated, sheared cells (float32)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(1, MAX_ATOMS + 1, size=m).astype(np.int32)
    z = np.zeros((m, MAX_ATOMS), np.int32)
    frac = np.zeros((m, MAX_ATOMS, 3), np.float32)
    for i, k in enumerate(n):
        z[i, :k] = rng.choice(ALLOWED_Z, size=k)
        frac[i, :k] = rng.random((k, 3))
    cells = np.diag([3.0, 4.0, 5.0]) + rng.normal(0, 0.3, (m, 3, 3))
    lattice = np.stack([c @ _rotation(seed + i).T for i, c in enumerate(cells)])
    return Crystals(z, frac, lattice.astype(np.float32), n)


def _assert_same(structures, crystals: Crystals, *, matrix: bool = True, atol: float = 1e-6):
    """Species, fractional coordinates and (optionally) the lattice matrix agree to `atol`.

    Sites are matched one to one whatever their order (a CIF reader groups them by species).
    """
    assert len(structures) == len(crystals.num_atoms)
    for s, (z, frac, lat, n) in zip(structures, zip(*crystals, strict=True), strict=True):
        assert len(s) == n
        d = s.frac_coords[:, None] - frac[None, :n]  # [read, original, 3]
        d = np.abs(d - np.round(d)).max(-1)  # the same point of the cell, to atol
        same = (d < atol) & (np.array(s.atomic_numbers)[:, None] == z[None, :n])
        assert np.all(same.sum(0) == 1) and np.all(same.sum(1) == 1), d.min(0).max()
        if matrix:
            np.testing.assert_allclose(s.lattice.matrix, lat, atol=atol)
        else:  # same cell up to a rotation: the metric tensor is kept
            g = lat.astype(np.float64) @ lat.T.astype(np.float64)
            np.testing.assert_allclose(s.lattice.matrix @ s.lattice.matrix.T, g, atol=1e-5)


# ----------------------------------------------------------------------------- pack / unpack


def test_pack_unpack_round_trip_and_padding_conventions():
    c = _random_crystals(7)
    b = pack(c, num_nodes=200, num_graphs=9)
    total = int(c.num_atoms.sum())
    assert b.num_nodes == 200 and b.num_graphs == 9
    assert b.node_mask.sum() == total and b.graph_mask.tolist() == [True] * 7 + [False] * 2
    assert np.all(b.batch[~b.node_mask] == 8) and not b.atomic_numbers[~b.node_mask].any()
    np.testing.assert_array_equal(b.lattice[7:], np.broadcast_to(np.eye(3), (2, 3, 3)))
    np.testing.assert_array_equal(np.bincount(b.batch[b.node_mask], minlength=9)[:7], c.num_atoms)
    for field, a, bb in zip(Crystals._fields, c, unpack(b), strict=True):
        np.testing.assert_array_equal(a, bb, err_msg=field)
    exact = pack(c)  # default budgets: exactly the atoms and the crystals
    assert exact.num_nodes == total and exact.num_graphs == 7 and exact.node_mask.all()
    again = unpack(exact, max_atoms=None)
    assert again.atomic_numbers.shape == (7, int(c.num_atoms.max()))
    np.testing.assert_array_equal(again.frac_coords, c.frac_coords[:, : c.num_atoms.max()])
    empty = pack(c.take(slice(0, 0)), num_nodes=8, num_graphs=2)  # a sharding pad batch
    assert not empty.node_mask.any() and not empty.graph_mask.any()
    assert unpack(empty).num_atoms.shape == (0,)


def test_pack_and_unpack_raise_on_overflow():
    c = _random_crystals(4, seed=1)
    total = int(c.num_atoms.sum())
    with pytest.raises(ValueError, match="num_nodes"):
        pack(c, num_nodes=total - 1)
    with pytest.raises(ValueError, match="num_graphs"):
        pack(c, num_graphs=3)
    with pytest.raises(ValueError, match="max_atoms"):
        unpack(pack(c), max_atoms=int(c.num_atoms.max()) - 1)


def test_unpack_follows_the_batch_vector_and_wraps_coordinates():
    # Padding atoms pointing at a real graph (the sampler's layout) must not be read.
    c = _random_crystals(2, seed=2)
    b = pack(c, num_nodes=int(c.num_atoms.sum()) + 3)
    b = b._replace(batch=np.where(b.node_mask, b.batch, 0), frac_coords=b.frac_coords + 2.0)
    back = unpack(b)
    np.testing.assert_array_equal(back.atomic_numbers, c.atomic_numbers)
    np.testing.assert_allclose(back.frac_coords, c.frac_coords, atol=1e-6)


# ----------------------------------------------------------------------------- pymatgen + files


def test_rotated_lattice_keeps_its_matrix_through_structures_and_extxyz(tmp_path):
    c = _random_crystals(3, seed=3)
    assert not np.allclose(c.lattice[0], np.triu(c.lattice[0]))  # really not a standard frame
    structures = to_structures(c)
    _assert_same(structures, c)
    back = from_structures(structures)
    for field, a, b in zip(Crystals._fields, c, back, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=field)  # exact: nothing is recomputed
    write_extxyz(structures, tmp_path / "x.extxyz")
    _assert_same(read_extxyz(tmp_path / "x.extxyz"), c)


def _standard_frame(c: Crystals) -> Crystals:
    """The same crystals with pymatgen's standard lattice orientation (what a CIF encodes)."""
    lat = [Lattice.from_parameters(*Lattice(x).parameters).matrix for x in c.lattice]
    return c._replace(lattice=np.asarray(lat, np.float32))


@pytest.mark.parametrize("frame", ["standard", "rotated"])
def test_cif_and_extxyz_round_trip_along_both_writing_paths(tmp_path, frame):
    c = _random_crystals(3, seed=4)
    c = _standard_frame(c) if frame == "standard" else c
    # Pipeline path (experiments/screening.write_structures): Crystals -> Structures -> files.
    pipe = tmp_path / "pipeline"
    pipe.mkdir()
    structures = to_structures(c)
    for i, s in enumerate(structures):
        write_cif(s, pipe / f"crystal_{i:05d}.cif")
    write_extxyz(structures, pipe / "crystals.extxyz")
    # Crystal-stage path: a generated flat batch -> write_outputs.
    batch = pack(c, num_nodes=int(c.num_atoms.sum()) + 5, num_graphs=4)
    gen = Generated(
        batch, None, CrystalSamplingConfig(steps=10, guidance=ClassifierFree(cfg_scale=1.0))
    )
    out = write_outputs(gen, tmp_path / "stage")
    pipe_cifs = [Structure.from_file(str(pipe / f"crystal_{i:05d}.cif")) for i in range(3)]
    stage_cifs = [Structure.from_file(p) for p in out["cif"]]
    for read in (read_extxyz(pipe / "crystals.extxyz"), read_extxyz(out["extxyz"])):
        _assert_same(read, c)  # extxyz keeps the matrix, rotated or not
    for read in (pipe_cifs, stage_cifs):
        # A CIF holds cell parameters: the matrix comes back exactly in the standard frame, and
        # as the same cell (metric tensor) in any other.
        _assert_same(read, c, matrix=frame == "standard")
    for a, b in zip(pipe_cifs, stage_cifs, strict=True):  # one writer: identical structures
        np.testing.assert_array_equal(a.lattice.matrix, b.lattice.matrix)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)


def test_conversion_rejects_what_is_not_a_crystal():
    c = _random_crystals(2, seed=5)
    masked = c.atomic_numbers.copy()
    masked[0, 0] = MAX_Z + 1  # the D3PM mask state of an unfinished trajectory
    with pytest.raises(ValueError, match="atomic_numbers"):
        to_structures(c._replace(atomic_numbers=masked))
    flat = c.lattice.copy()
    flat[1, 2] = flat[1, 0]
    with pytest.raises(ValueError, match="lattice"):
        to_structures(c._replace(lattice=flat))
    cell = Lattice.cubic(4.0)
    big = Structure(cell, ["Na"] * (MAX_ATOMS + 1), np.random.default_rng(0).random((21, 3)))
    with pytest.raises(ValueError, match=r"structures\[1\]: num_atoms 21"):
        from_structures([to_structures(c)[0], big])
    with pytest.raises(ValueError, match="disordered"):
        from_structures([Structure(cell, [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])])
    with pytest.raises(ValueError, match="not all elements"):
        from_structures([Structure(cell, ["Cu", "X0+"], [[0, 0, 0], [0.5, 0.5, 0.5]])])


def test_from_structures_wraps_into_the_unit_cell():
    s = Structure(Lattice.cubic(3.0), ["Cu", "Cu"], [[-1e-9, 0.25, 1.5], [0.5, -0.25, 0.0]])
    frac = from_structures([s]).frac_coords[0, :2]
    assert np.all((frac >= 0) & (frac < 1))  # -1e-9 rounds to 1.0 in float32: stored as 0
    np.testing.assert_allclose(frac, [[0.0, 0.25, 0.5], [0.5, 0.75, 0.0]], atol=1e-7)


# ----------------------------------------------------------------------------- element policy


def test_element_policy_is_table_6_and_every_filter_uses_it():
    assert len(ALLOWED_Z) == 81 and min(ALLOWED_Z) == 1 and max(ALLOWED_Z) == 83
    z = np.array([0, 1, 26, 43, 61, 83, 84, 100, MAX_Z + 1])
    assert is_allowed(z).tolist() == [False, True, True, False, False, True, False, False, False]
    assert is_allowed(z.reshape(3, 3)).shape == (3, 3)
    # The oracle has parameters for exactly the policy's elements ...
    table = element_table()
    np.testing.assert_array_equal(table.supported, is_allowed(np.arange(table.supported.size)))
    for bad in (43, 84):  # ... and rejects the others by name.
        zs = np.array([[14, bad]])
        with pytest.raises(ValueError, match="atomic_numbers"):
            validate_inputs(zs, np.zeros((1, 2, 3)), np.eye(3)[None] * 4, np.array([2]), 20)
    # The sampler's whitelist narrows the policy (no noble gases) and masks the rest.
    assert len(SELECTED_ATOMIC_NUMBERS) == 76 and set(SELECTED_ATOMIC_NUMBERS) <= set(ALLOWED_Z)
    bias = np.asarray(element_logit_bias(SELECTED_ATOMIC_NUMBERS))
    np.testing.assert_array_equal(bias == 0, is_allowed(np.arange(1, 102), SELECTED_ATOMIC_NUMBERS))
