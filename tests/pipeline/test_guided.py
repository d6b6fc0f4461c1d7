"""CDOSGen guided by a DOS predictor: relaxed types reduce to the lookup, guidance lowers the
predictor's distance to the target, bad targets are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.crystal.batch import ScoreOutput
from jaxdos.crystal.diffusion.guidance import DenoisedEstimate
from jaxdos.crystal.diffusion.num_atoms import prior_batch
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.generate import generate
from jaxdos.neighbors import GraphConfig
from jaxdos.pipeline.guided import PredictorDosLoss, predictor_guidance
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.config import CompositionConfig, EquivariantConfig
from jaxdos.predictor.model import forward, init_params
from jaxdos.structures import MAX_Z
from tests.crystal.test_crystal_sampler import toy_params, toy_score

G = 8


def test_relaxed_one_hot_types_equal_the_lookup():
    cfg = EquivariantConfig.tiny()
    params = init_params(jax.random.key(0), cfg)
    b = prior_batch(np.array([3, 2]))
    rng = np.random.default_rng(0)
    n = b.num_nodes
    z = np.where(b.node_mask, rng.integers(1, 60, n), 0).astype(np.int32)
    b = jax.tree.map(jnp.asarray, b._replace(
        atomic_numbers=z,
        frac_coords=rng.uniform(0, 1, (n, 3)).astype(np.float32),
        lattice=np.tile(3.5 * np.eye(3, dtype=np.float32), (b.num_graphs, 1, 1)),
    ))  # fmt: skip
    ref, _, _ = jax.jit(lambda p, x: forward(cfg, p, x))(params, b)  # eager e3nn: ~40 s
    one_hot = jax.nn.one_hot(z, MAX_Z + 1)
    soft, _, _ = jax.jit(lambda p, x, s: forward(cfg, p, x, s))(params, b, one_hot)
    np.testing.assert_allclose(np.asarray(soft), np.asarray(ref), rtol=1e-5, atol=1e-6)


def _tight_guide_loss():
    """A predictor DOS loss whose neighbour budgets (16 edges / in-degree per atom) are too small
    for 3.5 A cells at its 4.5 A cutoff (~27 neighbours per atom)."""
    tight = GraphConfig(cutoff=4.5, max_neighbors=64, edges_per_atom=16, max_in_degree=16)
    return PredictorDosLoss(EquivariantConfig.tiny(graph=tight))


def _estimate():
    """Two 3.5 A cubes (3 and 2 N atoms) in a padded batch, and a zero target DOS."""
    b = prior_batch(np.array([3, 2]))
    rng = np.random.default_rng(0)
    frac = jnp.asarray(rng.uniform(0, 1, (b.num_nodes, 3)), jnp.float32)
    lattice = jnp.tile(3.5 * jnp.eye(3), (b.num_graphs, 1, 1))
    probs = jax.nn.one_hot(jnp.full(b.num_nodes, 7), 101)
    est = DenoisedEstimate(probs, frac, lattice, jax.tree.map(jnp.asarray, b))
    return est, jnp.zeros((b.num_graphs, 256))


def test_equivariant_guide_gradient_is_finite_and_matches_finite_differences():
    """The padding edges of the predictor's graph (zero vectors) once gave NaN gradients."""
    loss = PredictorDosLoss(EquivariantConfig.tiny())
    params = init_params(jax.random.key(0), loss.config)
    est, target = _estimate()

    def total(frac, lattice):
        e = est._replace(frac=frac, lattice=lattice)
        return jnp.sum(jnp.where(e.batch.graph_mask, loss(params, target, e)[0], 0.0))

    f = jax.jit(total)
    g_frac, g_lat = jax.jit(jax.grad(total, argnums=(0, 1)))(est.frac, est.lattice)
    assert np.all(np.isfinite(g_frac)) and np.all(np.isfinite(g_lat))
    h = 1e-2  # float32: a central difference on one lattice entry of each crystal
    for g in range(2):
        step = jnp.zeros_like(est.lattice).at[g, 0, 0].set(h)
        fd = (f(est.frac, est.lattice + step) - f(est.frac, est.lattice - step)) / (2 * h)
        np.testing.assert_allclose(float(g_lat[g, 0, 0]), float(fd), rtol=0.05, atol=1e-4)


