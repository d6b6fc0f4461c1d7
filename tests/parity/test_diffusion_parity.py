"""Corruption parity against mattergen's modules: VP/VE marginals, symmetric noise, D3PM matrices
and posteriors (float32 both sides; tolerances are float32 round-off)."""

import numpy as np
import pytest
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from mattergen.common.diffusion.corruption import (  # noqa: E402
    LatticeVPSDE,
    NumAtomsVarianceAdjustedWrappedVESDE,
    make_noise_symmetric_preserve_variance,
)
from mattergen.diffusion.d3pm.d3pm import (  # noqa: E402
    MaskDiffusion,
    create_discrete_diffusion_schedule,
)

from jaxdos.crystal.diffusion import d3pm, lattice, wrapped_normal  # noqa: E402
from jaxdos.crystal.diffusion.corruption import DiffusionConfig  # noqa: E402

CFG = DiffusionConfig()
T_STEPS = 1000


def test_lattice_vp_marginal(rng):
    sde = LatticeVPSDE(
        beta_min=0.1,
        beta_max=20.0,
        limit_density=CFG.cell.limit_density,
        limit_var_scaling_constant=0.25,
    )
    x0 = rng.normal(size=(5, 3, 3)).astype(np.float32) + 4 * np.eye(3, dtype=np.float32)
    t = np.array([1e-3, 0.1, 0.5, 0.9, 1.0], np.float32)
    n = np.array([1, 4, 7, 12, 20])
    mean, std = sde.marginal_prob(
        torch.tensor(x0), torch.tensor(t), batch={"num_atoms": torch.tensor(n)}
    )
    jmean, jstd = lattice.marginal(jnp.asarray(x0), jnp.asarray(t), jnp.asarray(n), CFG.cell)
    np.testing.assert_allclose(np.asarray(jmean), mean.numpy(), rtol=2e-6, atol=1e-6)
    # mattergen's std is elementwise [G, 3, 3]; every entry equals jaxdos's per-crystal std.
    np.testing.assert_allclose(
        np.broadcast_to(np.asarray(jstd)[:, None, None], std.shape), std.numpy(), rtol=2e-6
    )
    np.testing.assert_allclose(
        np.asarray(lattice.limit_mean(jnp.asarray(n), CFG.cell)),
        sde.get_limit_mean(torch.tensor(x0), {"num_atoms": torch.tensor(n)}).numpy(),
        rtol=2e-6,
    )


def test_wrapped_ve_marginal_and_diffusion():
    sde = NumAtomsVarianceAdjustedWrappedVESDE(sigma_min=0.01, sigma_max=5.0)
    num_atoms = torch.tensor([1, 3, 8])
    batch_idx = torch.repeat_interleave(torch.arange(3), num_atoms)
    t = torch.tensor([0.02, 0.4, 0.95])
    x = torch.rand(int(num_atoms.sum()), 3)
    _, std = sde.marginal_prob(x, t, batch_idx=batch_idx, batch={"num_atoms": num_atoms})
    jstd = wrapped_normal.sigma(
        jnp.asarray(t.numpy())[batch_idx.numpy()],
        jnp.asarray(num_atoms.numpy())[batch_idx.numpy()],
        CFG.pos,
    )
    np.testing.assert_allclose(
        np.broadcast_to(np.asarray(jstd)[:, None], std.shape), std.numpy(), rtol=2e-6
    )
    # g(t) of the unscaled VE (mattergen's `sde` diffusion term) vs jaxdos at N = 1.
    _, g = sde.sde(
        x[:1],
        t[:1],
        batch_idx=torch.zeros(1, dtype=torch.long),
        batch={"num_atoms": torch.tensor([1])},
    )
    jg = wrapped_normal.diffusion_coeff(jnp.asarray(t.numpy()[:1]), jnp.ones(1), CFG.pos)
    np.testing.assert_allclose(np.asarray(jg), g.numpy().reshape(-1)[:1], rtol=2e-6)


def test_symmetric_noise_transform(key):
    e = jax.random.normal(key, (4, 3, 3))
    ref = make_noise_symmetric_preserve_variance(torch.tensor(np.asarray(e)))
    np.testing.assert_allclose(
        np.asarray(lattice.symmetric_noise(key, (4, 3, 3))), ref.numpy(), rtol=1e-6, atol=1e-7
    )


def _mask_diffusion():
    sched = create_discrete_diffusion_schedule(kind="standard", num_steps=T_STEPS)
    return MaskDiffusion(dim=101, schedule=sched)


@pytest.mark.parametrize("k", [0, 1, 250, 998, 999])
def test_d3pm_transition_matrices(k):
    md = _mask_diffusion()
    mat = md.get(torch.tensor([k])).numpy()[0]  # [C, C], column = from (mattergen einsum bij,bj)
    b = float(d3pm.beta(jnp.asarray(k), T_STEPS))
    ref = np.eye(101) * (1 - b)
    ref[d3pm.MASK_CLASS, :] += b
    ref[d3pm.MASK_CLASS, d3pm.MASK_CLASS] = 1.0
    np.testing.assert_allclose(mat, ref, rtol=1e-6, atol=1e-7)
    # Marginal q(x_k | x_0) for a one-hot x_0 = class 7.
    q0 = torch.eye(101)[7][None]
    qk = md.get_qt_given_q0(q0, torch.tensor([k])).numpy()[0]
    p = float(d3pm.keep_prob(jnp.asarray(k), T_STEPS))
    np.testing.assert_allclose(qk[7], p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(qk[d3pm.MASK_CLASS], 1 - p, rtol=1e-6, atol=1e-7)


def test_d3pm_posterior(rng):
    md = _mask_diffusion()
    n = 12
    probs = rng.dirichlet(np.ones(101), size=n).astype(np.float32)
    x_next = np.where(rng.uniform(size=n) < 0.5, d3pm.MASK_CLASS, rng.integers(0, 100, n))
    k = rng.integers(0, T_STEPS - 1, n)
    logits, _ = md.sample_and_compute_posterior_q(
        x_0=torch.tensor(probs),
        t=torch.tensor(k),
        samples=torch.tensor(x_next),
        make_one_hot=False,
        return_logits=True,
    )
    ref = torch.log_softmax(logits, -1).numpy()
    got = jax.nn.log_softmax(
        d3pm.posterior_logits(jnp.asarray(probs), jnp.asarray(x_next), jnp.asarray(k), T_STEPS)
    )
    finite = ref > -30  # classes with probability > 1e-13: log-probs agree
    np.testing.assert_array_equal(finite, np.asarray(got) > -30)
    np.testing.assert_allclose(np.asarray(got)[finite], ref[finite], rtol=1e-5, atol=1e-5)
