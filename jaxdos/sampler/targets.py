"""Target specifications for property-conditional DOS sampling (Sections 4.3 and 6.1, Table 8).

A `Targets` combines numeric property targets (value ± tolerance) with categorical filters (TCM
Type 1 / Type 2, thermoelectric). From it come three things, all decided before any compute:

- `acceptance(targets, dos)`: the rejection test, jittable and branch-free, `[B, L] -> [B]` bool.
- `prior_mask(targets)`: the band-gap prior, `[L]` bool bins fixed to [BG] at initialisation.
- the guidance targets for the numeric properties (`guided_properties`).

Tolerances. A target `y` with relative tolerance `r` accepts |measured - y| <= r*|y| (paper: ±10 %);
a zero target uses the absolute tolerance instead (paper, Table 12 note: <= 0.1 for zero targets).

Band-gap prior placement (Algorithm 2's "prior DOS"). The tokeniser marks [BG] on internal runs of
zero-level bins; the prior fixes a sub-interval of the intended gap to [BG] and lets the model
draw the band edges:

- `band_gap = g > 0`: floor(g_lo / dE) bins centred on E_F, g_lo = the lower end of the accepted
  interval, i.e. bins [128 - ceil(n/2), 128 + floor(n/2)). Algorithm 1 counts outward from E_F, so
  the measured gap is >= n*dE >= g_lo by construction, plus whatever near-empty edge bins the model
  adds; rejection then enforces the upper end. `band_gap = 0` (metal): no prior.
- TCM (Section 6.1: "a wide band gap located below the Fermi level"): ceil(min_gap / dE) bins (40
  bins = 3.125 eV >= 3.1 eV) ending `gap_offset` eV below E_F, leaving the occupied bottom of the
  conduction band between the gap and E_F (Type 1, a degenerate semiconductor, sits just above the
  band bottom: 0.5 eV by default; Type 2, a gapped metal with E_F inside a narrow band: 1.0 eV).
- thermoelectric: ceil(min_gap / dE) bins centred on E_F (2 bins), so DOS(E_F) = 0 by construction.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.filters import TCMCriteria, TECriteria, tcm_filter, te_filter
from jaxdos.kernels.grid import BIN_WIDTH, E_WINDOW, FERMI_INDEX, N_BINS, check_dos
from jaxdos.kernels.properties import (
    ABS_TOL,
    PROPERTY_NAMES,
    REL_TOL,
    all_properties,
    tolerance,
)
from jaxdos.sampler.guidance import ClassifierGuidance, NoGuidance

__all__ = [
    "PropertyTarget",
    "parse_target",
    "FILTER_NAMES",
    "TCMType1",
    "TCMType2",
    "Thermoelectric",
    "Targets",
    "acceptance",
    "prior_mask",
    "guided_properties",
    "guidance_for",
]

# Upper ends of the physically meaningful ranges on the paper's grid (for error messages).
_MAX_VALUE = {
    "band_gap": 2 * E_WINDOW,  # eV: the whole window
    "dos_at_fermi": 1e3,  # states / eV / atom
    "integrated_dos": 1e3,  # states / atom
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class PropertyTarget:
    """One numeric target: accept |measured - value| <= tolerance.

    Attributes:
        name: one of `jaxdos.kernels.properties.PROPERTY_NAMES`.
        value: the target y* (>= 0; eV, states/eV/atom or states/atom).
        rel_tol: relative tolerance in (0, 1] for non-zero targets (paper: 0.1).
        abs_tol: absolute tolerance > 0 used when `value == 0` (paper: 0.1).
    """

    name: str
    value: float
    rel_tol: float = REL_TOL
    abs_tol: float = ABS_TOL

    def __post_init__(self):
        if self.name not in PROPERTY_NAMES:
            raise ValueError(f"name: expected one of {PROPERTY_NAMES}, got {self.name!r}")
        v = float(self.value)
        hi = _MAX_VALUE[self.name]
        if not math.isfinite(v) or not 0.0 <= v <= hi:
            raise ValueError(f"{self.name}: expected a finite value in [0, {hi}], got {self.value}")
        if not (math.isfinite(self.rel_tol) and 0.0 < self.rel_tol <= 1.0):
            raise ValueError(f"{self.name}.rel_tol: expected in (0, 1], got {self.rel_tol}")
        if not (math.isfinite(self.abs_tol) and self.abs_tol > 0.0):
            raise ValueError(f"{self.name}.abs_tol: expected > 0, got {self.abs_tol}")

    @property
    def tolerance(self) -> float:
        return tolerance(self.value, rel_tol=self.rel_tol, abs_tol=self.abs_tol)

    @property
    def interval(self) -> tuple[float, float]:
        """The accepted closed interval [lo, hi] (lo clipped at 0: the properties are >= 0)."""
        return max(0.0, self.value - self.tolerance), self.value + self.tolerance


@dataclasses.dataclass(frozen=True, kw_only=True)
class TCMType1:
    """Transparent conductor, Type 1 (degenerate semiconductor, conduction bandwidth > 4 eV)."""

    criteria: TCMCriteria = TCMCriteria()
    gap_offset: float = 0.5  # eV between the prior gap's top edge and E_F

    def __post_init__(self):
        _check_offset(self.gap_offset, self.criteria)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TCMType2:
    """Transparent conductor, Type 2 (gapped metal, conduction bandwidth < 3 eV)."""

    criteria: TCMCriteria = TCMCriteria()
    gap_offset: float = 1.0

    def __post_init__(self):
        _check_offset(self.gap_offset, self.criteria)


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Thermoelectric:
    """Thermoelectric filter of Section 6.2: small gap at E_F and cosine > 0.9 to `reference`.

    Attributes:
        reference: `[L]` per-atom DOS of the reference thermoelectric.
        criteria: thresholds (gap range, cosine).
    """

    reference: np.ndarray
    criteria: TECriteria = TECriteria()

    def __post_init__(self):
        ref = check_dos(self.reference, "thermoelectric.reference")
        if ref.shape != (N_BINS,):
            raise ValueError(f"thermoelectric.reference: expected [{N_BINS}], got {ref.shape}")
        object.__setattr__(self, "reference", ref.astype(np.float32))


def _check_offset(offset, criteria):
    room = E_WINDOW - criteria.min_gap
    if not (math.isfinite(offset) and 0.0 <= offset <= room):
        raise ValueError(f"gap_offset: expected in [0, {room:.3f}] eV, got {offset}")


def parse_target(name: str, text: str) -> PropertyTarget:
    """A `PropertyTarget` from its command-line form, the one spelling of every command.

    `VALUE` takes the paper's tolerance (±10 %, or 0.1 absolute for 0; `kernels.properties`),
    `VALUE+-TOL` an absolute half-width, `LO:HI` the closed interval itself. A half-width or an
    interval is stored as the centre with the relative tolerance that gives exactly that interval
    (absolute for a zero centre), so acceptance, the prior and guidance read it unchanged.

    Raises:
        ValueError: naming `name`, for unparsable text, LO > HI or a value outside its range.
    """
    text = str(text).strip()
    hi_max = _MAX_VALUE.get(name)
    if hi_max is None:
        raise ValueError(f"name: expected one of {PROPERTY_NAMES}, got {name!r}")
    forms = "VALUE, VALUE+-TOL or LO:HI"
    try:
        if ":" in text:
            lo, hi = (float(v) for v in text.split(":"))
            tol = None
        elif "+-" in text:
            value, tol = (float(v) for v in text.split("+-"))
        else:
            return PropertyTarget(name=name, value=float(text))
    except ValueError as err:
        if str(err).startswith(f"{name}:"):
            raise
        raise ValueError(f"{name}: expected {forms}, got {text!r}") from None
    if tol is not None:
        if not (math.isfinite(tol) and tol > 0):
            raise ValueError(f"{name}: expected a tolerance > 0 in {text!r}, got {tol}")
        if not (math.isfinite(value) and 0.0 <= value <= hi_max):
            raise ValueError(f"{name}: expected a finite value in [0, {hi_max}], got {value}")
        lo, hi = max(0.0, value - tol), value + tol
    for v in (lo, hi):
        if not (math.isfinite(v) and 0.0 <= v <= hi_max):
            raise ValueError(f"{name}: expected LO and HI in [0, {hi_max}], got {text!r}")
    if not lo < hi:
        raise ValueError(f"{name}: expected LO < HI, got {text!r}")
    if tol is not None and value == 0.0:
        return PropertyTarget(name=name, value=0.0, abs_tol=tol)
    centre = (lo + hi) / 2
    return PropertyTarget(name=name, value=centre, rel_tol=(hi - lo) / (hi + lo))


Filter = TCMType1 | TCMType2 | Thermoelectric
# The filters' short names, as the commands spell them (`--filter tcm1`) and tables head them.
FILTER_NAMES = {"tcm1": TCMType1, "tcm2": TCMType2, "te": Thermoelectric}


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class Targets:
    """A conditioning specification: numeric targets and categorical filters, all to be met.

    Attributes:
        properties: at most one `PropertyTarget` per property name.
        filters: at most one TCM type and at most one thermoelectric filter.
    """

    properties: tuple[PropertyTarget, ...] = ()
    filters: tuple[Filter, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "properties", tuple(self.properties))
        object.__setattr__(self, "filters", tuple(self.filters))
        for p in self.properties:
            if not isinstance(p, PropertyTarget):
                raise ValueError(
                    f"properties: expected PropertyTarget items, got {type(p).__name__}"
                )
        for f in self.filters:
            if not isinstance(f, TCMType1 | TCMType2 | Thermoelectric):
                raise ValueError(
                    "filters: expected TCMType1, TCMType2 or Thermoelectric, "
                    f"got {type(f).__name__}"
                )
        names = [p.name for p in self.properties]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"properties: each property at most once, repeated {sorted(dup)}")
        _check_combination(self)

    @classmethod
    def of(
        cls,
        *,
        band_gap: float | None = None,
        dos_at_fermi: float | None = None,
        integrated_dos: float | None = None,
        tol: float = REL_TOL,
        abs_tol: float = ABS_TOL,
        filters: tuple = (),
    ) -> "Targets":
        """Convenience constructor: `Targets.of(band_gap=2.0, integrated_dos=2.0)`."""
        values = dict(band_gap=band_gap, dos_at_fermi=dos_at_fermi, integrated_dos=integrated_dos)
        props = tuple(
            PropertyTarget(name=n, value=v, rel_tol=tol, abs_tol=abs_tol)
            for n, v in values.items()
            if v is not None
        )
        return cls(properties=props, filters=tuple(filters))

    def get(self, name: str) -> PropertyTarget | None:
        return next((p for p in self.properties if p.name == name), None)

    @property
    def tcm(self):
        return next((f for f in self.filters if isinstance(f, TCMType1 | TCMType2)), None)

    @property
    def thermoelectric(self):
        return next((f for f in self.filters if isinstance(f, Thermoelectric)), None)

    def describe(self) -> str:
        parts = [f"{p.name}={p.value:g}±{p.tolerance:g}" for p in self.properties]
        parts += [type(f).__name__ for f in self.filters]
        return ", ".join(parts) or "unconditional"


def _check_combination(t: Targets) -> None:
    """Reject specifications no spectrum can meet, naming the fields in conflict."""
    tcms = [f for f in t.filters if isinstance(f, TCMType1 | TCMType2)]
    tes = [f for f in t.filters if isinstance(f, Thermoelectric)]
    if len(tcms) > 1:
        raise ValueError(
            "filters: at most one TCM type (Type 1 needs bandwidth > 4 eV, Type 2 < 3 eV)"
        )
    if len(tes) > 1:
        raise ValueError("filters: at most one Thermoelectric filter")
    gap, dosf = t.get("band_gap"), t.get("dos_at_fermi")
    if tcms and tes:
        raise ValueError(
            "filters: TCM needs DOS(E_F) > 0 but Thermoelectric needs DOS(E_F) = 0; use one"
        )
    if tcms and gap is not None and gap.interval[0] > 0:
        raise ValueError(
            "band_gap: a TCM's gap lies below E_F and Algorithm 1's gap at E_F is 0 for a "
            f"metal; with a TCM filter expected band_gap = 0 or none, got {gap.value}"
        )
    if tes:
        crit = tes[0].criteria
        if dosf is not None and dosf.interval[0] > 0:
            raise ValueError(
                f"dos_at_fermi: Thermoelectric needs DOS(E_F) = 0, got target {dosf.value}"
            )
        if gap is not None:
            lo, hi = gap.interval
            if hi < crit.min_gap or lo > crit.max_gap:
                raise ValueError(
                    f"band_gap: Thermoelectric needs a gap in [{crit.min_gap}, {crit.max_gap}] eV, "
                    f"target interval [{lo:g}, {hi:g}] does not meet it"
                )
    if gap is not None and dosf is not None and _gap_prior_bins(gap) >= 2 and dosf.interval[0] > 0:
        raise ValueError(
            f"band_gap, dos_at_fermi: a gap of {gap.value} eV centred on E_F makes DOS(E_F) = 0; "
            f"expected dos_at_fermi = 0 or a band_gap below {2 * BIN_WIDTH} eV"
        )


def _gap_prior_bins(gap: PropertyTarget) -> int:
    return int(math.floor(gap.interval[0] / BIN_WIDTH + 1e-9))


def prior_mask(targets: Targets) -> np.ndarray:
    """The band-gap prior `[L]` bool: bins fixed to [BG] at initialisation (module docstring)."""
    mask = np.zeros(N_BINS, bool)
    gap = targets.get("band_gap")
    if gap is not None and gap.value > 0:
        n = min(_gap_prior_bins(gap), N_BINS)
        start = FERMI_INDEX - (n + 1) // 2
        mask[max(start, 0) : start + n] = True
    tcm = targets.tcm
    if tcm is not None:
        n = int(math.ceil(tcm.criteria.min_gap / BIN_WIDTH - 1e-9))
        top = FERMI_INDEX - int(round(tcm.gap_offset / BIN_WIDTH))
        mask[max(top - n, 0) : top] = True
    te = targets.thermoelectric
    if te is not None:
        n = max(int(math.ceil(te.criteria.min_gap / BIN_WIDTH - 1e-9)), 2)
        start = FERMI_INDEX - (n + 1) // 2
        mask[start : start + n] = True
    return mask


def acceptance(targets: Targets, dos):
    """The rejection test on decoded spectra (jittable; `targets` is a trace-time constant).

    Args:
        targets: the specification.
        dos: `[B, L]` per-atom spectra.

    Returns:
        (accept `[B]` bool, measured properties: dict name -> `[B]` float32).
    """
    props = all_properties(dos)
    ok = jnp.ones(dos.shape[:-1], bool)
    for p in targets.properties:
        lo, hi = p.interval
        # A small slack absorbs float32 roundoff on bin-width multiples (band gaps are n * dE).
        eps = 1e-5 * max(1.0, abs(p.value))
        ok = ok & (props[p.name] >= lo - eps) & (props[p.name] <= hi + eps)
    tcm = targets.tcm
    if tcm is not None:
        res = tcm_filter(dos, tcm.criteria)
        ok = ok & (res.type1 if isinstance(tcm, TCMType1) else res.type2)
    te = targets.thermoelectric
    if te is not None:
        ok = ok & te_filter(dos, jnp.asarray(te.reference), te.criteria).passed
    return ok, props


def guided_properties(targets: Targets) -> dict[str, float]:
    """Targets steered by classifier guidance: the numeric ones the prior does not already set.

    Following Section 4.3, the band gap is imposed by the prior, the other properties by guidance;
    a zero band-gap target (a metal, no prior) is guided as well.
    """
    out = {}
    for p in targets.properties:
        if p.name == "band_gap" and p.value > 0:
            continue
        out[p.name] = float(p.value)
    return out


def guidance_for(targets: Targets, gamma: float = 1.0):
    """The guidance variant for `targets`: `ClassifierGuidance` on `guided_properties`, one γ each.

    Args:
        targets: the specification.
        gamma: γ >= 0 for every guided property (standardised-residual units, see `guidance`);
            0 or no guided property gives `NoGuidance()`.
    """
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma: expected a finite value >= 0, got {gamma}")
    guided = guided_properties(targets)
    if not guided or gamma == 0:
        return NoGuidance()
    return ClassifierGuidance(targets=tuple(guided.items()), gammas=(gamma,) * len(guided))