def test_a_guide_loss_that_overflows_grows_its_predictor_graph():
    """Issue 16: the sampler sees only the guide's overflow flag, so `generate_with_model` asks
    the loss for `grown()` budgets (doubled) until its graph fits."""
    loss = _tight_guide_loss()
    params = init_params(jax.random.key(0), loss.config)
    est, target = _estimate()
    overflows = []
    for _ in range(3):
        overflows.append(bool(jax.jit(lambda p, e, f=loss: f(p, target, e)[1])(params, est)))
        grown = loss.grown()
        assert grown.config.graph.edges_per_atom == 2 * loss.config.graph.edges_per_atom
        assert grown.config.graph.max_in_degree == 2 * loss.config.graph.max_in_degree
        loss = grown
    assert overflows[0] and not overflows[-1]


def flat_type_score(params, batch, t, cond, key):
    """The toy geometry score with uninformative type logits: types are left to the guidance."""
    out = toy_score(params, batch, t, cond, key)
    return ScoreOutput(out.frac, out.lattice, jnp.zeros_like(out.type_logits))


def sharp_predictor() -> DOSPredictorModel:
    """A random composition predictor whose DOS depends strongly on composition (weights x10)."""
    cfg = CompositionConfig.tiny()
    params = jax.tree.map(lambda x: 10.0 * x, init_params(jax.random.key(1), cfg))
    return DOSPredictorModel(params=params, config=cfg)


def toy_generate(guidance, guide_params, guide_targets):
    """G 4-atom toy crystals (flat type logits) in 8 steps under `guidance`."""
    return generate(
        flat_type_score,
        toy_params(G),
        key=jax.random.key(2),
        num_atoms=np.full(G, 4),
        config=CrystalSamplingConfig(steps=8, guidance=guidance),
        guide_params=guide_params,
        guide_targets=guide_targets,
    ).batch


def test_predictor_guidance_moves_crystals_towards_the_target_dos():
    model = sharp_predictor()
    cfg = model.config
    # The target: the predictor's own DOS of pure oxygen crystals.
    oxygen = prior_batch(np.full(G, 4))
    oxygen = jax.tree.map(jnp.asarray, oxygen._replace(
        atomic_numbers=np.where(oxygen.node_mask, 8, 0).astype(np.int32)
    ))  # fmt: skip
    target = np.asarray(forward(cfg, model.params, oxygen)[0])[:G]

    def run(strength):
        gen = toy_generate(*predictor_guidance(model, target, strength=strength, t_max=1.0))
        dos = np.asarray(forward(cfg, model.params, jax.tree.map(jnp.asarray, gen))[0])[:G]
        return np.mean((dos - target) ** 2, axis=-1), np.mean(
            gen.atomic_numbers[gen.node_mask] == 8
        )

    d0, o0 = run(0.0)
    d1, o1 = run(50.0)
    assert d1.mean() < 0.5 * d0.mean(), (d0, d1)
    assert o1 > o0 + 0.2, (o0, o1)


def test_bad_target_dos_is_refused():
    cfg = CompositionConfig.tiny()
    model = DOSPredictorModel(params=init_params(jax.random.key(1), cfg), config=cfg)
    with pytest.raises(ValueError, match="target_dos"):
        predictor_guidance(model, np.zeros((2, 10)), strength=1.0)
    with pytest.raises(ValueError, match="target_dos"):
        predictor_guidance(model, -np.ones((2, 256)), strength=1.0)
    with pytest.raises(ValueError, match="target_dos"):
        predictor_guidance(model, np.full((2, 256), np.nan), strength=1.0)


def _tiny_predictor(tmp_path):
    path = tmp_path / "guide"
    sharp_predictor().save(path)
    return path


