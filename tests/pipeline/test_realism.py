"""`pipeline.realism` and `experiments.eval_crystal`: framework check, result layout, flags."""

import json
import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from untrained import untrained_model

from experiments import eval_crystal
from jaxdos.data.world import load_world_tagged
from jaxdos.pipeline import realism
from jaxdos.structures import to_structures

PLAIN = ("rocksalt", "perovskite", "rutile", "fluorite", "zincblende", "spinel")
GOAL0 = ["valid", "framework_match", "metal_fraction"]
GOAL0 += [f"band_gap_q{q}_eV" for q in (10, 50, 90)] + ["too_many_elements", "odd_electrons"]
GOAL1 = ["dos_cosine", "tcm_yield", "tcm_lift"]


def _read(out) -> tuple[dict, dict]:
    """summary.json's two goals, after checking that every value carries lo, hi and n."""
    summary = json.loads((out / "summary.json").read_text())
    goal0, goal1 = summary["goal0"], summary["goal1"]
    assert list(goal0) == GOAL0 and list(goal1) == GOAL1
    for row in (*goal0.values(), *goal1.values()):
        for est in filter(None, row.values()):
            assert set(est) == {"value", "lo", "hi", "n"}
    assert goal0["valid"]["world"] is None and goal1["tcm_lift"]["baseline"] is None
    assert goal0["framework_match"]["world"]["n"] == 100  # the packaged subset's test split
    assert goal0["framework_match"]["world"]["value"] > 0.9
    assert goal1["tcm_lift"]["conditioned"]["n"] == [4, 5]
    assert (out / "report.md").read_text().count("| metric |") == 2
    return goal0, goal1


@pytest.fixture(scope="module")
def world():
    records, split, family = load_world_tagged()
    train = np.flatnonzero(split == "t")
    reps = realism.world_representatives(
        to_structures(records.take(train).crystals), family[train], per_group=2
    )
    return records, split, family, reps


def test_world_test_crystals_match_and_an_off_structure_does_not(world):
    records, split, family, reps = world
    rows = [i for i in np.flatnonzero(split == "s") if family[i] in PLAIN][:6]
    assert len(rows) == 6
    test = to_structures(records.take(np.array(rows)).crystals)
    assert realism.framework_match(test, reps).all()
    dimer = Structure(Lattice.tetragonal(3.0, 15.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, 0.15]])
    assert not realism.framework_match([dimer], reps).any()
    assert 2 in reps and all(len(s) == n for n, group in reps.items() for s in group)


def _world_as_generator(records, train):
    """A stand-in for `generate_crystals`: the world's own crystal for each conditioning DOS (found
    by its DOS), and the first training crystals for unconditional calls."""
    row_of = {r.tobytes(): i for i, r in enumerate(records.dos)}

    def fake(dos=None, *, num_samples=None, crystals_per_dos=1, **_):
        if dos is None:
            rows, source = train[:num_samples], np.full(num_samples, -1)
        else:
            source = np.repeat(np.arange(len(dos)), crystals_per_dos)
            rows = np.array([row_of[np.asarray(d).tobytes()] for d in dos])[source]
        return records.take(rows).crystals, source

    return fake


