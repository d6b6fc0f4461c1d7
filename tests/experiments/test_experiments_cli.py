"""The experiment commands: bad input fails before any compute; a tiny screen runs end to end and
an interrupted run resumes to the same final results."""

import json
import shutil

import numpy as np
import pytest

from experiments import multi_property, tcm_screen, te_translation


@pytest.mark.parametrize(
    "module, argv, message",
    [
        (tcm_screen, ["--accept", "0"], "--accept: expected >= 1"),
        (tcm_screen, ["--proposals", "2", "--accept", "4"], "--proposals: expected >= accept"),
        (tcm_screen, ["--guidance", "-1"], "--guidance: expected a finite value >= 0"),
        (tcm_screen, ["--steps", "1"], "--steps: expected >= 2"),
        (
            tcm_screen,
            ["--type-temperature", "0"],
            "--type-temperature: expected a finite value > 0",
        ),
        (tcm_screen, ["--noise-length", "-1"], "--noise-length: expected finite >= 0"),
        (tcm_screen, ["--type2-min-width", "3"], "--type2-min-width: expected 0 <="),
        (tcm_screen, ["--bogus-flag"], "unrecognized arguments"),
        (te_translation, ["--references", "1"], "--references: expected >= 2"),
        (multi_property, ["--samples", "1"], "--samples: expected >= 2"),
        (multi_property, ["--sweep", "0"], "--sweep: expected values >= 1"),
        (multi_property, ["--dos-batch", "0"], "--dos-batch: expected >= 1"),
        (te_translation, ["--corrector-steps", "11"], "--corrector-steps: expected 0..10"),
        (te_translation, ["--crystal-batch", "0"], "--crystal-batch: expected >= 1"),
        (multi_property, ["--crystals-per-dos", "0"], "--crystals-per-dos: expected >= 1"),
    ],
)
def test_bad_flags_exit_with_a_named_error(module, argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        module.main([*argv, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_large_screen_sets_its_preset_and_explicit_flags_win(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(tcm_screen, "run", lambda cfg, out, **kw: seen.append(cfg) or {"table": ""})
    monkeypatch.setattr(tcm_screen.tqdm, "write", lambda *a: None)
    tcm_screen.main(["--large", "--out", str(tmp_path / "a")])
    tcm_screen.main(["--large", "--accept", "8", "--out", str(tmp_path / "b")])
    tcm_screen.main(["--out", str(tmp_path / "c")])
    large, mine, default = seen
    assert large == tcm_screen.ScreenConfig.large()
    sizes = (large.accept, large.proposals, large.uncond, large.crystals_per_dos)
    assert sizes == (64, 4096, 256, 4)
    assert mine == tcm_screen.ScreenConfig.large(accept=8)
    assert default == tcm_screen.ScreenConfig()


def test_refuses_another_runs_folder(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        tcm_screen.main(["--out", str(tmp_path / "run")])
    assert "holds no jaxdos run" in capsys.readouterr().err
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


TINY = dict(
    accept=1,
    proposals=64,
    crystals_per_dos=2,
    steps=4,
    dos_steps=4,
    uncond=4,
    dos_batch=32,
    crystal_batch=4,
    seed=0,
)


@pytest.mark.slow
def test_tcm_screen_end_to_end_and_resume(tmp_path):
    cfg = tcm_screen.ScreenConfig(**TINY)
    out = tmp_path / "screen"
    first = tcm_screen.run(cfg, out)
    for name in ("table4.md", "table4.csv", "summary.json", "run.json"):
        assert (out / name).exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["uncond"]["crystals"] == 4
    # One row per arm, also for a TCM type that accepted no DOS.
    rows = first["table"].splitlines()[2:]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == [
        "unconditional CDOSGen",
        "DOS-intermediated type1",
        "DOS-intermediated type2",
    ]
    for t in summary["types"].values():
        assert 0.0 <= t["acceptance_rate"] <= 1.0
    # Every crystal is written, not only the hits (tagged `_hit`); here the unconditional ones.
    chunks = sorted((out / "stages" / "crystals_uncond").glob("chunk-*.npz"))
    valid = np.concatenate([np.load(c)["valid"] for c in chunks])
    is_tcm = np.concatenate([np.load(c)["is_tcm"] for c in chunks])
    cifs = sorted((out / "structures_uncond").glob("crystal_*.cif"))
    assert valid.sum() <= len(cifs) <= len(valid)
    assert sum("_hit" in p.name for p in cifs) == is_tcm.sum()
    # Interrupt: lose the unconditional stage's last chunk and the tables, then resume.
    shutil.rmtree(out / "stages" / "crystals_uncond")
    (out / "table4.md").unlink()
    with pytest.raises(ValueError, match="--resume"):
        tcm_screen.run(cfg, out)
    second = tcm_screen.run(cfg, out, resume=True)
    assert second["table"] == first["table"]
    assert json.loads((out / "summary.json").read_text())["uncond"] == summary["uncond"]


def test_conditioning_metrics_matched_beats_random_pairing(rng):
    from jaxdos.pipeline.screening import conditioning_metrics, derangement

    cond = rng.random((6, 256)).astype(np.float32)
    noisy = cond + 0.01 * rng.random((6, 256)).astype(np.float32)
    m = conditioning_metrics(cond, noisy, seed=0)
    assert m["cosine"][0] > 0.99 > m["cosine"][1]
    assert m["jensen_shannon"][0] < m["jensen_shannon"][1]
    perm = derangement(6, rng)
    assert np.all(perm != np.arange(6)) and sorted(perm) == list(range(6))
    assert all(np.isnan(v).all() for v in conditioning_metrics(cond[:1], noisy[:1]).values())


def test_conditioning_estimates_carry_bootstrap_intervals_and_n(rng):
    from jaxdos.pipeline.screening import conditioning_estimates, conditioning_metrics

    cond = rng.random((8, 256)).astype(np.float32)
    noisy = cond + 0.01 * rng.random((8, 256)).astype(np.float32)
    est = conditioning_estimates(cond, noisy, seed=0)
    assert {k: (a.value, b.value) for k, (a, b) in est.items()} == conditioning_metrics(cond, noisy)
    for matched, random in est.values():
        for e in (matched, random):
            assert e.n == 8 and e.lo <= e.value <= e.hi
    assert est["cosine"][0].lo > est["cosine"][1].hi  # matched beats random beyond the intervals
    one = conditioning_estimates(cond[:1], noisy[:1])["cosine"][0]
    assert one.n == 1 and np.isnan(one.value)