def test_guide_predictor_is_checked_up_front(tmp_path):
    from jaxdos.pipeline.crystals import generate_crystals
    from jaxdos.pipeline.screening import CrystalSettings
    from jaxdos.sampler.checkpoint import DEFAULT_DIR as SAMPLER_DIR

    with pytest.raises(ValueError, match="^guide_predictor: "):
        CrystalSettings(guide_predictor=str(SAMPLER_DIR)).check_crystal_model()
    with pytest.raises(ValueError, match="^guide_strength: "):
        CrystalSettings(guide_strength=-1.0)
    guide = _tiny_predictor(tmp_path)
    with pytest.raises(ValueError, match="guide_predictor: needs conditioning DOS"):
        generate_crystals(num_samples=2, guide_predictor=guide)
    # Property guidance needs no DOS, but a predictor and good windows, checked before compute.
    with pytest.raises(ValueError, match="^guide_windows: needs guide_predictor"):
        generate_crystals(num_samples=2, guide_windows={"band_gap": (1.0, 2.0)})
    with pytest.raises(ValueError, match="^guide_tcm: needs guide_predictor"):
        generate_crystals(num_samples=2, guide_tcm=1)
    with pytest.raises(ValueError, match="^guide_tcm: expected TCM type 1 or 2"):
        generate_crystals(num_samples=2, guide_predictor=guide, guide_tcm=3)
    with pytest.raises(ValueError, match=r"^guide_windows\['band_gap'\]: expected finite"):
        generate_crystals(num_samples=2, guide_predictor=guide, guide_windows={"band_gap": (2, 1)})
    with pytest.raises(ValueError, match="^guide_band_gap: needs guide_predictor"):
        CrystalSettings(guide_band_gap=(1.0, 2.0))
    with pytest.raises(ValueError, match="^guide_dos_at_fermi: expected finite lo <= hi"):
        CrystalSettings(guide_predictor="p", guide_dos_at_fermi=(0.0, float("inf")))
    assert CrystalSettings(guide_predictor="p", guide_band_gap=[1, 2]).guide_band_gap == (1.0, 2.0)


@pytest.mark.slow  # three CDOSGen compiles (~2 min on 2 busy cores)
def test_generate_crystals_with_predictor_guidance(tmp_path):
    from jaxdos.data.world import load_world
    from jaxdos.pipeline.crystals import generate_crystals

    guide = _tiny_predictor(tmp_path)
    dos = load_world("test").dos[:2]
    run = dict(crystals_per_dos=2, steps=4, seed=3, batch_size=4)
    plain, src = generate_crystals(dos, **run)
    zero, src0 = generate_crystals(dos, guide_predictor=guide, guide_strength=0.0, **run)
    pulled, _ = generate_crystals(dos, guide_predictor=guide, guide_strength=1e3, **run)
    for a, b in zip(plain, zero, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(src, src0)
    assert not np.array_equal(pulled.frac_coords, plain.frac_coords)


def test_property_window_loss_is_zero_inside_and_its_gradient_leads_inside():
    from jaxdos.crystal.diffusion.guidance import DenoisedEstimate
    from jaxdos.kernels.properties import all_properties
    from jaxdos.pipeline.guided import predictor_property_guidance

    model = sharp_predictor()
    cfg, params = model.config, model.params
    b = jax.tree.map(jnp.asarray, prior_batch(np.full(2, 4)))
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(2), (b.num_nodes, 101)))
    est = DenoisedEstimate(probs, b.frac_coords, b.lattice, b)
    dos = forward(cfg, params, b, jnp.concatenate([jnp.zeros((b.num_nodes, 1)), probs[:, :100]], 1))
    p = float(all_properties(dos[0])["dos_at_fermi"][0])

    inside, gp, gt = predictor_property_guidance(
        model, {"dos_at_fermi": (p - 1.0, p + 1.0)}, 2, strength=1.0
    )
    assert float(inside.loss(gp, gt, est)[0][0]) == 0.0
    above, gp, gt = predictor_property_guidance(
        model, {"dos_at_fermi": (p + 0.5, p + 1.0)}, 2, strength=1.0
    )
    loss0 = above.loss(gp, gt, est)[0]
    assert float(loss0[0]) == pytest.approx((0.5 / 0.5) ** 2, rel=1e-4)
    grad = jax.grad(lambda q: jnp.sum(above.loss(gp, gt, est._replace(type_probs=q))[0]))(probs)
    stepped = est._replace(type_probs=jnp.clip(probs - 1e-3 * grad, 0.0, None))
    assert float(jnp.sum(above.loss(gp, gt, stepped)[0])) < float(jnp.sum(loss0))
    with pytest.raises(ValueError, match="windows"):
        predictor_property_guidance(model, {"gap": (0.0, 1.0)}, 2, strength=1.0)
    with pytest.raises(ValueError, match="windows"):
        predictor_property_guidance(model, {"band_gap": (2.0, 1.0)}, 2, strength=1.0)


@pytest.mark.slow  # two toy-sampler compiles
def test_property_guidance_moves_dos_at_fermi_into_the_window():
    from jaxdos.kernels.properties import all_properties
    from jaxdos.pipeline.guided import predictor_property_guidance

    model = sharp_predictor()

    def run(guidance, gp, gt):
        gen = toy_generate(guidance, gp, gt)
        dos = forward(model.config, model.params, jax.tree.map(jnp.asarray, gen))[0][:G]
        return np.asarray(all_properties(dos)["dos_at_fermi"])

    plain = run(*predictor_property_guidance(model, {"dos_at_fermi": (0, 1e3)}, G, strength=0.0))
    lo = float(plain.max()) + 0.2
    pulled = run(
        *predictor_property_guidance(
            model, {"dos_at_fermi": (lo, lo + 1.0)}, G, strength=50.0, t_max=1.0
        )
    )
    assert pulled.mean() > plain.mean() + 0.1, (plain, pulled)


