"""Forward corruptions vs closed forms; wrapped-normal score vs finite differences; D3PM Bayes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.crystal.diffusion import d3pm, lattice, wrapped_normal
from jaxdos.crystal.diffusion.corruption import DiffusionConfig, corrupt, sample_time

C = 101


def _np_absorbing_matrices(t_steps):
    """Dense one-step matrices Q_k[i, j] = q(x_{k+1} = j | x_k = i) (independent reference)."""
    mats = []
    for k in range(t_steps):
        b = 1.0 / (t_steps - k)
        q = np.eye(C) * (1 - b)
        q[:, C - 1] += b
        q[C - 1] = 0
        q[C - 1, C - 1] = 1
        mats.append(q)
    return mats


def test_d3pm_keep_probability_closed_form_and_monte_carlo():
    t_steps = 1000
    mats = _np_absorbing_matrices(t_steps)
    qbar = np.eye(C)
    for k in range(0, 600):
        if k in (0, 1, 250, 599):
            np.testing.assert_allclose(qbar[3, 3], float(d3pm.keep_prob(k, t_steps)), atol=1e-5)
        qbar = qbar @ mats[k]
    assert float(d3pm.keep_prob(t_steps, t_steps)) == 0.0
    x0 = jnp.full((200_000,), 7)
    for level in (1, 300, 999):
        xs = d3pm.q_sample(jax.random.key(level), x0, jnp.full_like(x0, level), t_steps)
        kept = np.mean(np.asarray(xs) == 7)
        assert set(np.unique(np.asarray(xs))) <= {7, d3pm.MASK_CLASS}
        assert abs(kept - (1 - level / t_steps)) < 4e-3


def test_d3pm_discrete_time():
    t = jnp.array([0.0, 1e-5, 0.5, 0.999, 1.0])
    np.testing.assert_array_equal(d3pm.to_discrete_time(t, 1000), [0, 0, 499, 998, 999])


@pytest.mark.parametrize("k", [0, 1, 17, 500, 998])
def test_d3pm_posterior_matches_bayes(k):
    t_steps = 1000
    mats = _np_absorbing_matrices(t_steps)
    p_k = 1 - k / t_steps
    rng = np.random.default_rng(k)
    x0_probs = rng.dirichlet(np.ones(C))
    x0_probs[C - 1] = 0
    x0_probs /= x0_probs.sum()
    qk = p_k * x0_probs + (1 - p_k) * np.eye(C)[C - 1]  # x_0 Qbar_k
    for x_next in (5, C - 1):
        ref = qk * mats[k][:, x_next]
        ref /= ref.sum()
        logits = d3pm.posterior_logits(
            jnp.asarray(x0_probs[None], jnp.float32), jnp.array([x_next]), jnp.array([k]), t_steps
        )
        np.testing.assert_allclose(np.asarray(jax.nn.softmax(logits))[0], ref, atol=1e-5)
    # A masked atom unmasks with probability 1 / (k + 1) (docs/spec/mattergen.md §5.2).
    logits = d3pm.posterior_logits(
        jnp.asarray(x0_probs[None], jnp.float32), jnp.array([C - 1]), jnp.array([k]), t_steps
    )
    stay = float(jax.nn.softmax(logits)[0, C - 1])
    np.testing.assert_allclose(1 - stay, 1 / (k + 1), rtol=1e-4)


def test_d3pm_loss_is_zero_for_perfect_model_and_positive_otherwise():
    cfg = d3pm.D3PMConfig()
    x0 = jnp.array([0, 5, 60, 7])
    x_next = jnp.array([0, d3pm.MASK_CLASS, d3pm.MASK_CLASS, 7])
    k = jnp.array([10, 10, 0, 500])
    perfect = 50.0 * jax.nn.one_hot(x0, C)
    loss_fn = jax.jit(d3pm.d3pm_loss, static_argnums=4)
    loss, ce = loss_fn(perfect, x0, x_next, k, cfg)
    assert np.all(np.asarray(loss) < 1e-3) and np.all(np.asarray(ce) < 1e-3)
    uniform = jnp.zeros((4, C))
    loss_u, ce_u = loss_fn(uniform, x0, x_next, k, cfg)
    np.testing.assert_allclose(ce_u, np.log(C), rtol=1e-5)
    assert float(loss_u[1]) > 0.01 and float(loss_u[2]) > 1.0


def test_wrapped_normal_sigma_and_circular_variance():
    cfg = wrapped_normal.WrappedNormalConfig()
    np.testing.assert_allclose(wrapped_normal.sigma(1.0, 8, cfg), 5.0 / 2, rtol=1e-6)
    np.testing.assert_allclose(wrapped_normal.sigma(0.0, 1, cfg), 0.01, rtol=1e-6)
    x0 = jnp.full((100_000, 3), 0.3)
    for s in (0.05, 0.2, 0.4):
        xt, _ = wrapped_normal.forward_sample(jax.random.key(3), x0, jnp.full((100_000,), s))
        assert float(xt.min()) >= 0 and float(xt.max()) < 1
        # E cos(2 pi (x_t - x_0)) = exp(-2 pi^2 sigma^2) for a wrapped normal.
        m = float(jnp.mean(jnp.cos(2 * jnp.pi * (xt - x0))))
        np.testing.assert_allclose(m, np.exp(-2 * np.pi**2 * s**2), atol=6e-3)


@pytest.mark.parametrize("s", [0.03, 0.15, 0.4])
def test_wrapped_normal_score_matches_finite_differences(s):
    d = jnp.asarray(np.random.default_rng(0).uniform(-0.99, 0.99, (16, 3)), jnp.float32)
    x64 = np.asarray(d, np.float64)
    h = 1e-4

    def logp(x):  # numpy reference with 20 images per direction
        ks = np.arange(-20, 21)
        terms = -((x[..., None] + ks) ** 2) / (2 * s**2)
        mx = terms.max(-1, keepdims=True)
        return (mx[..., 0] + np.log(np.exp(terms - mx).sum(-1))).sum(-1)

    fd = np.stack(
        [(logp(x64 + h * np.eye(3)[i]) - logp(x64 - h * np.eye(3)[i])) / (2 * h) for i in range(3)],
        -1,
    )
    score = jax.jit(wrapped_normal.wrapped_normal_score, static_argnums=2)(d, s, 3)
    np.testing.assert_allclose(score, fd, rtol=2e-3, atol=2e-3 / s)
    # The log density is normalised on the torus and periodic.
    grid = (np.arange(64) + 0.5) / 64
    xx = jnp.asarray(np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3))
    mass = float(jnp.mean(jnp.exp(wrapped_normal.wrapped_normal_log_density(xx, s, 6))))
    np.testing.assert_allclose(mass, 1.0, rtol=1e-3)


def test_wrapped_normal_loss_target_is_minus_eps_for_small_sigma():
    cfg = wrapped_normal.WrappedNormalConfig()
    x0 = jnp.asarray(np.random.default_rng(1).uniform(0, 1, (50, 3)), jnp.float32)
    sig = jnp.full((50,), 0.02)
    xt, eps = jax.jit(wrapped_normal.forward_sample)(jax.random.key(0), x0, sig)
    loss = jax.jit(wrapped_normal.score_matching_loss, static_argnums=4)(-eps, xt, x0, sig, cfg)
    assert float(loss.max()) < 1e-4


def test_lattice_time_power_warps_the_clock():
    base, warped = lattice.LatticeConfig(), lattice.LatticeConfig(time_power=3.0)
    t = jnp.linspace(0.0, 1.0, 11)
    np.testing.assert_array_equal(lattice.alpha(t, dataclasses.replace(base, time_power=1.0)),
                                  lattice.alpha(t, base))  # fmt: skip
    np.testing.assert_allclose(lattice.alpha(t, warped), lattice.alpha(t**3, base), rtol=1e-6)
    assert float(lattice.alpha(0.5, warped)) > 0.9 > float(lattice.alpha(0.5, base))
    with pytest.raises(ValueError, match="time_power"):
        lattice.LatticeConfig(time_power=0.0)


def test_lattice_alpha_and_marginal_monte_carlo():
    cfg = lattice.LatticeConfig()
    np.testing.assert_allclose(float(lattice.alpha(1.0, cfg)), 6.57e-3, rtol=5e-3)
    np.testing.assert_allclose(float(lattice.alpha(0.0, cfg)), 1.0)
    g = 40_000
    x0 = jnp.tile(jnp.array([[4.0, 0.3, 0.0], [0.3, 5.0, 0.1], [0.0, 0.1, 6.0]]), (g, 1, 1))
    n = jnp.full((g,), 8)
    t = jnp.full((g,), 0.4)
    lt, mean, std = jax.jit(lattice.forward_sample, static_argnums=4)(
        jax.random.key(1), x0, t, n, cfg
    )
    a = float(lattice.alpha(0.4, cfg))
    mu = (8 / lattice.AVERAGE_DENSITY) ** (1 / 3)
    ref_mean = a * np.asarray(x0[0]) + (1 - a) * mu * np.eye(3)
    ref_std = np.sqrt((1 - a**2) * 0.25 * 8 ** (2 / 3))
    np.testing.assert_allclose(mean[0], ref_mean, rtol=1e-5)
    np.testing.assert_allclose(std[0], ref_std, rtol=1e-5)
    np.testing.assert_allclose(np.mean(np.asarray(lt), 0), ref_mean, atol=4 * ref_std / np.sqrt(g))
    np.testing.assert_allclose(np.std(np.asarray(lt), 0), ref_std, rtol=0.02)
    np.testing.assert_allclose(lt, np.swapaxes(np.asarray(lt), -1, -2), atol=1e-5)
    prior = jax.jit(lattice.prior_sample, static_argnums=2)(
        jax.random.key(2), jnp.full((g,), 1), cfg
    )
    mu1 = (1 / lattice.AVERAGE_DENSITY) ** (1 / 3)
    np.testing.assert_allclose(np.mean(np.asarray(prior), 0), mu1 * np.eye(3), atol=0.02)
    np.testing.assert_allclose(np.std(np.asarray(prior), 0), 0.5, rtol=0.02)


def test_polar_symmetrize_is_rotation_invariant_and_keeps_the_metric():
    rng = np.random.default_rng(2)
    lat = rng.normal(size=(5, 3, 3)) + 4 * np.eye(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    sym = np.asarray(lattice.polar_symmetrize(jnp.asarray(lat, jnp.float32)))
    sym_rot = np.asarray(lattice.polar_symmetrize(jnp.asarray(lat @ q.T, jnp.float32)))
    np.testing.assert_allclose(sym, np.swapaxes(sym, -1, -2), atol=1e-4)
    np.testing.assert_allclose(sym, sym_rot, atol=1e-4)
    np.testing.assert_allclose(sym @ sym, lat @ np.swapaxes(lat, -1, -2), rtol=1e-4, atol=1e-3)
    assert np.all(np.linalg.eigvalsh(sym) > 0)


def test_corrupt_leaves_padding_untouched():
    from jaxdos.crystal.diffusion.num_atoms import prior_batch

    b = prior_batch(np.array([2, 3]), atom_budget=8)
    b = b._replace(
        atomic_numbers=np.where(b.node_mask, 8, 0).astype(np.int32),
        frac_coords=np.full((8, 3), 0.25, np.float32),
    )
    c = corrupt(
        jax.random.key(0), jax.tree.map(jnp.asarray, b), jnp.array([1.0, 1.0]), DiffusionConfig()
    )
    np.testing.assert_array_equal(c.batch.atomic_numbers[5:], 0)
    np.testing.assert_array_equal(c.batch.frac_coords[5:], 0.25)
    assert np.all(np.asarray(c.batch.atomic_numbers[:5]) == 101)  # t = 1: all masked
    np.testing.assert_array_equal(c.k[:5], 999)


def test_sample_time_mid_fraction():
    """mid_fraction = 0 is MatterGen's U(t_min, 1) draw unchanged; f > 0 puts a share f of the
    times in U(mid_range) on top of the uniform share, and mid_fraction = 1 only there."""
    key, n = jax.random.key(3), 200_000
    base = DiffusionConfig()
    np.testing.assert_array_equal(
        sample_time(key, n, base), jax.random.uniform(key, (n,), minval=base.t_min, maxval=1.0)
    )
    f, (lo, hi) = 0.5, base.mid_range
    t = np.asarray(sample_time(key, n, DiffusionConfig(mid_fraction=f)))
    inside = np.mean((t >= lo) & (t < hi))
    want = f + (1 - f) * (hi - lo) / (1 - base.t_min)
    assert abs(inside - want) < 4 * np.sqrt(want * (1 - want) / n)
    assert t.min() >= base.t_min and t.max() <= 1.0
    only = np.asarray(sample_time(key, 1000, DiffusionConfig(mid_fraction=1.0)))
    assert only.min() >= lo and only.max() <= hi
    with pytest.raises(ValueError, match="mid_fraction"):
        DiffusionConfig(mid_fraction=1.5)
    with pytest.raises(ValueError, match="mid_range"):
        DiffusionConfig(mid_range=(0.6, 0.5))
