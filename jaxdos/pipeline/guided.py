"""CDOSGen sampling guided by a learned crystal -> DOS predictor (issue 16).

The crystal stage knows only `GradientGuidance(loss=..., strength=...)` and a loss of its denoised
estimate; the predictor knows only crystals. This module is where the two meet (the stages never
import each other): `PredictorDosLoss` runs the predictor on the estimate, relaxed types included,
and compares its DOS with a target DOS per crystal; `PredictorPropertyLoss` measures the paper's
properties on that DOS with the same differentiable kernels stage 1 uses (Algorithm 1's soft band
gap, DOS(E_F), N(E_F)) and penalises the distance to a window [lo, hi] per property, plus, if
asked, a smooth surrogate of the TCM Type 1 / 2 criteria (`filters.tcm_surrogate`).

    guidance, guide_params, guide_targets = predictor_guidance(model, target_dos, strength=1.0)
    gen = generate(score_fn, params, key=..., num_atoms=..., config=replace(cfg, guidance=guidance),
                   guide_params=guide_params, guide_targets=guide_targets)
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.diffusion.guidance import (
    ClassifierFree,
    DenoisedEstimate,
    GradientGuidance,
    NoGuidance,
)
from jaxdos.kernels import filters, properties
from jaxdos.kernels.grid import check_dos
from jaxdos.neighbors import blind_growth, presize_budgets
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.config import PredictorConfig
from jaxdos.predictor.model import forward
from jaxdos.structures import MAX_Z
from jaxdos.typing import Array, PyTree

__all__ = [
    "check_tcm",
    "check_window",
    "check_windows",
    "PredictorDosLoss",
    "PredictorPropertyLoss",
    "predictor_guidance",
    "predictor_property_guidance",
    "presized_guidance",
]

_UNGUIDED = NoGuidance()


@dataclasses.dataclass(frozen=True)
class PredictorDosLoss:
    """Per crystal, the mean squared difference over the 256 bins between the predictor's DOS of
    the estimate (`guide_params`: the predictor's parameters) and the crystal's target DOS
    (`guide_targets` `[G, 256]`, states / eV / atom).

    The estimate's type probabilities (class k = Z - 1, the mask class last) become the
    predictor's probabilities over Z (column 0 unused); the mask class has probability 0 after
    the sampler's element mask.
    """

    config: PredictorConfig

    def __call__(
        self, guide_params: PyTree, guide_targets: Array, est: DenoisedEstimate
    ) -> tuple[Array, Array]:
        dos, overflow = _predicted_dos(self.config, guide_params, est)
        return jnp.mean((dos - guide_targets) ** 2, axis=-1), overflow

    def grown(self) -> "PredictorDosLoss":
        return _with_grown_graph(self)


def _with_grown_graph(loss):
    """The loss with its predictor's graph budgets grown (`GuideLoss.grown`: the sampler sees
    only the predictor's overflow flag, not what its graph needed; `neighbors.blind_growth`)."""
    return _with_graph(loss, blind_growth(loss.config.graph))


def _with_graph(loss, graph):
    return dataclasses.replace(loss, config=dataclasses.replace(loss.config, graph=graph))


def presized_guidance(guidance, num_atoms, limit_density: float):
    """`guidance` with its predictor loss's graph budgets sized for these atom counts
    (`neighbors.presize_budgets`, as the network's are); other guidance unchanged."""
    loss = getattr(guidance, "loss", None)
    if not isinstance(loss, PredictorDosLoss | PredictorPropertyLoss):
        return guidance
    graph = presize_budgets(loss.config.graph, num_atoms, limit_density)
    return dataclasses.replace(guidance, loss=_with_graph(loss, graph))


def _predicted_dos(config, guide_params, est: DenoisedEstimate):
    n = est.type_probs.shape[0]
    probs = jnp.concatenate([jnp.zeros((n, 1)), est.type_probs[:, :MAX_Z]], axis=1)
    batch = est.batch._replace(frac_coords=est.frac, lattice=est.lattice)
    dos, overflow, _ = forward(config, guide_params, batch, probs)
    return dos, overflow


@dataclasses.dataclass(frozen=True)
class PredictorPropertyLoss:
    """Per crystal, sum over `names` of ((lo - p)_+ + (p - hi)_+)^2 / scale^2, p the property of
    the predictor's DOS of the estimate; `guide_targets` `[G, P, 2]` holds each window [lo, hi].
    Zero inside every window. `scale` is the property's typical size (`_SCALES`), so the terms add
    in comparable units.

    With `tcm` = 1 or 2, plus `filters.tcm_surrogate(dos, tcm)`: the smooth surrogate of the
    paper's TCM Type 1 / 2 criteria (Section 6.1; gap below E_F >= 3.1 eV, DOS(E_F) > 0,
    conduction bandwidth > 4 eV / < 3 eV) on the same DOS. It is ~tau log(#candidates) (< 0.5)
    on a spectrum that passes `filters.tcm_filter` with margin and grows linearly with every bin
    on the wrong side of a criterion (its docstring relates it to the hard filter term by term).
    """

    config: PredictorConfig
    names: tuple[str, ...]
    tcm: int | None = None

    def __call__(
        self, guide_params: PyTree, guide_targets: Array, est: DenoisedEstimate
    ) -> tuple[Array, Array]:
        dos, overflow = _predicted_dos(self.config, guide_params, est)
        measured = properties.all_properties(dos)
        loss = 0.0
        for j, name in enumerate(self.names):
            p, lo, hi = measured[name], guide_targets[:, j, 0], guide_targets[:, j, 1]
            gap = jnp.maximum(lo - p, 0.0) + jnp.maximum(p - hi, 0.0)
            loss = loss + (gap / _SCALES[name]) ** 2
        if self.tcm is not None:
            loss = loss + filters.tcm_surrogate(dos, self.tcm)
        return loss, overflow

    def grown(self) -> "PredictorPropertyLoss":
        return _with_grown_graph(self)


# Typical magnitudes in the world (eV, states/eV/atom, states/atom): the units of the window loss.
_SCALES = {"band_gap": 1.0, "dos_at_fermi": 0.5, "integrated_dos": 1.0}


def check_window(field: str, window) -> tuple[float, float]:
    """`window` as (lo, hi) floats; ValueError naming `field` unless it is two finite numbers
    with lo <= hi. The one rule for every property window (library argument or command flag)."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: expected a window (lo, hi), got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"{field}: expected finite lo <= hi, got ({lo}, {hi})")
    return lo, hi


def check_tcm(field: str, tcm) -> int | None:
    """None, or the TCM type 1 / 2; ValueError naming `field` otherwise."""
    if tcm is not None and tcm not in (1, 2):
        raise ValueError(f"{field}: expected TCM type 1 or 2, got {tcm!r}")
    return tcm


def check_windows(windows, field: str = "windows") -> dict[str, tuple[float, float]]:
    """{property: (lo, hi)} checked by `check_window`; ValueError naming `field` for an unknown
    property or a bad window (`field[name]`)."""
    out = {}
    for name, window in dict(windows or {}).items():
        if name not in _SCALES:
            raise ValueError(f"{field}: unknown property {name!r} (known: {sorted(_SCALES)})")
        out[name] = check_window(f"{field}[{name!r}]", window)
    return out


def predictor_property_guidance(
    model: DOSPredictorModel,
    windows: dict[str, tuple[float, float]],
    num_crystals: int,
    *,
    strength: float,
    tcm: int | None = None,
    base: NoGuidance | ClassifierFree = _UNGUIDED,
    t_max: float = 0.5,
) -> tuple[GradientGuidance, PyTree, Array]:
    """Guidance towards property windows and / or the TCM criteria, the same for every crystal.

    Args:
        model: a trained predictor.
        windows: {"band_gap" | "dos_at_fermi" | "integrated_dos": (lo, hi)}, lo <= hi, finite;
            may be empty when `tcm` is given.
        num_crystals: G, the crystals of the batch to generate.
        strength, base, t_max: as `GradientGuidance`.
        tcm: None, or 1 / 2: also guide towards TCM Type 1 / 2 (`PredictorPropertyLoss`).

    Raises:
        ValueError: naming `windows` for an unknown property or a bad window, or `tcm`.
    """
    windows = check_windows(windows)
    check_tcm("tcm", tcm)
    if not windows and tcm is None:
        raise ValueError("windows: expected at least one property window (or tcm)")
    names = tuple(sorted(windows))
    table = np.array([windows[n] for n in names], np.float32).reshape(len(names), 2)  # [P, 2]
    guidance = GradientGuidance(
        loss=PredictorPropertyLoss(model.config, names, tcm),
        strength=strength,
        base=base,
        t_max=t_max,
    )
    return guidance, model.params, np.broadcast_to(table, (num_crystals, *table.shape)).copy()


def predictor_guidance(
    model: DOSPredictorModel,
    target_dos,
    *,
    strength: float,
    base: NoGuidance | ClassifierFree = _UNGUIDED,
    t_max: float = 0.5,
) -> tuple[GradientGuidance, PyTree, Array]:
    """The guidance, its parameters and per-crystal targets for
    `generate(..., guide_params=..., guide_targets=...)`.

    Args:
        model: a trained predictor.
        target_dos: `[G, 256]` target per-atom DOS, one row per crystal of the batch to generate
            (e.g. the stage-1 DOS that also conditions the classifier-free `base`).
        strength, base, t_max: as `GradientGuidance`.

    Raises:
        ValueError: naming `target_dos` if it is not `[G, 256]`, finite and >= 0.
    """
    target = check_dos(target_dos, "target_dos")
    if target.ndim != 2:
        raise ValueError(f"target_dos: expected [G, 256], got shape {target.shape}")
    if np.any(target < 0):
        raise ValueError("target_dos: expected a DOS >= 0 (states / eV / atom)")
    guidance = GradientGuidance(
        loss=PredictorDosLoss(model.config), strength=strength, base=base, t_max=t_max
    )
    return guidance, model.params, np.asarray(target, np.float32)
