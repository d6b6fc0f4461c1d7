"""train_crystal / train_sampler / overfit_crystal: every flag reaches the frozen job config, and
parsing leaves the flags untouched (no compute: the training itself is tested in tests/crystal,
tests/sampler and tests/test_training.py)."""

import copy
import dataclasses

import numpy as np

from experiments import overfit_crystal, train_crystal, train_sampler
from jaxdos.crystal.denoiser import GemNetConfig
from jaxdos.crystal.train import FinetuneAdapters, FinetuneFull, Pretrain


def test_train_crystal_flags_reach_the_stage_config():
    argv = [
        "--records", "r.npz", "--lr", "3e-4", "--atoms", "40", "--graphs", "5",
        "--ckpt-every", "7", "--seed", "3", "--adapters-only", "--cosine", "--time-scale", "2",
        "--pos-sigma-ref", "0.5", "--pos-weight", "0.3", "--type-ce", "0.02", "--width", "16",
        "--blocks", "1", "--steps", "11", "--finetune-steps", "5", "--cell-var", "0.05",
        "--t-mid", "0.4", "--sub-batches", "4", "--frac-head", "2",
    ]  # fmt: skip
    args = train_crystal.parse(argv)
    before = copy.deepcopy(vars(args))
    ft = train_crystal.stage_config(args, "finetune", args.finetune_steps)
    pre = train_crystal.stage_config(args, "pretrain", args.steps)
    assert vars(args) == before  # the flags are read, never rewritten
    assert ft.train.steps == ft.train.decay_steps == 5 and pre.train.decay_steps == 11
    assert ft.train.learning_rate == 3e-4 and ft.train.seed == 3 and ft.train.ckpt_every == 7
    assert ft.train.clip_value == 0.5 and ft.train.ema_decay is None  # MatterGen's optimiser
    assert (ft.atoms, ft.graphs, ft.records, ft.init) == (40, 5, "r.npz", None)
    assert ft.sub_batches == pre.sub_batches == 4
    assert ft.model.time_scale == 2 and ft.model.pos_sigma_ref == 0.5
    assert ft.model.emb_size_atom == ft.model.latent_dim == 16 and ft.model.num_blocks == 1
    assert ft.model.frac_head == pre.model.frac_head == 2
    assert ft.weights.pos == 0.3 and ft.diffusion.types.hybrid_coeff == 0.02
    assert ft.diffusion.cell.limit_var_scaling_constant == 0.05 and ft.diffusion.mid_fraction == 0.4
    assert isinstance(ft.loss.mode, FinetuneAdapters) and isinstance(pre.loss.mode, Pretrain)
    plain = train_crystal.stage_config(train_crystal.parse([]), "finetune", 3)
    assert isinstance(plain.loss.mode, FinetuneFull) and plain.train.decay_steps is None
    assert plain.model == GemNetConfig.tiny() and plain.diffusion.types.hybrid_coeff == 0.01
    assert plain.sub_batches is None  # K: the global device count
    # Under --make-default the fine-tune starts from the pre-training (the lever network), never
    # from an --init folder: nothing is read.
    both = train_crystal.parse(["--make-default", "--init", "nowhere", "--width", "16"])
    assert train_crystal.stage_config(both, "finetune", 3).model.emb_size_atom == 16