def test_tcm_guidance_loss_is_the_surrogate_of_the_predicted_dos_and_differentiable():
    from jaxdos.crystal.diffusion.guidance import DenoisedEstimate
    from jaxdos.kernels.filters import tcm_surrogate
    from jaxdos.pipeline.guided import predictor_property_guidance

    model = sharp_predictor()
    cfg, params = model.config, model.params
    b = jax.tree.map(jnp.asarray, prior_batch(np.full(2, 4)))
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(3), (b.num_nodes, 101)))
    est = DenoisedEstimate(probs, b.frac_coords, b.lattice, b)
    guidance, gp, gt = predictor_property_guidance(model, {}, 2, tcm=2, strength=1.0)
    assert gt.shape == (2, 0, 2)  # no windows: the TCM term alone

    @jax.jit
    def value_and_grad(q):
        def loss(q):
            return jnp.sum(guidance.loss(gp, gt, est._replace(type_probs=q))[0])

        types = jnp.concatenate([jnp.zeros((b.num_nodes, 1)), q[:, :100]], 1)
        surrogate = jnp.sum(tcm_surrogate(forward(cfg, params, b, types)[0][:2], 2))
        return (*jax.value_and_grad(loss)(q), surrogate)

    value, grad, surrogate = value_and_grad(probs)
    np.testing.assert_allclose(float(value), float(surrogate), rtol=1e-5)
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).max()) > 0
    v = jax.random.normal(jax.random.key(4), probs.shape) * 1e-3
    fd = (value_and_grad(probs + v)[0] - value_and_grad(probs - v)[0]) / 2
    assert float(jnp.vdot(grad, v)) == pytest.approx(float(fd), rel=0.01)
    with pytest.raises(ValueError, match="tcm"):
        predictor_property_guidance(model, {}, 2, tcm=3, strength=1.0)
    with pytest.raises(ValueError, match="windows"):
        predictor_property_guidance(model, {}, 2, strength=1.0)


@pytest.mark.slow  # three compiles of a 1-block CDOSGen (~3 min on 2 busy cores)
def test_generate_crystals_with_property_guidance_needs_no_conditioning_dos(tmp_path):
    from untrained import untrained_model

    from jaxdos.pipeline.crystals import generate_crystals

    guide = _tiny_predictor(tmp_path)
    model = untrained_model(8, np.array([2, 3]))
    run = dict(num_samples=4, steps=4, seed=3, batch_size=4, model=model)
    targets = dict(guide_windows={"band_gap": (1.8, 2.2)}, guide_tcm=1)
    plain, src = generate_crystals(**run)
    zero, src0 = generate_crystals(guide_predictor=guide, guide_strength=0.0, **targets, **run)
    pulled, _ = generate_crystals(guide_predictor=guide, guide_strength=1e3, **targets, **run)
    for a, b in zip(plain, zero, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(src, src0)
    assert np.all(src == -1)
    # The composition guide reads types only: its gradient moves the atom types.
    assert not np.array_equal(pulled.atomic_numbers, plain.atomic_numbers)


@pytest.mark.slow  # two CDOSGen compiles and three of the guide (~3 min on 2 busy cores)
def test_generate_crystals_grows_an_overflowing_guide(tmp_path):
    """Issue 16: a guide predictor with too-small neighbour budgets used to exhaust the retries
    (only CDOSGen's budgets grew) and raise; now its own budgets grow and the run completes."""
    from jaxdos.data.world import load_world
    from jaxdos.pipeline.crystals import generate_crystals

    loss = _tight_guide_loss()
    params = init_params(jax.random.key(0), loss.config)
    DOSPredictorModel(params=params, config=loss.config).save(tmp_path / "tight")
    dos = load_world("test").dos[:2]
    crystals, _ = generate_crystals(
        dos, crystals_per_dos=2, steps=4, seed=3, batch_size=4,
        guide_predictor=tmp_path / "tight", guide_strength=1.0,
    )  # fmt: skip
    assert np.all(np.isfinite(crystals.frac_coords))
