"""write_outputs (jaxdos.pipeline.writers): CIF / extxyz files through jaxdos.structures, JSON
metadata, bad element errors.

The layouts, the conversion and the writers themselves are tested in tests/test_structures.py."""

import json

import numpy as np
import pytest
from pymatgen.core import Structure

from jaxdos.crystal.diffusion.guidance import ClassifierFree
from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.generate import Generated
from jaxdos.pipeline.writers import write_outputs
from jaxdos.structures import read_extxyz, to_structures, unpack


def _batch():
    b = prior_batch(np.array([2, 1]))
    z = np.zeros(b.num_nodes, np.int32)
    z[:3] = [11, 17, 26]
    frac = np.zeros((b.num_nodes, 3), np.float32)
    frac[:3] = [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.5, 0.75]]
    lat = np.stack([np.diag([5.64, 5.64, 5.64]), [[2.8, 0.1, 0], [0.1, 2.9, 0], [0, 0, 3.0]]])
    return b._replace(atomic_numbers=z, frac_coords=frac, lattice=lat.astype(np.float32))


def test_write_outputs_round_trip(tmp_path):
    dos = np.linspace(0, 1, 256, dtype=np.float32)
    cfg = CrystalSamplingConfig(steps=100, guidance=ClassifierFree(cfg_scale=2.0))
    gen = Generated(_batch(), np.stack([dos, dos]), cfg)
    out = write_outputs(gen, tmp_path, extra={"seed": 3})
    s0 = Structure.from_file(out["cif"][0])
    assert s0.composition.reduced_formula == "NaCl"
    meta = json.loads((tmp_path / "gen.json").read_text())
    assert meta["guidance"] == {"type": "ClassifierFree", "cfg_scale": 2.0}
    assert meta["sampler"]["steps"] == 100 and meta["seed"] == 3
    np.testing.assert_allclose(meta["conditioning_dos"][1], dos, rtol=1e-6)
    text = (tmp_path / "gen.extxyz").read_text().splitlines()
    assert text[0] == "2" and text[1].startswith('Lattice="') and text[2].startswith("Na ")
    # The sampled matrix is written as it is (the sheared second cell is not re-oriented).
    back = read_extxyz(out["extxyz"])
    np.testing.assert_allclose(back[1].lattice.matrix, gen.batch.lattice[1], atol=1e-6)


def test_unknown_element_raises():
    b = _batch()
    z = b.atomic_numbers.copy()
    z[0] = 101
    with pytest.raises(ValueError, match="atomic_numbers"):
        to_structures(unpack(b._replace(atomic_numbers=z)))
    with pytest.raises(ValueError, match="lattice"):
        to_structures(unpack(b._replace(lattice=np.zeros_like(b.lattice))))
