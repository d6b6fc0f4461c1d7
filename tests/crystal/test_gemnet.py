"""GemNet-T denoiser: invariances (docs/spec/mattergen.md §8 item 11), adapter zero-init, parameter
layout, input checks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict
from periodic_reference import pad_batch, random_crystal

from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.conditioning import ScalarCondition
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser, apply_checked, check_inputs
from jaxdos.crystal.gemnet.config import ScalarProperty
from jaxdos.crystal.graph import GraphConfig

N_SLOTS, G_SLOTS, DOS = 16, 3, 16
# No kNN truncation (max_neighbors above every candidate count): the edge set is then exactly
# all pairs within the cutoff, so the invariances hold exactly rather than up to tie-breaking.
GRAPH = GraphConfig(
    cutoff=5.0,
    max_neighbors=100_000,
    max_atoms_per_crystal=8,
    candidates_per_atom=1024,
    edges_per_atom=128,
    max_in_degree=128,
)
# One interaction block and one residual layer per stack keep the compile short on 2 CPU cores;
# the 4-block MatterGen layout is covered by the (slow) mattergen_base forward.
BASE = GemNetConfig.tiny(
    num_blocks=1,
    num_atom=1,
    emb_size_atom=32,
    emb_size_edge=32,
    latent_dim=32,
    num_radial=16,
    graph=GRAPH,
)
COND = dataclasses.replace(
    BASE,
    dos_dim=DOS,
    dos_emb_size=32,
    properties=(ScalarProperty(name="dft_band_gap", mean=1.0, std=2.0),),
)


def _crystals(seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for n in (3, 4):
        f, lat = random_crystal(rng, n, scale=4.2, skew=0.15)
        out.append((f, lat, rng.integers(1, 84, n)))
    return out


def _batch(crystals):
    return pad_batch(
        [c[0] for c in crystals],
        [c[1] for c in crystals],
        [c[2] for c in crystals],
        N_SLOTS,
        G_SLOTS,
    )


T = jnp.array([0.3, 0.8, 1.0])


@pytest.fixture(scope="module")
def setup():
    batch = _batch(_crystals())
    model = GemNetTDenoiser(COND)
    params = {"params": jax.jit(model.init)(jax.random.key(0), batch, T)["params"]}
    rng = np.random.default_rng(1)
    cond = DosCondition(
        jnp.asarray(rng.uniform(0, 3, (G_SLOTS, DOS)), jnp.float32), jnp.array([True, False, True])
    )
    props = {
        "dft_band_gap": ScalarCondition(jnp.array([1.5, 0.0, 3.0]), jnp.array([True, False, True]))
    }
    fn = jax.jit(lambda p, b, c, pr: model.apply(p, b, T, c, pr, mutable=["diagnostics"]))

    def run(p, b, c=cond, pr=props):
        out, diag = fn(p, b, c, pr)
        assert not bool(diag["diagnostics"]["graph_overflow"][0])
        return jax.device_get(out)

    # Perturb the zero mix-ins so the adapters actually act in the invariance tests.
    flat = flatten_dict(params["params"], sep="/")
    key = jax.random.key(7)
    for k in sorted(flat):
        if "cond_mixin" in k:
            key, sub = jax.random.split(key)
            flat[k] = 0.1 * jax.random.normal(sub, flat[k].shape)
    active = {"params": unflatten_dict(flat, sep="/")}
    return dict(batch=batch, params=params, active=active, run=run, cond=cond, props=props)


def _cart(out, batch):
    return np.einsum("ni,nij->nj", out.frac, np.asarray(batch.lattice)[np.asarray(batch.batch)])


def test_rotation(setup):
    b, run, p = setup["batch"], setup["run"], setup["active"]
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    r = q * np.sign(np.linalg.det(q))  # proper rotation
    b2 = b._replace(lattice=jnp.asarray(np.asarray(b.lattice) @ r.T, jnp.float32))
    o1, o2 = run(p, b), run(p, b2)
    m = np.asarray(b.node_mask)
    np.testing.assert_allclose(o2.type_logits[m], o1.type_logits[m], atol=2e-4, rtol=1e-4)
    # Cartesian frame rotated: lattice score -> R S R^T, Cartesian coordinate score -> R F,
    # so the fractional score is invariant.
    np.testing.assert_allclose(o2.lattice[:2], r @ o1.lattice[:2] @ r.T, atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(_cart(o2, b2)[m], _cart(o1, b)[m] @ r.T, atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(o2.frac[m], o1.frac[m], atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(o1.lattice, np.swapaxes(o1.lattice, 1, 2), atol=1e-7)
    assert np.abs(o1.lattice[:2]).max() > 1e-6 and np.abs(o1.frac[m]).max() > 1e-6
    np.testing.assert_array_equal(o1.lattice[2], 0.0)  # padding graph
    np.testing.assert_array_equal(o1.frac[~m], 0.0)


def test_permutation_and_translation(setup):
    b, run, p = setup["batch"], setup["run"], setup["active"]
    cr = _crystals()
    perm = [np.array([2, 0, 1]), np.array([1, 3, 0, 2])]
    shift = [np.array([0.31, -0.2, 0.77]), np.array([0.5, 0.5, 0.1])]
    cr2 = [
        ((f[pi] + s) % 1.0, lat, z[pi]) for (f, lat, z), pi, s in zip(cr, perm, shift, strict=True)
    ]
    o1, o2 = run(p, b), run(p, _batch(cr2))
    idx = np.concatenate([perm[0], 3 + perm[1]])
    for a, c in ((o2.frac[:7], o1.frac[idx]), (o2.type_logits[:7], o1.type_logits[idx])):
        np.testing.assert_allclose(a, c, atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(o2.lattice, o1.lattice, atol=2e-6, rtol=1e-3)
    # Integer image shifts of single atoms (unwrapped fractional coordinates) change nothing.
    fr = np.asarray(b.frac_coords).copy()
    fr[:7] += np.random.default_rng(4).integers(-2, 3, (7, 3))
    o3 = run(p, b._replace(frac_coords=jnp.asarray(fr)))
    np.testing.assert_allclose(o3.frac, o1.frac, atol=2e-5, rtol=1e-3)
    np.testing.assert_allclose(o3.lattice, o1.lattice, atol=2e-6, rtol=1e-3)


def test_supercell_consistency(setup):
    run, p = setup["run"], setup["active"]
    cr = _crystals()
    sup = []
    for f, lat, z in cr:  # 2x1x1 supercells: 6 and 8 atoms in the same slot budget
        f2 = np.concatenate([f % 1.0, f % 1.0 + [1, 0, 0]]) / [2, 1, 1]
        sup.append((f2, np.diag([2.0, 1, 1]) @ lat, np.concatenate([z, z])))
    b1, b2 = _batch(cr), _batch(sup)
    cond = setup["cond"]
    o1, o2 = run(p, b1, cond), run(p, b2, cond)
    # Same local environments: per-atom Cartesian score and type logits repeat in both copies;
    # the lattice score (edge scores averaged over the crystal's edges) is unchanged.
    c1, c2 = _cart(o1, b1), _cart(o2, b2)
    for g0, g1, n in ((0, 0, 3), (3, 6, 4)):
        for rep in range(2):
            sl = slice(g1 + rep * n, g1 + (rep + 1) * n)
            np.testing.assert_allclose(c2[sl], c1[g0 : g0 + n], atol=3e-5, rtol=2e-3)
            np.testing.assert_allclose(
                o2.type_logits[sl], o1.type_logits[g0 : g0 + n], atol=2e-4, rtol=1e-3
            )
    np.testing.assert_allclose(o2.lattice, o1.lattice, atol=3e-6, rtol=2e-3)


def test_fresh_adapters_equal_base_model_exactly(setup):
    b, run, params = setup["batch"], setup["run"], setup["params"]
    flat = flatten_dict(params["params"], sep="/")
    base = {k: v for k, v in flat.items() if "cond_" not in k and "property_embeddings" not in k}
    assert len(base) < len(flat)
    base_params = {"params": unflatten_dict(base, sep="/")}
    uncond = jax.device_get(jax.jit(GemNetTDenoiser(BASE).apply)(base_params, b, T))
    cond_out = run(params, b)  # crystals 0 and 2 conditional, fresh (zero) mix-ins
    for a, c in zip(uncond, cond_out, strict=True):
        np.testing.assert_array_equal(a, c)
    # With non-zero mix-ins only the m = 1 crystals move.
    act = run(setup["active"], b)
    assert not np.allclose(act.frac[:3], uncond.frac[:3], atol=1e-6)
    np.testing.assert_array_equal(act.frac[3:7], uncond.frac[3:7])
    np.testing.assert_array_equal(act.lattice[1], uncond.lattice[1])


def test_param_layout(setup):
    flat = flatten_dict(setup["params"]["params"], sep="/")
    assert flat["fc_atom/kernel"].shape == (32, 101)
    assert flat["gemnet/atom_emb/embeddings/embedding"].shape == (101, 32)
    assert flat["gemnet/int_blocks_0/trip_interaction/mlp_cbf/weight"].shape == (16, 8, 16)
    assert "gemnet/out_blocks_1/out_forces/linear/kernel" in flat
    assert "gemnet/lattice_out_blocks_1/mlp_1/linear/kernel" in flat
    assert flat["gemnet/mlp_cbf3/weight"].shape == (7, 16, 8)
    for name in ("dos", "dft_band_gap"):
        np.testing.assert_array_equal(flat[f"gemnet/cond_mixin_layers_{name}_0/kernel"], 0.0)
        assert flat[f"gemnet/cond_adapt_layers_{name}_0_0/kernel"].shape == (64, 32)


def test_mattergen_base_parameter_count():
    """35,343,461 = MatterGen's 44,562,043 minus the dead energy heads and 22 ScalingFactors."""
    b = _batch(_crystals())
    for cfg, want in (
        (GemNetConfig.mattergen_base(), 35_343_461),
        (
            GemNetConfig.mattergen_base(properties=(ScalarProperty(name="x"),)),
            35_343_461 + 4_198_400,
        ),
    ):
        shapes = jax.eval_shape(GemNetTDenoiser(cfg).init, jax.random.key(0), b, T)["params"]
        assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(shapes)) == want