def test_train_crystal_finetune_takes_the_init_architecture(tmp_path, capsys):
    import pytest

    from jaxdos.crystal.checkpoint import save_model
    from jaxdos.crystal.diffusion.corruption import DiffusionConfig
    from jaxdos.crystal.diffusion.d3pm import D3PMConfig
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution

    net = GemNetConfig.tiny(num_blocks=1, emb_size_atom=8, emb_size_edge=8, latent_dim=8)
    diffusion = DiffusionConfig(types=D3PMConfig(hybrid_coeff=0.05))
    dist = NumAtomsDistribution.from_counts(np.array([2, 3]))
    save_model(tmp_path / "init", {"params": {"w": np.zeros(2)}}, net, dist, diffusion=diffusion)
    argv = ["--stage", "finetune", "--init", str(tmp_path / "init")]
    config = train_crystal.stage_config(train_crystal.parse(argv), "finetune", 2)
    assert config.model == net and config.diffusion == diffusion
    assert config.resolved() == config  # consistent with its init
    with pytest.raises(ValueError, match=r"--blocks: 2 contradicts"):
        train_crystal.stage_config(train_crystal.parse([*argv, "--blocks", "2"]), "finetune", 2)
    with pytest.raises(ValueError, match=r"model: differs .* num_blocks=2"):
        dataclasses.replace(config, model=GemNetConfig.tiny()).resolved()
    with pytest.raises(SystemExit):
        train_crystal.main([*argv, "--pos-sigma-ref", "0.3", "--workdir", str(tmp_path / "w")])
    assert "--pos-sigma-ref: 0.3 contradicts" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    with pytest.raises(ValueError, match=r"--cell-var: 0.05 contradicts"):
        train_crystal.stage_config(
            train_crystal.parse([*argv, "--cell-var", "0.05"]), "finetune", 2
        )
    # A fine-tune may add a fractional head to an init without one (it starts at zero).
    headed = train_crystal.parse([*argv, "--frac-head", "2"])
    head = train_crystal.stage_config(headed, "finetune", 2)
    assert head.resolved().model == dataclasses.replace(net, frac_head=2)
    save_model(tmp_path / "headed", {"params": {"w": np.zeros(2)}}, head.model, dist)
    with pytest.raises(ValueError, match=r"--frac-head: 1 contradicts"):
        train_crystal.stage_config(
            train_crystal.parse(["--stage", "finetune", "--init", str(tmp_path / "headed"),
                                 "--frac-head", "1"]), "finetune", 2)  # fmt: skip
    with pytest.raises(ValueError, match=r"model: differs .* frac_head=0"):
        dataclasses.replace(config, model=net, init=str(tmp_path / "headed")).resolved()
    tmid = train_crystal.stage_config(train_crystal.parse([*argv, "--t-mid", "0.3"]), "finetune", 2)
    assert tmid.resolved().diffusion.mid_fraction == 0.3  # the t distribution may change in one
    with pytest.raises(SystemExit):
        train_crystal.main([*argv, "--t-mid", "2", "--workdir", str(tmp_path / "w")])
    assert "--t-mid: expected a share in [0, 1], got 2.0" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
    with pytest.raises(SystemExit):  # nothing to resume: refused before any compute
        train_crystal.main([*argv, "--resume", "--workdir", str(tmp_path / "w")])
    assert "--resume: no checkpoint under" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_train_sampler_flags_reach_the_job_config():
    argv = [
        "--preset", "tiny", "--records", "r.npz", "--steps", "9", "--regressor-steps", "4",
        "--batch-size", "8", "--lr", "2e-3", "--warmup", "3", "--eval-every", "5",
        "--ckpt-every", "6", "--seed", "2", "--max-records", "50", "--export", "dest",
        "--workdir", "w", "--resume",
    ]  # fmt: skip
    config, workdir, resume = train_sampler.parse(argv)
    assert str(workdir) == "w" and resume
    assert (config.batch_size, config.records, config.max_records) == (8, "r.npz", 50)
    assert config.export == "dest" and config.diffusion.steps == 9 and config.regressor.steps == 4
    for t in (config.diffusion, config.regressor):
        assert (t.learning_rate, t.warmup, t.eval_every, t.ckpt_every, t.seed) == (2e-3, 3, 5, 6, 2)
        assert t.clip_norm == 1.0 and t.ema_decay == 0.999
    assert config.init is None and config.diffusion.decay_steps is None
    warm, _, _ = train_sampler.parse(["--init", "some/sampler", "--cosine", "--steps", "7"])
    assert warm.init == "some/sampler" and warm.diffusion.decay_steps == 7
    assert warm.regressor.decay_steps is None


def test_train_sampler_init_of_another_preset_is_a_usage_error(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        train_sampler.main(["--preset", "paper", "--init", "jaxdos/assets/sampler_tiny",
                            "--workdir", str(tmp_path / "w")])  # fmt: skip
    assert "init: jaxdos/assets/sampler_tiny holds a ModelConfig" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_overfit_crystal_still_reads_the_lever_flags(tmp_path):
    args = overfit_crystal.parse(["--out", str(tmp_path), "--width", "16", "--type-ce", "0.05"])
    config, diffusion, _ = train_crystal.lever_configs(args)
    assert config.emb_size_edge == 16 and diffusion.types.hybrid_coeff == 0.05


def test_a_batch_that_does_not_split_over_the_devices_is_a_usage_error(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    for module, flag in (("train_sampler", "--batch-size"), ("train_crystal", "--sub-batches")):
        out = tmp_path / module
        argv = [sys.executable, "-m", f"experiments.{module}", flag, "3", "--workdir", str(out)]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        assert f"{flag}: 3 is not a multiple of the 2 devices" in done.stderr.splitlines()[-1]
        assert "Traceback" not in done.stderr and not out.exists()
