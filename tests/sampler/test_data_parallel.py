"""DOSSampler training data-parallel: 1 and 8 fake devices, or 2 processes, at the same global batch
follow the same loss curve, and a checkpoint resumes exactly on the same count and to tolerance
across counts."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from fake_devices import ROOT, run_on_fake_devices, run_on_processes

from jaxdos.sampler.checkpoint import DOSSamplerModel
from jaxdos.sampler.fit import SamplerFitConfig, fit_sampler, run_stage, sampler_train_config


def test_batch_size_must_split_over_the_devices(tmp_path):
    from sampler_toy import toy_records

    with pytest.raises(ValueError, match="devices"):
        run_stage(
            "diffusion", SamplerFitConfig(), toy_records(4), None, tmp_path, resume=False, devices=2
        )


@pytest.mark.slow  # about 45 s of CPU, over 3 minutes of wall time on 2 busy cores
def test_one_and_eight_devices_train_alike_and_resume(tmp_path):
    script = f"""
        import dataclasses, json
        from pathlib import Path
        import jax, numpy as np
        from sampler_toy import SMALL, toy_records
        from jaxdos.sampler.fit import SamplerFitConfig, run_stage, sampler_train_config

        cfg = sampler_train_config(steps=4, learning_rate=3e-3, warmup=2, eval_every=0,
                                   ckpt_every=2, log_every=1)
        job = SamplerFitConfig(model=SMALL, diffusion=cfg, regressor=cfg, batch_size=8)
        recs = toy_records(12)
        root = Path({str(tmp_path)!r})

        def train(name, devices, **kw):
            resume = kw.pop("resume", False)
            state = run_stage("diffusion", job, recs, None, root / name, resume=resume,
                              log=None, devices=devices, **kw)
            rows = (root / name / "diffusion" / "metrics.jsonl").read_text().splitlines()
            return state, [json.loads(r)["loss"] for r in rows]

        one, loss1 = train("one", 1)
        eight, loss8 = train("eight", 8)
        assert len(loss1) == 4 and len(set(loss1)) > 1
        np.testing.assert_allclose(loss8, loss1, rtol=1e-4)
        leaves = lambda s: [np.asarray(x) for x in jax.tree.leaves(s.params)]
        for a, b in zip(leaves(one), leaves(eight), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        shard = jax.tree.leaves(eight.params)[0]
        assert len(shard.sharding.device_set) == 8  # replicated on every device
        # Killed at step 2 on 8 devices, resumed on 8: bit for bit the uninterrupted run.
        train("resumed", 8, stop_after=2)
        again, _ = train("resumed", 8, resume=True)
        for a, b in zip(leaves(eight), leaves(again), strict=True):
            np.testing.assert_array_equal(a, b)
        # The same checkpoint resumed on one device: the device count is no part of the run.
        train("moved", 8, stop_after=2)
        moved, _ = train("moved", 1, resume=True)
        for a, b in zip(leaves(eight), leaves(moved), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        print("ok")
    """
    assert (
        run_on_fake_devices(script, ROOT / "tests" / "sampler", timeout=600).strip().endswith("ok")
    )


def multihost_job():
    """(job, train records, val records) of the two-process test: 4 steps a network, a checkpoint
    at step 2, the regressor validated at its end. Builds records with JAX: call it after the
    multi-host runtime is up."""
    from sampler_toy import SMALL, toy_records

    cfg = sampler_train_config(
        steps=4, learning_rate=3e-3, warmup=2, eval_every=0, ckpt_every=2, log_every=1
    )
    job = SamplerFitConfig(
        model=SMALL, diffusion=cfg, regressor=dataclasses.replace(cfg, eval_every=4), batch_size=8
    )
    recs = toy_records(12)
    return job, recs, recs.take(np.arange(4))


def _rows(workdir, stage):
    return [json.loads(r) for r in (workdir / stage / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 2 min on 2 busy cores: two processes, then one, compile both networks
def test_two_processes_train_like_one_device(tmp_path):
    script = """
        import sys
        from pathlib import Path
        import jax
        from jaxdos import sharding

        assert sharding.initialize_distributed()  # from the JAX_* variables
        from test_data_parallel import multihost_job
        from jaxdos.sampler.fit import fit_sampler, run_stage

        job, recs, val = multihost_job()
        root = Path(sys.argv[1])
        # Killed after the score network's step-2 checkpoint, then the whole job resumed.
        state = run_stage("diffusion", job, recs, None, root, resume=False, log=None, stop_after=2)
        assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == 2  # both processes
        fit_sampler(job, recs, val, root, resume=True, log=None)
        print("ok", jax.process_index())
    """
    multi = tmp_path / "multi"
    outs = run_on_processes(script, ROOT / "tests" / "sampler", args=[multi])
    assert [o.split()[-2:] for o in outs] == [["ok", "0"], ["ok", "1"]]
    job, recs, val = multihost_job()  # the same job in this one process, uninterrupted
    single = fit_sampler(job, recs, val, tmp_path / "single", log=None)
    for stage in ("diffusion", "regressor"):
        a, b = _rows(multi, stage), _rows(tmp_path / "single", stage)
        assert [r["step"] for r in a] == [1, 2, 3, 4]  # process 0 alone wrote the log
        for ra, rb in zip(a, b, strict=True):
            assert ra.keys() == rb.keys()
            np.testing.assert_allclose([ra[k] for k in rb], list(rb.values()), rtol=1e-4)
    exported, reference = DOSSamplerModel.load(multi / "sampler"), DOSSamplerModel.load(single)
    for x, y in zip(
        jax.tree.leaves(exported.params), jax.tree.leaves(reference.params), strict=True
    ):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-3, atol=1e-5)
