"""train_crystal / train_sampler / overfit_crystal: every flag reaches the frozen job config, and
parsing leaves the flags untouched (no compute: the training itself is tested in tests/crystal,
tests/sampler and tests/test_training.py)."""

import copy

from experiments import overfit_crystal, train_crystal, train_sampler
from jaxdos.crystal.train import FinetuneAdapters, FinetuneFull, Pretrain


def test_train_crystal_flags_reach_the_stage_config():
    argv = [
        "--records", "r.npz", "--lr", "3e-4", "--atoms", "40", "--graphs", "5",
        "--ckpt-every", "7", "--seed", "3", "--adapters-only", "--cosine", "--time-scale", "2",
        "--pos-sigma-ref", "0.5", "--pos-weight", "0.3", "--type-ce", "0.02", "--width", "16",
        "--blocks", "1", "--init", "base", "--steps", "11", "--finetune-steps", "5",
    ]  # fmt: skip
    args = train_crystal.parse(argv)
    before = copy.deepcopy(vars(args))
    ft = train_crystal.stage_config(args, "finetune", args.finetune_steps)
    pre = train_crystal.stage_config(args, "pretrain", args.steps)
    assert vars(args) == before  # the flags are read, never rewritten
    assert ft.train.steps == ft.train.decay_steps == 5 and pre.train.decay_steps == 11
    assert ft.train.learning_rate == 3e-4 and ft.train.seed == 3 and ft.train.ckpt_every == 7
    assert ft.train.clip_value == 0.5 and ft.train.ema_decay is None  # MatterGen's optimiser
    assert (ft.atoms, ft.graphs, ft.records, ft.init) == (40, 5, "r.npz", "base")
    assert ft.model.time_scale == 2 and ft.model.pos_sigma_ref == 0.5
    assert ft.model.emb_size_atom == ft.model.latent_dim == 16 and ft.model.num_blocks == 1
    assert ft.weights.pos == 0.3 and ft.diffusion.types.hybrid_coeff == 0.02
    assert isinstance(ft.loss.mode, FinetuneAdapters) and isinstance(pre.loss.mode, Pretrain)
    plain = train_crystal.stage_config(train_crystal.parse([]), "finetune", 3)
    assert isinstance(plain.loss.mode, FinetuneFull) and plain.train.decay_steps is None


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


def test_overfit_crystal_still_reads_the_lever_flags(tmp_path):
    args = overfit_crystal.parse(["--out", str(tmp_path), "--width", "16", "--type-ce", "0.05"])
    config, diffusion, _ = train_crystal.lever_configs(args)
    assert config.emb_size_edge == 16 and diffusion.types.hybrid_coeff == 0.05