def test_bad_inputs_raise():
    b = _batch(_crystals())
    cond = DosCondition(jnp.ones((G_SLOTS, DOS)), jnp.ones(G_SLOTS, bool))
    check_inputs(COND, b, T, cond)
    with pytest.raises(ValueError, match="cond.dos"):
        check_inputs(COND, b, T, cond._replace(dos=cond.dos.at[0, 3].set(jnp.nan)))
    with pytest.raises(ValueError, match="cond.dos"):
        check_inputs(COND, b, T, cond._replace(dos=jnp.ones((G_SLOTS, DOS + 1))))
    with pytest.raises(ValueError, match="cond"):
        check_inputs(BASE, b, T, cond)
    with pytest.raises(ValueError, match="atomic_numbers"):
        check_inputs(COND, b._replace(atomic_numbers=b.atomic_numbers.at[1].set(102)), T)
    with pytest.raises(ValueError, match="atomic_numbers"):
        check_inputs(COND, b._replace(atomic_numbers=b.atomic_numbers.at[0].set(0)), T)
    with pytest.raises(ValueError, match="num_atoms"):
        check_inputs(COND, b._replace(num_atoms=b.num_atoms.at[0].set(0)), T)
    big = GemNetConfig.tiny(graph=dataclasses.replace(GRAPH, max_atoms_per_crystal=3))
    with pytest.raises(ValueError, match="num_atoms"):
        check_inputs(big, b, T)
    with pytest.raises(ValueError, match="t"):
        check_inputs(COND, b, T[:2])
    bad = {"dft_band_gap": ScalarCondition(jnp.array([jnp.nan, 0, 0]), jnp.ones(3, bool))}
    with pytest.raises(ValueError, match="dft_band_gap"):
        check_inputs(COND, b, T, cond, bad)
    with pytest.raises(ValueError, match="no adapter"):
        check_inputs(COND, b, T, cond, {"hhi_score": bad["dft_band_gap"]})


