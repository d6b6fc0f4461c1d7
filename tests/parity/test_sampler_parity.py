"""DOSSampler: the PyTorch reference (experiments/reference/torch_sampler.py) vs jaxdos.sampler on
identical weights: log-probs, guidance gradient and the next tokens given the same noise."""

import numpy as np
import pytest
from parity_helpers import require_torch

torch = require_torch()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

from experiments.reference import torch_sampler as ref  # noqa: E402
from jaxdos.kernels.grid import N_BINS  # noqa: E402
from jaxdos.kernels.tokenizer import BG_ID, MASK_ID  # noqa: E402
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig, RegressorConfig  # noqa: E402
from jaxdos.sampler.guidance import ClassifierGuidance  # noqa: E402
from jaxdos.sampler.model import init_params, log_probs  # noqa: E402
from jaxdos.sampler.regressor import init_regressor  # noqa: E402
from jaxdos.sampler.sampling import (  # noqa: E402
    SamplerParams,
    SamplerState,
    guided_step_logits,
    sampler_step,
)

CFG = ModelConfig.tiny(
    num_layers=2,
    width=32,
    num_heads=4,
    cond_dim=16,
    regressor=RegressorConfig(proj_dim=2, hidden=16),
)
GUIDE = ClassifierGuidance(targets=(("band_gap", 1.0), (1, 0.5)), gammas=(2.0, 0.7))


def _jitter(tree, key, scale=0.1):
    """Randomise every leaf: the zero-initialised AdaLN/head would make the comparison trivial."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    new = [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(treedef, new)


@pytest.fixture(scope="module")
def models():
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    # Jitted: eager init dispatches thousands of small ops.
    diff = jax.jit(lambda a, b: _jitter(init_params(a, CFG), b))(k1, k2)
    reg = jax.jit(lambda a, b: _jitter(init_regressor(a, CFG), b))(k3, k4)
    params = SamplerParams(diff, reg, jnp.array([1.0, 0.3, 2.0]), jnp.array([0.8, 0.2, 1.5]))
    net, regressor = ref.DOSTransformer(CFG), ref.PropertyRegressor(CFG.regressor, CFG.width)
    flat_d = traverse_util.flatten_dict(diff["params"], sep="/")
    flat_r = traverse_util.flatten_dict(reg["params"], sep="/")
    net.load_state_dict(ref.state_dict_from_flax(flat_d), strict=True)
    regressor.load_state_dict(ref.state_dict_from_flax(flat_r), strict=True)
    return params, net.eval(), regressor.eval(), flat_d


def _inputs(seed=0, b=3):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, BG_ID + 1, (b, N_BINS))
    tokens = np.where(rng.uniform(size=(b, N_BINS)) < 0.6, MASK_ID, tokens).astype(np.int32)
    log_scale = rng.normal(size=b).astype(np.float32)
    return tokens, log_scale


def test_weight_round_trip(models):
    _, net, _, flat = models
    back = ref.flax_from_state_dict(net.state_dict(), flat)
    for path, value in flat.items():
        np.testing.assert_array_equal(back[path], np.asarray(value), err_msg=path)
    bad = dict(net.state_dict())
    bad["head.weight"] = bad["head.weight"][:, :-1]
    with pytest.raises(ValueError, match="head.weight"):
        ref.flax_from_state_dict(bad, flat)


def test_log_probs_match(models):
    params, net, _, _ = models
    tokens, log_scale = _inputs()
    t = np.array([0.9, 0.5, 0.05], np.float32)
    with jax.default_matmul_precision("highest"):
        got = log_probs(
            params.diffusion,
            jnp.asarray(tokens),
            jnp.asarray(log_scale),
            jnp.asarray(t),
            config=CFG,
        )
    with torch.no_grad():
        want = net(torch.tensor(tokens, dtype=torch.long), torch.tensor(log_scale), torch.tensor(t))
    np.testing.assert_allclose(np.asarray(got), want.numpy(), atol=2e-5, rtol=1e-5)


def test_guidance_gradient_matches(models):
    params, net, reg, _ = models
    tokens, log_scale = _inputs(1)
    t = np.full(3, 0.7, np.float32)
    with jax.default_matmul_precision("highest"):
        logp = log_probs(
            params.diffusion,
            jnp.asarray(tokens),
            jnp.asarray(log_scale),
            jnp.asarray(t),
            config=CFG,
        )
        guided, _ = guided_step_logits(
            params,
            jnp.asarray(tokens),
            jnp.asarray(log_scale),
            jnp.asarray(t),
            model_config=CFG,
            guidance=GUIDE,
        )
    stats = (torch.tensor(np.asarray(params.prop_mean)), torch.tensor(np.asarray(params.prop_std)))
    _, grad = ref.guided_logits(
        net,
        reg,
        torch.tensor(np.asarray(logp)),
        torch.tensor(log_scale),
        *stats,
        GUIDE.targets,
        GUIDE.gammas,
    )
    jgrad = np.asarray(logp - guided)
    assert np.abs(jgrad).max() > 1e-6  # the guidance term is not trivially zero
    np.testing.assert_allclose(jgrad, grad.numpy(), atol=1e-6 + 1e-4 * np.abs(jgrad).max())


@pytest.mark.parametrize("step", [0, 7])  # 7 = last step of 8: every masked bin unmasks
def test_next_tokens_match_given_same_noise(models, step):
    params, net, reg, _ = models
    tokens, log_scale = _inputs(2)
    scfg = DOSSamplingConfig(steps=8, corrector_steps=0)
    ex_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(7), i))(jnp.arange(3))
    with jax.default_matmul_precision("highest"):
        nxt = sampler_step(
            params,
            SamplerState(jnp.asarray(tokens)),
            step,
            ex_keys,
            jnp.asarray(log_scale),
            jnp.asarray(tokens) == BG_ID,
            model_config=CFG,
            sampling_config=scfg,
            guidance=GUIDE,
        ).tokens
    # The noise sampler_step draws, reproduced from its key schedule.
    keys = jax.vmap(lambda kk: jax.random.split(jax.random.fold_in(kk, step), 3))(ex_keys)
    u = jax.vmap(lambda kk: jax.random.uniform(kk, (N_BINS,)))(keys[:, 0])
    v = jax.vmap(lambda kk: jax.random.uniform(kk, (N_BINS,)))(keys[:, 1])
    grid = np.asarray(jnp.linspace(1.0, scfg.t_min, scfg.steps + 1, dtype=jnp.float32))
    stats = (torch.tensor(np.asarray(params.prop_mean)), torch.tensor(np.asarray(params.prop_std)))
    want, _, _ = ref.predictor_step(
        net,
        reg,
        stats,
        torch.tensor(tokens, dtype=torch.long),
        torch.tensor(log_scale),
        float(grid[step]),
        float(grid[step + 1]),
        step == scfg.steps - 1,
        torch.tensor(np.asarray(u)),
        torch.tensor(np.asarray(v)),
        GUIDE.targets,
        GUIDE.gammas,
    )
    changed = np.asarray(nxt) != tokens
    assert changed.any()
    np.testing.assert_array_equal(np.asarray(nxt), want.numpy())
