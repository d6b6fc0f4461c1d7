"""Training-loss parity: jaxdos's CDOSGen loss vs MatterGen's on one batch, same t, same noise.

MatterGen's side is `DiffusionModule.calc_loss` in train mode (`MaterialsLoss` as configured in
mattergen/conf/lightning_module/diffusion_module/default.yaml: reduce="sum", weights pos 0.1 /
cell 1.0 / atomic_numbers 1.0, D3PM hybrid lambda 0.01) with its corruption step
(`_corrupt_batch`) replaced by the noisy batch and times jaxdos drew, and its per-field loss
functions wrapped to record the per-crystal values. Two comparisons:

* `loss_given_corruption` on MatterGen's own network output, so only the loss is compared: chosen
  times hit D3PM levels k = 0 (the cross-entropy branch), two mid-range ones and t = 1, and the
  batch has padding slots whose (garbage) predictions must contribute exactly zero;
* `diffusion_loss` end to end with the converted weights: t and the noise come from its key
  (`sample_corruption`), the jaxdos network runs on MatterGen's edge list (as in
  test_gemnet_parity, so only float32 round-off separates the two networks).

Bounds: TOL (1e-5 relative) per crystal and field, except the cell term at t -> 0 (`_cell_rtol`:
float32 round-off of 1 - alpha^2, the same on both sides). Reached errors print with `pytest -s`.
"""

from typing import NamedTuple

import numpy as np
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from mg_reference import (  # noqa: E402
    MATERIALS_LOSS,
    TINY,
    build_denoiser,
    build_diffusion_module,
    chem_batch,
    config_dict,
    graph_from_torch,
    jax_batch,
    random_crystals,
)

from jaxdos.crystal.batch import ScoreOutput  # noqa: E402
from jaxdos.crystal.convert import Checkpoint, convert_checkpoint  # noqa: E402
from jaxdos.crystal.denoiser import GemNetTDenoiser  # noqa: E402
from jaxdos.crystal.diffusion import (  # noqa: E402
    DiffusionConfig,
    LossWeights,
    corrupt,
    diffusion_loss,
    lattice,
    loss_given_corruption,
    sample_corruption,
)

TOL = 1e-5  # relative, per crystal and field (reached on CPU: <= 5e-6, see `pytest -s`)
WEIGHTS = MATERIALS_LOSS["weights"]
FIELDS = {"pos": "pos", "cell": "cell", "atomic_numbers": "types"}  # MatterGen -> FieldLosses


def _mattergen_loss(module, clean, noisy, t):
    """MatterGen's training loss of the given corruption.

    Returns (scalar loss, {field: mean over crystals}, {field: `[G]` per crystal}, model output).
    """
    loss_fn, per_crystal, seen = module.loss_fn, {}, {}

    def recorded(name, fn):
        def wrapped(**kw):
            per_crystal[name] = fn(**kw)
            return per_crystal[name]

        return wrapped

    def loss_and_output(**kw):
        seen["out"] = kw["score_model_output"]
        return loss_fn(**kw)

    loss_fn.loss_fns = {k: recorded(k, fn) for k, fn in loss_fn.loss_fns.items()}
    module.loss_fn = loss_and_output
    module._corrupt_batch = lambda batch: (noisy, t)
    with torch.no_grad():
        loss, means = module.train().calc_loss(clean)
    assert set(per_crystal) == set(FIELDS)
    return loss.item(), {k: v.item() for k, v in means.items()}, per_crystal, seen["out"]


def _mattergen_noisy(clean, noisy, n, g):
    """MatterGen's noisy ChemGraph: the clean one with the real slots of jaxdos's noisy batch."""
    tt = lambda x: torch.tensor(np.asarray(x))
    return clean.replace(
        pos=tt(noisy.frac_coords[:n]),
        cell=tt(noisy.lattice[:g]),
        atomic_numbers=tt(noisy.atomic_numbers[:n]).long(),
    )


def _cell_rtol(t, cfg: DiffusionConfig) -> np.ndarray:
    """`[G]` relative error of the cell loss that float32 round-off alone allows at times `t`.

    Both sides compute std = sqrt((1 - alpha^2) v), and 1 - alpha^2 cancels as t -> 0 (relative
    error ~ eps32 / (1 - alpha^2), 2e-3 at t = 5e-4); the target -(L_t - mean) / std carries it and
    the squared loss doubles it. Elsewhere this is far below TOL.
    """
    a = np.asarray(lattice.alpha(jnp.asarray(t), cfg.cell), np.float64)
    return TOL + 4 * np.finfo(np.float32).eps / (1 - a**2)


