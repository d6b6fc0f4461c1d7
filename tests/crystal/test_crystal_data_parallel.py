"""CDOSGen training data-parallel: K sub-batches per step on 1 and 8 fake devices follow the same
loss curve; a checkpoint resumes exactly on the same count and to tolerance on another."""

import pytest
from fake_devices import ROOT, run_on_fake_devices
from test_crystal_train import _data, synthetic_records

from jaxdos.crystal.fit import crystal_train_config, fit_crystal
from jaxdos.crystal.train import LossConfig


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
