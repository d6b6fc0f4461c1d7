"""CDOSGen on the training core: a one-step smoke test with adapters-only freezing, CFG dropout,
bit-identical resume with the budget hook. (The core's own tests: tests/test_training.py.)"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.crystal.batch import DosCondition, ScoreOutput
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.fit import RegrowingStep, crystal_train_config, fit_crystal
from jaxdos.crystal.train import (
    FinetuneAdapters,
    FinetuneFull,
    LossConfig,
    Pretrain,
    TrainBatch,
    adapters_only_labels,
    cfg_mask,
    check_adapters,
)
from jaxdos.data.budgets import CrystalBudgets
from jaxdos.data.pipelines import crystal_batches
from jaxdos.data.records import Records
from jaxdos.structures import CrystalBatch
from jaxdos.training import init_train_state, latest_checkpoint, make_optimizer


def synthetic_records(m=12, seed=0) -> Records:
    """Small rock-salt-like and simple cubic crystals with a made-up non-negative DOS."""
    rng = np.random.default_rng(seed)
    z = np.zeros((m, 20), np.int32)
    frac = np.zeros((m, 20, 3), np.float32)
    lat = np.zeros((m, 3, 3), np.float32)
    n = rng.integers(1, 5, m).astype(np.int32)
    for i in range(m):
        z[i, : n[i]] = rng.choice([3, 8, 11, 17, 26], n[i])
        frac[i, : n[i]] = rng.uniform(0, 1, (n[i], 3))
        lat[i] = np.diag(rng.uniform(3.0, 4.5, 3)) + rng.normal(0, 0.1, (3, 3))
    dos = np.abs(rng.normal(0, 1, (m, 256))).astype(np.float32)
    zeros = np.zeros(m, np.float32)
    return Records(
        z,
        frac,
        lat,
        n,
        dos,
        zeros,
        dos.max(1),
        zeros,
        zeros,
        zeros,
        np.array([f"syn-{i}" for i in range(m)]),
    )


BUDGETS = CrystalBudgets(atoms=24, graphs=5)
CFG = GemNetConfig.tiny(
    num_blocks=1, emb_size_atom=16, emb_size_edge=16, latent_dim=16, dos_emb_size=16
).conditional()


def _data(records, seed=0):
    return lambda: iter(crystal_batches(records, BUDGETS, seed=seed, num_epochs=None))


class ToyScore(nn.Module):
    """A cheap stand-in network (compiles in seconds) with one adapter-named submodule."""

    @nn.compact
    def __call__(self, batch: CrystalBatch, t, cond=None):
        h = jnp.concatenate([batch.frac_coords, t[batch.batch][:, None]], -1)
        h = nn.Dense(16, name="gemnet_in")(h) + nn.Embed(102, 16, name="emb")(batch.atomic_numbers)
        if cond is not None:
            g = nn.Dense(16, name="cond_mixin_layers_dos_0")(jnp.log1p(cond.dos))
            h = h + jnp.where(cond.use_cond[:, None], g, 0.0)[batch.batch]
        h = nn.gelu(h)
        lat = nn.Dense(9, name="lat")(jax.ops.segment_sum(h, batch.batch, batch.num_graphs))
        lat = lat.reshape(-1, 3, 3)
        return ScoreOutput(
            nn.Dense(3, name="frac")(h),
            lat + jnp.swapaxes(lat, 1, 2),
            nn.Dense(101, name="fc_atom")(h),
        )


def _init(model, batch):
    init = jax.jit(model.init)
    g = batch.crystal.num_graphs
    cond = DosCondition(batch.dos, jnp.ones(g, bool))
    return {"params": init(jax.random.key(0), batch.crystal, jnp.full(g, 0.5), cond)["params"]}


@pytest.fixture(scope="module")
def toy():
    records = synthetic_records()
    batch = TrainBatch.from_pipeline(next(_data(records)()))
    model = ToyScore()
    return model, _init(model, batch), records, batch


@pytest.fixture(scope="module")
def gemnet():
    records = synthetic_records()
    batch = TrainBatch.from_pipeline(next(_data(records)()))
    model = GemNetTDenoiser(CFG)
    return model, _init(model, batch), records, batch


def _one_step(setup, mode):
    model, params, _, batch = setup
    loss, tcfg = LossConfig(mode=mode), crystal_train_config(steps=1, learning_rate=1e-3)
    labels = adapters_only_labels if isinstance(mode, FinetuneAdapters) else None
    step = RegrowingStep(model, loss, tcfg, labels)
    state = init_train_state(params, make_optimizer(tcfg, labels), tcfg)
    before = jax.tree.map(np.asarray, params)
    state, metrics = step(state, batch, jax.random.key(1))
    assert int(state.step) == 1 and not bool(metrics["overflow"])
    return state, metrics, before


@pytest.mark.parametrize("which", ["toy", pytest.param("gemnet", marks=pytest.mark.slow)])
def test_train_step_adapters_only_freezes_base(which, request):
    state, metrics, before = _one_step(request.getfixturevalue(which), FinetuneAdapters())
    for k in ("loss", "loss_pos", "loss_cell", "loss_types", "grad_norm"):
        assert np.isfinite(float(metrics[k])), k
    labels = adapters_only_labels(before)
    moved = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != b)), state.params, before)
    flat = list(zip(jax.tree.leaves(labels), jax.tree.leaves(moved), strict=True))
    assert any(lab == "train" for lab, _ in flat)
    assert all(not mv for lab, mv in flat if lab == "frozen")
    assert any(mv for lab, mv in flat if lab == "train")


def test_cfg_mask_rate_and_missing_dos():
    dos = np.ones((20_000, 4), np.float32)
    dos[:100, 0] = np.nan
    m = np.asarray(cfg_mask(jax.random.key(0), jnp.asarray(dos), jnp.ones(20_000, bool), 0.2))
    assert not m[:100].any()
    np.testing.assert_allclose(m[100:].mean(), 0.8, atol=0.01)


@pytest.mark.parametrize("which", ["toy", pytest.param("gemnet", marks=pytest.mark.slow)])
def test_resume_is_bit_identical(which, request, tmp_path):
    model, params, records, _ = request.getfixturevalue(which)
    loss = LossConfig(mode=FinetuneFull())
    cfg = lambda n: crystal_train_config(steps=n, learning_rate=1e-3, ckpt_every=2, log_every=1)
    run = lambda n, d, **kw: fit_crystal(
        model, params, _data(records), loss, cfg(n), d, log=None, **kw
    )
    full, _, rows = run(4, tmp_path / "a")
    run(2, tmp_path / "b")
    resumed, used, _ = run(4, tmp_path / "b", resume=True)
    assert int(resumed.step) == 4 and latest_checkpoint(tmp_path / "b") == 4
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and np.isfinite(rows[-1]["loss"])
    with pytest.raises(ValueError, match="resume"):
        run(4, tmp_path / "c", resume=True)


def test_bad_train_config():
    with pytest.raises(ValueError, match="p_uncond"):
        FinetuneFull(p_uncond=1.5)
    with pytest.raises(ValueError, match="mode"):
        LossConfig(mode="finetune")
    with pytest.raises(ValueError, match="mode"):
        check_adapters(FinetuneAdapters(), {"params": {"fc_atom": {"kernel": jnp.zeros((2, 2))}}})
    assert isinstance(LossConfig().mode, Pretrain)
    assert CrystalBatch._fields[0] == "atomic_numbers"