@pytest.mark.slow
def test_apply_checked_regrows_budgets(setup):
    small = dataclasses.replace(COND, graph=dataclasses.replace(GRAPH, edges_per_atom=8))
    out, used = apply_checked(GemNetTDenoiser(small), setup["params"], setup["batch"], T)
    assert used.config.graph.edges_per_atom > 8
    ref = setup["run"](setup["params"], setup["batch"], None, None)
    np.testing.assert_allclose(out.frac, ref.frac, atol=1e-6)


@pytest.mark.slow
def test_jit_equals_eager(setup):
    b, p = setup["batch"], setup["active"]
    model = GemNetTDenoiser(COND)
    eager = model.apply(p, b, T, setup["cond"], setup["props"])
    jitted = setup["run"](p, b)
    for a, c in zip(eager, jitted, strict=True):
        np.testing.assert_allclose(np.asarray(a), c, atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_mattergen_base_forward():
    cr = _crystals()[:1]
    b = pad_batch([cr[0][0]], [cr[0][1]], [cr[0][2]], 4, 1)
    model = GemNetTDenoiser(GemNetConfig.mattergen_base().conditional())
    t = jnp.array([0.5])
    params = {"params": jax.jit(model.init)(jax.random.key(0), b, t)["params"]}
    cond = DosCondition(jnp.ones((1, 256)), jnp.array([True]))
    out, used = apply_checked(model, params, b, t, cond)
    assert out.type_logits.shape == (4, 101) and np.all(np.isfinite(out.frac))
    np.testing.assert_allclose(out.lattice[0], out.lattice[0].T, atol=1e-7)


def test_bases_match_closed_forms():
    from scipy.special import eval_legendre

    from jaxdos.crystal.gemnet.basis import (
        noise_level_encoding,
        polynomial_envelope,
        radial_basis,
        spherical_basis,
    )

    x = np.linspace(0, 1.2, 13)
    env = np.where(x < 1, 1 - 21 * x**5 + 35 * x**6 - 15 * x**7, 0)
    np.testing.assert_allclose(polynomial_envelope(jnp.asarray(x)), env, atol=1e-5)
    d = np.array([0.5, 3.0, 6.9, 7.5])
    mu = np.arange(128) / 127
    ref = env_at = np.where(
        d / 7 < 1, 1 - 21 * (d / 7) ** 5 + 35 * (d / 7) ** 6 - 15 * (d / 7) ** 7, 0
    )
    ref = env_at[:, None] * np.exp(-0.5 * 127**2 * (d[:, None] / 7 - mu) ** 2)
    np.testing.assert_allclose(radial_basis(jnp.asarray(d), 7.0, 128), ref, atol=1e-5)
    c = np.linspace(-1, 1, 9)
    ylm = np.stack([np.sqrt((2 * l + 1) / (4 * np.pi)) * eval_legendre(l, c) for l in range(7)], -1)
    np.testing.assert_allclose(spherical_basis(jnp.asarray(c), 7), ylm, atol=1e-5)
    t = np.array([0.0, 0.37, 1.0])
    div = np.exp(-2 * np.arange(4) * np.log(10000.0) / 8)
    enc = np.zeros((3, 8))
    enc[:, 0::2], enc[:, 1::2] = np.sin(t[:, None] * div), np.cos(t[:, None] * div)
    np.testing.assert_allclose(noise_level_encoding(jnp.asarray(t), 8), enc, atol=1e-6)


@pytest.mark.slow  # levers off by default; four eager GemNet calls
def test_time_scale_and_position_preconditioning(setup):
    """time_scale s at t equals the MatterGen encoding at s * t; pos_sigma_ref multiplies only the
    coordinate output by sqrt(1 + (s0 / sigma)^2) with sigma the atom's coordinate noise."""
    from jaxdos.crystal.diffusion import wrapped_normal

    b = setup["batch"]
    p = setup["params"]

    def out(config, t):
        m = GemNetTDenoiser(config)
        return jax.device_get(m.apply(p, b, t, setup["cond"], setup["props"], mutable=["d"])[0])

    base = out(COND, T * 3.0)
    scaled = out(dataclasses.replace(COND, time_scale=3.0), T)
    for f in base._fields:
        np.testing.assert_allclose(getattr(scaled, f), getattr(base, f), rtol=1e-5, atol=1e-6)

    ref = out(COND, T)
    pre = out(dataclasses.replace(COND, pos_sigma_ref=0.1), T)
    sig = wrapped_normal.sigma(
        T[b.batch], b.num_atoms[b.batch], wrapped_normal.WrappedNormalConfig()
    )
    gain = np.sqrt(1 + (0.1 / np.asarray(sig)) ** 2)[:, None]
    np.testing.assert_allclose(pre.frac, ref.frac * gain, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(pre.lattice, ref.lattice)
    np.testing.assert_array_equal(pre.type_logits, ref.type_logits)
    with pytest.raises(ValueError, match="time_scale"):
        dataclasses.replace(COND, time_scale=0.0)
    with pytest.raises(ValueError, match="pos_sigma_ref"):
        dataclasses.replace(COND, pos_sigma_ref=-1.0)


@pytest.mark.slow  # lever off by default; eager GemNet calls
def test_frac_fourier_features_start_at_zero_and_see_only_fractional_offsets(setup):
    """frac_fourier adds a zero-initialised layer: with the base params plus that layer at zero
    the outputs are the base model's bit for bit; with it perturbed they change, and stay
    invariant to integer shifts of any atom's fractional coordinates (a periodic image)."""
    b, p = setup["batch"], setup["params"]
    cfg = dataclasses.replace(COND, frac_fourier=2)
    m = GemNetTDenoiser(cfg)
    fresh = m.init(jax.random.key(3), b, T)["params"]
    assert not np.any(np.asarray(fresh["gemnet"]["frac_fourier_emb"]["kernel"]))
    params = {"params": {**p["params"], "gemnet": {**p["params"]["gemnet"]}}}
    params["params"]["gemnet"]["frac_fourier_emb"] = fresh["gemnet"]["frac_fourier_emb"]

    def out(prm, batch):
        res = m.apply(prm, batch, T, setup["cond"], setup["props"], mutable=["d"])[0]
        return jax.device_get(res)

    ref = jax.device_get(
        GemNetTDenoiser(COND).apply(p, b, T, setup["cond"], setup["props"], mutable=["d"])[0]
    )
    got = out(params, b)
    for f in ref._fields:
        np.testing.assert_array_equal(getattr(got, f), getattr(ref, f))

    emb = params["params"]["gemnet"]["frac_fourier_emb"]
    kernel = 0.3 * jax.random.normal(jax.random.key(4), emb["kernel"].shape)
    params["params"]["gemnet"]["frac_fourier_emb"] = {**emb, "kernel": kernel}
    moved = out(params, b)
    assert np.abs(moved.frac - ref.frac).max() > 1e-4
    shift = np.zeros(b.frac_coords.shape, np.float32)
    shift[1] = [1.0, -1.0, 0.0]  # the same crystal, one atom written in a neighbouring cell
    shifted = out(params, b._replace(frac_coords=b.frac_coords + shift))
    for f in ref._fields:
        np.testing.assert_allclose(getattr(shifted, f), getattr(moved, f), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="frac_fourier"):
        dataclasses.replace(COND, frac_fourier=-1)
