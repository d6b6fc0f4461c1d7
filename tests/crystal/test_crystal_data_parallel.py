"""CDOSGen training data-parallel: K sub-batches per step on 1 and 8 fake devices, or 2 processes,
follow the same loss curve; a checkpoint resumes exactly on the same count and to tolerance on
another."""

import json

import jax
import numpy as np
import pytest
from fake_devices import ROOT, run_on_fake_devices, run_on_processes
from test_crystal_train import ToyScore, TrainBatch, _data, _init, synthetic_records

from jaxdos.crystal.fit import crystal_train_config, fit_crystal
from jaxdos.crystal.train import FinetuneFull, LossConfig


def test_sub_batches_must_be_a_multiple_of_the_devices(tmp_path):
    with pytest.raises(ValueError, match="sub_batches"):
        fit_crystal(
            None,
            {},
            _data(synthetic_records()),
            LossConfig(),
            crystal_train_config(steps=1),
            tmp_path,
            sub_batches=0,
            log=None,
        )


@pytest.mark.slow  # about a minute of CPU, several minutes of wall time on 2 busy cores
def test_one_and_eight_devices_train_alike_and_resume(tmp_path):
    script = f"""
        import json
        from pathlib import Path
        import jax, numpy as np
        from test_crystal_train import ToyScore, TrainBatch, _data, _init, synthetic_records
        from jaxdos.crystal.fit import crystal_train_config, fit_crystal
        from jaxdos.crystal.train import FinetuneFull, LossConfig

        records = synthetic_records(20)
        model = ToyScore()
        params = _init(model, TrainBatch.from_pipeline(next(_data(records)())))
        loss = LossConfig(mode=FinetuneFull())
        root = Path({str(tmp_path)!r})

        def train(name, devices, steps=3, **kw):
            cfg = crystal_train_config(steps=steps, learning_rate=1e-3, ckpt_every=1, log_every=1)
            state, _, _ = fit_crystal(model, params, _data(records), loss, cfg, root / name,
                                      log=None, devices=devices, sub_batches=8, **kw)
            rows = (root / name / "metrics.jsonl").read_text().splitlines()
            return state, [json.loads(r)["loss"] for r in rows]

        leaves = lambda s: [np.asarray(x) for x in jax.tree.leaves(s.params)]
        one, loss1 = train("one", 1)
        eight, loss8 = train("eight", 8)
        assert len(loss1) == 3 and len(set(loss1)) > 1
        np.testing.assert_allclose(loss8, loss1, rtol=1e-4)
        for a, b in zip(leaves(one), leaves(eight), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        train("resumed", 8, steps=1)
        again, _ = train("resumed", 8, resume=True)
        for a, b in zip(leaves(eight), leaves(again), strict=True):
            np.testing.assert_array_equal(a, b)
        train("moved", 8, steps=1)
        moved, _ = train("moved", 1, resume=True)
        for a, b in zip(leaves(eight), leaves(moved), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
        print("ok")
    """
    assert (
        run_on_fake_devices(script, ROOT / "tests" / "crystal", timeout=900).strip().endswith("ok")
    )


def toy_job(root, steps, **kw):
    """`fit_crystal` of the toy score network on 20 synthetic crystals under `root`; returns the
    final state. Builds records with JAX: call it after the runtime is up."""
    records = synthetic_records(20)
    model = ToyScore()
    params = _init(model, TrainBatch.from_pipeline(next(_data(records)())))
    cfg = crystal_train_config(steps=steps, learning_rate=1e-3, ckpt_every=2, log_every=1)
    state, _, _ = fit_crystal(
        model, params, _data(records), LossConfig(mode=FinetuneFull()), cfg, root, log=None, **kw
    )
    return state


def _losses(root):
    return [json.loads(r)["loss"] for r in (root / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # about 80 s on 2 busy cores
def test_two_processes_train_like_one_device(tmp_path):
    script = """
        import sys
        from pathlib import Path
        import jax, numpy as np
        import pytest
        from jaxdos import sharding

        assert sharding.initialize_distributed()  # from the JAX_* variables
        from test_crystal_data_parallel import toy_job

        root = Path(sys.argv[1])
        with pytest.raises(ValueError, match="devices: a multi-process run"):
            toy_job(root / "refused", 1, devices=1)
        # Default K: one batch per device of every process. Killed after the step-2 checkpoint,
        # then resumed.
        toy_job(root, 2)
        state = toy_job(root, 4, resume=True)
        assert len(jax.tree.leaves(state.params)[0].sharding.device_set) == 2
        if jax.process_index() == 0:
            np.savez(root / "params.npz", *[np.asarray(x) for x in jax.tree.leaves(state.params)])
        print("ok", jax.process_index())
    """
    multi = tmp_path / "multi"
    outs = run_on_processes(script, ROOT / "tests" / "crystal", args=[multi])
    assert [o.split()[-2:] for o in outs] == [["ok", "0"], ["ok", "1"]]
    single = toy_job(tmp_path / "single", 4, sub_batches=2)  # one process, uninterrupted
    losses, reference = _losses(multi), _losses(tmp_path / "single")
    assert len(losses) == 4 and len(set(reference)) > 1
    np.testing.assert_allclose(losses, reference, rtol=1e-4)
    with np.load(multi / "params.npz") as z:
        for i, y in enumerate(jax.tree.leaves(single.params)):
            np.testing.assert_allclose(z[f"arr_{i}"], np.asarray(y), rtol=1e-3, atol=1e-5)
