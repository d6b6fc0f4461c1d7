"""Stage 3: score crystals with the tight-binding oracle or a learned DOS predictor, then the
paper's properties and filters.

`score(crystals, scorer=None)`: None or "oracle" is the tight-binding oracle (the offline world's
ground truth); a `DOSPredictorModel` or a "dos_predictor" model directory scores with that
predictor instead (the paper's DOSForge role, for crystals outside the world, e.g. after training
on MP records). `Scores.scorer` says which one produced the results ("oracle", or "predictor:"
and the model's directory or architecture).

Generated crystals can be degenerate (overlapping atoms, a collapsed cell, an element the oracle
does not know). Those are reported as invalid with the oracle's reason, never scored as a NaN
spectrum and never allowed to abort the rest of the batch.
"""

from typing import NamedTuple

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

from jaxdos.kernels.filters import TCMResult, tcm_filter
from jaxdos.kernels.oracle import OracleConfig, oracle_dos
from jaxdos.kernels.oracle_prep import prepare_crystals
from jaxdos.kernels.properties import all_properties
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.predict import as_predictor, predict_dos
from jaxdos.sampler.targets import FILTER_NAMES, Targets, acceptance
from jaxdos.structures import Crystals, from_structures

__all__ = ["ORACLE", "Scores", "score", "scorer_name", "target_verdicts", "uniqueness_novelty"]

ORACLE = "oracle"


class Scores(NamedTuple):
    """Oracle scores of M crystals; invalid crystals hold a zero DOS and NaN properties.

    Fields:
        valid: `[M]` bool, the oracle accepted the crystal.
        reason: `[M]` str, why a crystal is invalid ("" when valid).
        dos: `[M, 256]` per-atom DOS (states / eV / atom).
        efermi: `[M]` eV.
        properties: name -> `[M]` (band_gap, dos_at_fermi, integrated_dos); NaN when invalid.
        tcm: `TCMResult` of numpy arrays `[M]`; verdicts are False for invalid crystals.
        scorer: what produced `dos`: "oracle", or "predictor:<model directory or architecture>"
            (a predictor has no absolute Fermi level: `efermi` is then NaN).
    """

    valid: np.ndarray
    reason: np.ndarray
    dos: np.ndarray
    efermi: np.ndarray
    properties: dict
    tcm: TCMResult
    scorer: str = ORACLE


def scorer_name(scorer) -> str:
    """The `Scores.scorer` label of a `score(..., scorer=)` argument (no model is loaded)."""
    if scorer is None or scorer == ORACLE:
        return ORACLE
    if isinstance(scorer, DOSPredictorModel):
        return f"predictor:{scorer.architecture}"  # an object in memory has no directory
    return f"predictor:{scorer}"


def _validity(crystals: Crystals, cfg: OracleConfig) -> tuple[np.ndarray, np.ndarray]:
    valid = np.zeros(len(crystals.num_atoms), bool)
    reason = np.full(len(crystals.num_atoms), "", dtype=object)
    for i in range(len(valid)):
        try:
            prepare_crystals(*(np.asarray(f)[i : i + 1] for f in crystals), cfg)
            valid[i] = True
        except ValueError as err:
            reason[i] = str(err).removeprefix("crystal 0: ")
    return valid, reason.astype(str)


def score(crystals, scorer=None) -> Scores:
    """DOS, properties and TCM verdicts for `jaxdos.structures.Crystals` or a list of Structures.

    Args:
        crystals: the crystals.
        scorer: None or "oracle" (the tight-binding oracle), or a predictor: a
            `jaxdos.predictor.DOSPredictorModel` or its model directory (str / Path).

    Validity is the oracle's structural check in both cases (known element, sane cell, no
    overlapping atoms), so the two scorers reject the same crystals and their rates compare.

    Raises:
        ValueError / FileNotFoundError: naming `scorer` or the model file, before any compute.
    """
    name = scorer_name(scorer)
    predictor = None if name == ORACLE else as_predictor(scorer)
    if not isinstance(crystals, Crystals):
        crystals = from_structures(crystals)
    cfg = OracleConfig.default()
    m = len(crystals.num_atoms)
    valid, reason = _validity(crystals, cfg)
    dos = np.zeros((m, 256), np.float32)
    efermi = np.zeros((m,), np.float32)
    if valid.any() and predictor is None:
        dos[valid], efermi[valid] = oracle_dos(
            *(np.asarray(f)[valid] for f in crystals), config=cfg
        )
    elif valid.any():
        dos[valid] = predict_dos(crystals.take(np.flatnonzero(valid)), predictor)
        efermi[:] = np.nan
    # Invalid crystals have no spectrum: NaN, not the properties of an all-zero DOS.
    props = {k: np.where(valid, np.asarray(v), np.nan) for k, v in all_properties(dos).items()}
    tcm = TCMResult(*(np.asarray(v) for v in tcm_filter(dos)))
    verdicts = {
        f: getattr(tcm, f) & valid
        for f in ("gap_ok", "metallic", "wide_band", "narrow_band", "type1", "type2", "is_tcm")
    }
    return Scores(valid, reason, dos, efermi, props, tcm._replace(**verdicts), name)


def target_verdicts(targets: Targets, dos, valid) -> dict:
    """Does each crystal meet each target? Stage 1's acceptance rule, applied to the oracle DOS.

    Args:
        targets: the run's `Targets`.
        dos: `[M, 256]` oracle DOS of the crystals.
        valid: `[M]` bool; an invalid crystal meets nothing.

    Returns:
        {"<property>_ok" or "<filter>_ok" (tcm1, tcm2, te): `[M]` bool, ..., "meets_targets":
        `[M]` bool (all of them)}.
    """
    valid = np.asarray(valid, bool)
    out = {}
    for p in targets.properties:
        out[f"{p.name}_ok"] = np.asarray(acceptance(Targets(properties=(p,)), dos)[0]) & valid
    for f in targets.filters:
        name = next(k for k, v in FILTER_NAMES.items() if isinstance(f, v))
        out[f"{name}_ok"] = np.asarray(acceptance(Targets(filters=(f,)), dos)[0]) & valid
    out["meets_targets"] = np.asarray(acceptance(targets, dos)[0]) & valid
    return out


def uniqueness_novelty(
    generated: list[Structure], reference: list[Structure]
) -> tuple[float, float]:
    """Fractions of unique structures among `generated`, and of unique ones absent from `reference`.

    Uses pymatgen's `StructureMatcher` (default tolerances), comparing only structures with the same
    reduced formula, which is what the matcher would require anyway.
    """
    if not generated:
        return 0.0, 0.0
    matcher = StructureMatcher()
    by_formula: dict[str, list[Structure]] = {}
    for s in reference:
        by_formula.setdefault(s.composition.reduced_formula, []).append(s)
    unique: list[Structure] = []
    for s in generated:
        if not any(
            matcher.fit(s, u)
            for u in unique
            if u.composition.reduced_formula == s.composition.reduced_formula
        ):
            unique.append(s)
    novel = [
        s
        for s in unique
        if not any(matcher.fit(s, r) for r in by_formula.get(s.composition.reduced_formula, []))
    ]
    return len(unique) / len(generated), len(novel) / len(generated)
