"""`design` and `generate` end to end at the tiniest sizes: the files written, the table against
the oracle recomputed on the written CIFs, a killed run resumed to the same table, and `generate`
from the CIFs and from a records file. The fast tests share one design run (`jaxdos design`, the
embedded models, the crystal one named by --crystal-model); the others are marked slow."""

import csv
import json

import numpy as np
import pytest
from pymatgen.core import Structure

from experiments import design as design_cli
from experiments import generate as generate_cli
from experiments import main as jaxdos_main
from jaxdos.crystal.checkpoint import DEFAULT_DIR as CRYSTAL_DIR
from jaxdos.pipeline import screening
from jaxdos.pipeline.score import score

# 2 DOS x 2 crystals in one chunk, 4 CDOSGen steps without corrector.
TINY = ["--crystals", "4", "--crystals-per-dos", "2", "--crystal-batch", "4", "--steps", "4"]
TINY += ["--dos-steps", "4", "--dos-batch", "32", "--proposals", "512", "--corrector-steps", "0"]
DESIGN = ["--n-ef", "0:4", *TINY, "--crystal-model", str(CRYSTAL_DIR)]
# The same in two chunks (one DOS each), for the kill between them.
CHUNKED = [*DESIGN, "--crystal-batch", "2"]


def _table(folder):
    with open(folder / "crystals.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def designed(tmp_path_factory):
    out = tmp_path_factory.mktemp("design") / "run"
    jaxdos_main.main(["design", *DESIGN, "--out", str(out)])
    return out


def test_design_writes_every_output(designed):
    names = {p.name for p in designed.iterdir()}
    assert {"run.json", "crystals.csv", "crystals.md", "dos_pairs.png", "properties.png"} <= names
    assert {"summary.json", "structures", "dos"} <= names
    rows = _table(designed)
    assert len(rows) == 4
    assert list(rows[0])[:10] == [
        "id", "formula", "atoms", "source_dos", "valid", "reason",
        "band_gap", "dos_at_fermi", "integrated_dos", "cosine_to_condition",
    ]  # fmt: skip
    assert list(rows[0])[10:] == ["integrated_dos_ok", "meets_targets", "cif"]
    assert len({r["source_dos"] for r in rows}) == 2  # 2 crystals per accepted DOS
    summary = json.loads((designed / "summary.json").read_text())
    assert summary["dos_accepted"] == 2 and summary["crystals"] == 4
    assert summary["hits"]["meets_targets"] == sum(r["meets_targets"] == "True" for r in rows)
    run = json.loads((designed / "run.json").read_text())
    assert run["config"]["n_ef"] == "0:4" and run["config"]["steps"] == 4


def test_table_matches_the_oracle_on_the_written_cifs(designed):
    rows = [r for r in _table(designed) if r["cif"]]
    assert rows, "no crystal was written"
    structures = [Structure.from_file(str(designed / r["cif"])) for r in rows]
    hits = [r["meets_targets"] == "True" for r in rows]
    assert [r["cif"].endswith("_hit.cif") for r in rows] == hits
    s = score(structures)
    for j, r in enumerate(rows):
        assert r["formula"] == structures[j].composition.reduced_formula
        assert int(r["atoms"]) == len(structures[j])
        assert (r["valid"] == "True") == bool(s.valid[j])
        for name in ("band_gap", "dos_at_fermi", "integrated_dos"):
            if s.valid[j]:
                assert float(r[name]) == pytest.approx(s.properties[name][j], rel=1e-3, abs=1e-3)
        n_ef = float(r["integrated_dos"])
        assert (r["integrated_dos_ok"] == "True") == (bool(s.valid[j]) and 0 <= n_ef <= 4)
    assert len(Structure.from_file(str(designed / rows[0]["cif"]))) == int(rows[0]["atoms"])


def test_the_accepted_dos_folder_is_a_generate_source(designed):
    from jaxdos.pipeline.jobs.generate import load_source

    dos, names, kind = load_source(designed / "dos")
    assert kind == "accepted" and len(dos) == 2
    assert set(names) == {r["source_dos"] for r in _table(designed)}
    assert np.all(dos >= 0) and dos.shape == (2, 256)


@pytest.mark.slow
def test_killed_design_resumes_to_the_same_table(tmp_path, monkeypatch):
    design_cli.main([*CHUNKED, "--out", str(tmp_path / "whole")])
    out = tmp_path / "run"
    real, calls = screening.score, []

    def dies_on_second_chunk(crystals, scorer=None):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill between the two chunks
        return real(crystals, scorer=scorer)

    monkeypatch.setattr(screening, "score", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        design_cli.main([*CHUNKED, "--out", str(out)])
    assert not (out / "crystals.csv").exists()
    monkeypatch.setattr(screening, "score", real)
    with pytest.raises(SystemExit):  # the folder holds a run: --resume or --force
        design_cli.main([*CHUNKED, "--out", str(out)])
    assert len(list((out / "stages" / "crystals").glob("chunk-*.npz"))) == 1
    design_cli.main([*CHUNKED, "--out", str(out), "--resume"])
    assert _table(out) == _table(tmp_path / "whole")
    with pytest.raises(SystemExit):  # a different config does not resume
        design_cli.main([*CHUNKED, "--corrector-steps", "1", "--out", str(out), "--resume"])


@pytest.mark.slow
def test_generate_from_cifs_and_records(designed, tmp_path):
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    rows = [r for r in _table(designed) if r["cif"] and r["valid"] == "True"][:2]
    for r in rows:
        (cifs / r["cif"].split("/")[-1]).write_bytes((designed / r["cif"]).read_bytes())
    gen = ["--crystals-per-dos", "2", "--crystal-batch", "2", "--steps", "4"]
    gen += ["--corrector-steps", "0"]
    generate_cli.main([str(cifs), *gen, "--out", str(tmp_path / "g")])
    table = _table(tmp_path / "g")
    assert len(table) == 2 * len(rows)
    assert {r["source_dos"] for r in table} == {r["cif"].split("/")[-1][:-4] for r in rows}
    assert list(table[0])[-1] == "cif" and "meets_targets" not in table[0]
    assert (tmp_path / "g" / "dos_pairs.png").exists()

    from jaxdos.data.records import save_records
    from jaxdos.data.world import load_world

    save_records(tmp_path / "r.npz", load_world("test").take(np.arange(1)), oracle_version="t")
    generate_cli.main([str(tmp_path / "r.npz"), *gen, "--out", str(tmp_path / "gr")])
    table = _table(tmp_path / "gr")
    assert len(table) == 2 and {r["source_dos"] for r in table} == {str(load_world("test").ids[0])}
    summary = json.loads((tmp_path / "gr" / "summary.json").read_text())
    assert summary["source_kind"] == "records" and summary["crystals"] == 2

    from test_generate_sources import write_mp_folder

    write_mp_folder(tmp_path / "mp")
    jaxdos_main.main(["generate", str(tmp_path / "mp"), *gen, "--out", str(tmp_path / "gm")])
    table = _table(tmp_path / "gm")
    assert [r["source_dos"] for r in table] == ["mp-1", "mp-1", "mp-2", "mp-2"]
    assert len(list((tmp_path / "gm" / "structures").glob("*.cif"))) == sum(
        bool(r["cif"]) for r in table
    )
