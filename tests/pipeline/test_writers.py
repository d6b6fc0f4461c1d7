"""The pipeline's writers: the `write_outputs` bundle, a stage's CIF + extxyz files read back,
and the markdown + CSV tables."""

import json

import numpy as np
from pymatgen.core import Structure

from jaxdos.crystal.diffusion.guidance import ClassifierFree
from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.crystal.diffusion.sampler import SamplerConfig
from jaxdos.crystal.generate import Generated
from jaxdos.pipeline.writers import markdown_table, write_outputs, write_structures, write_table


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
    cfg = SamplerConfig(num_steps=100, guidance=ClassifierFree(gamma=2.0))
    gen = Generated(_batch(), np.stack([dos, dos]), cfg)
    out = write_outputs(gen, tmp_path, extra={"seed": 3})
    assert [p.split("/")[-1] for p in out["cif"]] == ["gen_0000.cif", "gen_0001.cif"]
    s0 = Structure.from_file(out["cif"][0])
    assert s0.composition.reduced_formula == "NaCl"
    meta = json.loads((tmp_path / "gen.json").read_text())
    assert meta["guidance"] == {"type": "ClassifierFree", "gamma": 2.0}
    assert meta["sampler"]["num_steps"] == 100 and meta["seed"] == 3
    np.testing.assert_allclose(meta["conditioning_dos"][1], dos, rtol=1e-6)
    text = (tmp_path / "gen.extxyz").read_text().splitlines()
    assert text[0] == "2" and text[1].startswith('Lattice="') and text[2].startswith("Na ")


def _stage():
    """Two padded crystals as a generation stage holds them (rows of `pipeline.score.Crystals`)."""
    z = np.zeros((2, 20), np.int32)
    z[0, :2], z[1, :1] = [11, 17], [26]
    frac = np.zeros((2, 20, 3), np.float32)
    frac[0, 1] = [0.5, 0.5, 0.5]
    lat = np.stack([np.diag([5.64, 5.64, 5.64]), np.diag([2.9, 2.9, 2.9])]).astype(np.float32)
    return {
        "atomic_numbers": z,
        "frac_coords": frac,
        "lattice": lat,
        "num_atoms": np.array([2, 1]),
    }


def test_write_structures_names_the_selected_rows_and_reads_back(tmp_path):
    stage = _stage()
    write_structures(tmp_path / "s", stage, np.array([False, True]))
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [
        "crystal_00001.cif",
        "crystals.extxyz",
    ]
    s = Structure.from_file(tmp_path / "s" / "crystal_00001.cif")
    assert [site.specie.Z for site in s] == [26]
    np.testing.assert_allclose(s.lattice.abc, [2.9, 2.9, 2.9], rtol=1e-6)
    assert (tmp_path / "s" / "crystals.extxyz").read_text().splitlines()[0] == "1"
    write_structures(tmp_path / "none", stage, np.zeros(2, bool))
    assert not (tmp_path / "none").exists()  # nothing selected: no folder


def test_tables_markdown_and_csv(tmp_path):
    md = write_table(tmp_path, "t", ["k", "v"], [["x", 0.123456], ["y", 3]])
    assert md == markdown_table(["k", "v"], [["x", 0.123456], ["y", 3]])
    assert md.splitlines() == ["| k | v |", "|---|---|", "| x | 0.1235 |", "| y | 3 |"]
    assert (tmp_path / "t.md").read_text() == md
    assert (tmp_path / "t.csv").read_text().splitlines() == ["k,v", "x,0.123456", "y,3"]
