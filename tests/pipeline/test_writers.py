"""The pipeline's writers: a stage's CIF + extxyz files read back, and the markdown + CSV tables
(`write_outputs` is tested beside the batch it writes, in tests/pipeline/test_write_outputs.py)."""

import numpy as np
from pymatgen.core import Structure

from jaxdos.pipeline.writers import markdown_table, write_structures, write_table


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