def test_world_crystals_as_generated_score_as_the_world(world, monkeypatch, tmp_path, capsys):
    records, split = world[:2]
    fake = _world_as_generator(records, np.flatnonzero(split == "t"))
    monkeypatch.setattr(realism, "generate_crystals", fake)
    out = tmp_path / "eval"
    eval_crystal.main(["--model", "default", "--out", str(out), "--quick", "--samples", "5"])
    goal0, goal1 = _read(out)
    assert goal0["valid"]["generated"]["value"] == 1.0 and goal0["valid"]["generated"]["n"] == 5
    # The first training crystals are their groups' representatives: they match themselves.
    assert goal0["framework_match"]["generated"]["value"] == 1.0
    assert goal0["metal_fraction"]["world"]["n"] == (split == "t").sum()
    # World crystals never have more elements than the world's most varied training crystal.
    assert goal0["too_many_elements"]["generated"]["value"] == 0.0
    assert goal0["too_many_elements"]["world"] == {
        "value": 0.0,
        "lo": 0.0,
        "hi": pytest.approx(0.037, abs=1e-3),
        "n": 100,
    }
    matched, shuffled = goal1["dos_cosine"]["conditioned"], goal1["dos_cosine"]["baseline"]
    assert matched["n"] == shuffled["n"] == 4
    assert matched["value"] == pytest.approx(1.0, abs=1e-5) and shuffled["hi"] < 0.99
    assert goal1["tcm_yield"]["conditioned"]["value"] == 1.0  # a TCM-like world DOS's own crystal
    # 4 TCM-conditioned crystals against the whole unconditional pool of 5
    assert goal1["tcm_yield"]["conditioned"]["n"] == 4 and goal1["tcm_yield"]["baseline"]["n"] == 5
    assert (out / "report.md").read_text() in capsys.readouterr().out


def test_species_counts_against_numpy():
    from jaxdos.structures import Crystals

    z = np.array([[8, 8, 30, 0], [1, 2, 3, 4], [5, 0, 0, 0]], np.int32)
    c = Crystals(
        z, np.zeros((3, 4, 3), np.float32), np.tile(np.eye(3), (3, 1, 1)), np.array([3, 4, 1])
    )
    want = [len(set(row[:n].tolist())) for row, n in zip(z, c.num_atoms, strict=True)]
    assert realism.species_counts(c).tolist() == want == [2, 4, 1]


def test_electron_counts_by_hand():
    from jaxdos.structures import Crystals

    # NaCl (1 + 7), Na (1), SiO2 (4 + 2 x 6), Fe (8: group 8, s + d), ZnO (12 + 6)
    z = np.array([[11, 17, 0], [11, 0, 0], [14, 8, 8], [26, 0, 0], [30, 8, 0]], np.int32)
    c = Crystals(
        z, np.zeros((5, 3, 3), np.float32), np.tile(np.eye(3), (5, 1, 1)), np.array([2, 1, 3, 1, 2])
    )
    assert realism.electron_counts(c).tolist() == [8, 1, 16, 8, 18]


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--samples", "0"], "samples"),
        (["--pairs", "1"], "pairs"),
        (["--gamma", "nan"], "--gamma"),
        (["--tcm-dos-per", "0"], "--tcm-dos-per"),
        (["--model", "/nonexistent"], "model"),
        (["--pairs", "101"], "pairs: at most 100"),
        (["--quick", "--tcm-dos", "999"], "--tcm-dos: at most"),
    ],
)
def test_bad_flags_fail_with_one_line(flags, field, tmp_path, capsys):
    argv = ["--model", "default", "--out", str(tmp_path / "x"), *flags]
    if "--model" in flags:
        argv = argv[2:]
    with pytest.raises(SystemExit):
        eval_crystal.main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert field in err and err.startswith("usage") is False
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A small untrained conditional CDOSGen saved as a model directory (2- and 3-atom cells)."""
    m = untrained_model(16, [2, 3])
    path = tmp_path_factory.mktemp("model")
    m.save(path)
    return path


@pytest.mark.slow
def test_quick_run_of_an_untrained_model(model_dir, tmp_path):
    out = tmp_path / "eval"
    eval_crystal.main(["--model", str(model_dir), "--out", str(out), "--quick", "--steps", "2"])
    goal0, goal1 = _read(out)
    assert goal0["valid"]["generated"]["n"] == 4
    assert goal1["tcm_yield"]["conditioned"]["n"] == goal1["tcm_yield"]["baseline"]["n"] == 4
    cos = goal1["dos_cosine"]["conditioned"]
    assert cos["n"] <= 4 and (math.isnan(cos["value"]) or cos["lo"] <= cos["value"] <= cos["hi"])