def _check(errs: dict, name: str, got, want, rtol):
    """Assert |got - want| <= rtol |want| (elementwise, rtol broadcast); record the worst ratio."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    rel = np.abs(got - want) / np.abs(want)
    errs[name] = [float(f"{x:.1e}") for x in np.atleast_1d(rel)]
    assert np.all(rel <= rtol), (name, got, want, rel, rtol)


def test_loss_given_corruption_matches_mattergen(gemnet_scale_file):
    rng = np.random.default_rng(0)
    num_atoms = [3, 5, 2, 4]
    n, g = sum(num_atoms), len(num_atoms)
    cells, fracs = random_crystals(rng, num_atoms, 0.05)
    types = rng.integers(1, 101, n)  # clean crystals: elements only
    batch = jax_batch(cells, fracs, num_atoms, types, pad_atoms=2, pad_graphs=1)
    cfg = DiffusionConfig()
    # k = floor(999 t): 0 (cross-entropy branch), 369, 809, 999; the padding graph gets 0.5.
    t = jnp.array([5e-4, 0.37, 0.81, 1.0, 0.5])
    c = jax.jit(corrupt, static_argnums=3)(jax.random.key(1), batch, t, cfg)
    k = np.asarray(c.k)[:n]
    assert np.all(k[:3] == 0) and np.all(k[3:8] == 369)
    x_next = np.asarray(c.batch.atomic_numbers)[:n]
    assert (x_next == 101).any() and (x_next != 101).any()  # both D3PM posterior cases occur

    module = build_diffusion_module(build_denoiser(TINY, 0), cfg.cell.limit_density)
    clean = chem_batch(cells, fracs, num_atoms, types)
    loss, means, per_crystal, out = _mattergen_loss(
        module, clean, _mattergen_noisy(clean, c.batch, n, g), torch.tensor(np.asarray(t[:g]))
    )
    garbage = lambda *shape: 1e3 * rng.normal(size=shape).astype(np.float32)
    pred = ScoreOutput(
        frac=jnp.asarray(np.concatenate([out.pos.numpy(), garbage(2, 3)])),
        lattice=jnp.asarray(np.concatenate([out.cell.numpy(), garbage(1, 3, 3)])),
        type_logits=jnp.asarray(np.concatenate([out.atomic_numbers.numpy(), garbage(2, 101)])),
    )
    weights = LossWeights(pos=WEIGHTS["pos"], cell=WEIGHTS["cell"], types=WEIGHTS["atomic_numbers"])
    assert weights == LossWeights()  # jaxdos's defaults are MatterGen's configured weights
    got = jax.jit(loss_given_corruption, static_argnums=(3, 4))(pred, batch, c, cfg, weights)

    for field in FIELDS.values():
        assert float(getattr(got, field)[g]) == 0.0, field  # padding graph: exactly zero
    cell_rtol = _cell_rtol(t[:g], cfg)
    want = {k: v.numpy().astype(np.float64) for k, v in per_crystal.items()}
    want_total = sum(WEIGHTS[k] * want[k] for k in FIELDS)
    # Allowed error of a positive weighted sum: the weighted sum of the terms' allowed errors.
    allow_total = TOL * want_total + WEIGHTS["cell"] * want["cell"] * (cell_rtol - TOL)
    errs = {}
    for name, field in FIELDS.items():
        rtol = cell_rtol if name == "cell" else TOL
        _check(errs, f"{name} [G]", getattr(got, field)[:g], want[name], rtol)
        _check(errs, f"mean {name}", jnp.mean(getattr(got, field)[:g]), means[name],
               np.sum(rtol * want[name]) / np.sum(want[name]))  # fmt: skip
    _check(errs, "total [G]", got.total[:g], want_total, allow_total / want_total)
    _check(errs, "loss", jnp.mean(got.total[:g]), loss, np.sum(allow_total) / np.sum(want_total))
    print(f"t = {np.asarray(t[:g])}, cell rtol {cell_rtol}\nrelative errors {errs}")


class EndToEnd(NamedTuple):
    """One random batch, a seeded MatterGen TINY model and its conversion, a corruption drawn by
    jaxdos from `key`, and jaxdos's loss function running on MatterGen's own edge list."""

    cells: np.ndarray
    fracs: np.ndarray
    num_atoms: list
    types: np.ndarray
    batch: object
    model: object
    params: dict
    gcfg: object
    cfg: object
    key: object
    corruption: object
    loss_fn: object


def _end_to_end(data_seed: int, model_seed: int, key_seed: int) -> EndToEnd:
    rng = np.random.default_rng(data_seed)
    num_atoms = [4, 3, 5]
    cells, fracs = random_crystals(rng, num_atoms, 0.05)
    types = rng.integers(1, 101, sum(num_atoms))
    batch = jax_batch(cells, fracs, num_atoms, types)
    model = build_denoiser(TINY, model_seed)
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    params, gcfg, cfg, _ = convert_checkpoint(
        config_dict(TINY), Checkpoint(tensors, {}, None, "memory")
    )
    key = jax.random.key(key_seed)
    c, _ = jax.jit(sample_corruption, static_argnums=2)(key, batch, cfg)  # the t, x_t of the loss
    graph = graph_from_torch(
        model.gemnet, np.asarray(c.batch.lattice), np.asarray(c.batch.frac_coords), num_atoms
    )
    net = GemNetTDenoiser(gcfg)
    score_fn = lambda p, b, t, cond, k: net.apply(p, b, t, graph=graph)
    loss_fn = lambda p: diffusion_loss(score_fn, p, batch, None, key, cfg)
    return EndToEnd(cells, fracs, num_atoms, types, batch, model, params, gcfg, cfg, key, c,
                    loss_fn)  # fmt: skip


def _mattergen_module(e: EndToEnd):
    """MatterGen's DiffusionModule on e.model (train mode), its corruption replaced by e's."""
    n, g = sum(e.num_atoms), len(e.num_atoms)
    clean = chem_batch(e.cells, e.fracs, e.num_atoms, e.types)
    module = build_diffusion_module(e.model, e.cfg.cell.limit_density)
    return module, clean, _mattergen_noisy(clean, e.corruption.batch, n, g)


def test_diffusion_loss_matches_mattergen_end_to_end(gemnet_scale_file):
    e = _end_to_end(1, 1, 1)  # t = 0.70, 0.23, 0.82
    c, cfg = e.corruption, e.cfg
    with jax.default_matmul_precision("highest"):
        _, metrics = jax.jit(e.loss_fn)(e.params)
    assert not bool(metrics["overflow"])

    module, clean, noisy = _mattergen_module(e)
    loss, means, _, _ = _mattergen_loss(module, clean, noisy, torch.tensor(np.asarray(c.t)))
    cell_rtol = np.max(_cell_rtol(c.t, cfg))  # ~TOL: this key draws t = 0.70, 0.23, 0.82
    errs = {}
    for name, field in FIELDS.items():
        rtol = cell_rtol if name == "cell" else TOL
        _check(errs, f"mean {name}", metrics[f"loss_{field}"], means[name], rtol)
    _check(errs, "loss", metrics["loss"], loss, cell_rtol)
    print(f"t = {np.asarray(c.t)}\nrelative errors {errs}")


def test_loss_gradients_match_mattergen(gemnet_scale_file):
    """The training gradient, not only the loss: jax.grad of `diffusion_loss` equals MatterGen's
    backward pass of `calc_loss` for every parameter (same weights, t, noise and edge list), so a
    training run of either framework takes the same first step."""
    from jaxdos.crystal.checkpoint import CDOSGenModel
    from jaxdos.crystal.convert import export_state_dict
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution

    e = _end_to_end(2, 3, 4)
    with jax.default_matmul_precision("highest"):
        grads = jax.jit(jax.grad(lambda p: e.loss_fn(p)[1]["loss"]))(e.params)
    dist = NumAtomsDistribution.from_counts(np.array(e.num_atoms))
    as_torch = export_state_dict(
        CDOSGenModel(params=grads, gemnet=e.gcfg, diffusion=e.cfg, num_atoms=dist)
    )[1]

    module, clean, noisy = _mattergen_module(e)
    module._corrupt_batch = lambda b: (noisy, torch.tensor(np.asarray(e.corruption.t)))
    module.train().zero_grad()
    module.calc_loss(clean)[0].backward()
    want = {k: p.grad.numpy() for k, p in e.model.named_parameters() if p.grad is not None}
    assert set(want) <= set(as_torch), sorted(set(want) - set(as_torch))
    worst = {}
    for name, w in want.items():
        got = np.asarray(as_torch[name]).reshape(w.shape)
        scale = max(float(np.max(np.abs(w))), 1e-6)
        worst[name] = float(np.max(np.abs(got - w)) / scale)
    bad = {k: v for k, v in worst.items() if v > 1e-3}
    assert not bad, bad
    print(f"{len(want)} gradients; worst relative error {max(worst.values()):.1e}")
