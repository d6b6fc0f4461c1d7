"""The load_mp command: writes an "mp" record set and prints the Table-6 style filter table."""

import json

import numpy as np
from monty.json import MontyEncoder
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from experiments.load_mp import main
from jaxdos.data.records import load_records


def test_cli_writes_records_and_prints_table(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    e = np.linspace(-12.0, 12.0, 241)
    for name, species, n in [("mp-1", "Cu", 1), ("mp-2", "Tc", 1), ("mp-3", "Cu", 24)]:
        s = Structure(
            Lattice.cubic(3.6 * round(n ** (1 / 3) + 0.49)),
            [species] * n,
            np.random.default_rng(0).random((n, 3)),
        )
        tdos = Dos(0.0, e, {Spin.up: np.full(e.shape, float(n))})
        (src / f"{name}.json").write_text(json.dumps(CompleteDos(s, tdos, {}), cls=MontyEncoder))
    (src / "mp-4.json").write_text("{")
    out = tmp_path / "out.npz"
    assert main([str(src), str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "All filters combined" in text and "wrote 1 records" in text
    records, header = load_records(out, oracle_version="mp")
    assert list(records.ids) == ["mp-1"]
    np.testing.assert_allclose(records.dos[0], 1.0, rtol=1e-5)  # n states/eV per cell / n atoms
    assert header["meta"]["skipped"]["excluded_element"] == 1
    assert header["meta"]["skipped"]["too_many_atoms"] == 1
    assert header["meta"]["skipped"]["unreadable_json"] == 1
    assert main([str(src), str(out), "--no-progress"]) == 2  # refuses to overwrite
    assert "exists" in capsys.readouterr().err
