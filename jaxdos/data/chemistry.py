"""Chemical decoration rules for prototype crystals: element pools, charge balance, bond lengths.

Elements follow the paper's filter (Z <= 83, no Tc, Pm) and no noble gases. Ionic decorations are
charge balanced with pymatgen's common oxidation states; bond lengths come from Shannon radii
(`Species.ionic_radius`) for ionic pairs and Slater atomic radii for metallic/covalent ones.
"""

import functools

import numpy as np

__all__ = [
    "ANIONS",
    "ANION_WEIGHTS",
    "METALS",
    "EARLY_TM",
    "LATE_TM",
    "P_BLOCK_METALS",
    "cations_with_charge",
    "ionic_radius",
    "bond_length",
    "cation_weight",
    "pick",
]

# Anions by charge and their sampling weights (oxides dominate inorganic databases such as MP).
ANIONS = {-1: ("F", "Cl", "Br", "I"), -2: ("O", "S", "Se", "Te"), -3: ("N", "P", "As")}
ANION_WEIGHTS = {
    "O": 0.36, "S": 0.10, "Se": 0.06, "Te": 0.04, "F": 0.10, "Cl": 0.09, "Br": 0.05, "I": 0.05,
    "N": 0.08, "P": 0.04, "As": 0.03,
}  # fmt: skip

EARLY_TM = ("Sc", "Ti", "V", "Cr", "Mn", "Y", "Zr", "Nb", "Mo", "Hf", "Ta", "W")
LATE_TM = ("Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Re", "Os", "Ir", "Pt", "Au")
P_BLOCK_METALS = ("Al", "Ga", "In", "Tl", "Si", "Ge", "Sn", "Pb", "Sb", "Bi")
ALKALI = ("Li", "Na", "K", "Rb", "Cs")
ALKALINE_EARTH = ("Be", "Mg", "Ca", "Sr", "Ba")
LANTHANIDES = ("La", "Ce", "Pr", "Nd", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu")
METALS = (
    ALKALI + ALKALINE_EARTH + EARLY_TM + LATE_TM + ("Zn", "Cd", "Hg") + P_BLOCK_METALS
    + ("La", "Ce", "Nd", "Gd", "Er", "Yb", "Lu")
)  # fmt: skip
# Cations considered for ionic decorations (metals, metalloids, and B/P/As/Te in high states).
_CATION_ELEMENTS = ALKALI + ALKALINE_EARTH + EARLY_TM + LATE_TM + ("Zn", "Cd", "Hg") + (
    "B", "Al", "Ga", "In", "Tl", "Si", "Ge", "Sn", "Pb", "Sb", "Bi",
) + LANTHANIDES  # fmt: skip


@functools.cache
def cations_with_charge(q: int) -> tuple[str, ...]:
    """Cation elements with +q among their common oxidation states (plus Cu/Ag +1, ...).

    Lanthanides only as +3: the oracle keeps 4f in the core with three valence electrons.
    """
    from pymatgen.core import Element

    extra = {1: ("Cu", "Ag", "Tl"), 2: ("Sn", "Pb", "V", "Cr", "Ti"), 3: ("Ti", "V", "Mn")}
    out = [
        s
        for s in _CATION_ELEMENTS
        if q in Element(s).common_oxidation_states and (s not in LANTHANIDES or q == 3)
    ]
    out += [s for s in extra.get(q, ()) if s not in out]
    return tuple(out)


@functools.cache
def ionic_radius(symbol: str, q: int) -> float:
    """Shannon radius of symbol^q (Angstrom), falling back to the average ionic or atomic radius."""
    import warnings

    from pymatgen.core import Element, Species

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns when it falls back to averages
            r = Species(symbol, q).ionic_radius
        if r is not None:
            return float(r)
    except (ValueError, KeyError):
        pass
    el = Element(symbol)
    r = float(el.average_ionic_radius)
    return r if r > 0 else float(el.atomic_radius)


@functools.cache
def _atomic_radius(symbol: str) -> float:
    from pymatgen.core import Element

    return float(Element(symbol).atomic_radius)


def bond_length(a: str, b: str, qa: int | None = None, qb: int | None = None) -> float:
    """Nearest-neighbour distance for the pair: Shannon sum if both charges given, else Slater."""
    if qa is not None and qb is not None:
        return ionic_radius(a, qa) + ionic_radius(b, qb)
    return _atomic_radius(a) + _atomic_radius(b)


@functools.cache
def cation_weight(symbol: str, q: int) -> float:
    """Sampling weight of a cation: open d shells (d1..d9) are down-weighted to 0.02.

    A non-spin-polarised tight-binding model makes every partly filled d shell metallic (real
    NiO, CoO, ... are Mott/charge-transfer insulators), so closed-shell cations (s/p, d0, d10,
    4f-in-core lanthanides) are favoured to keep the metal : gapped ratio MP-like.
    """
    from pymatgen.core import Element

    el = Element(symbol)
    if 13 <= el.group <= 15 and q == el.group - 12:
        return 0.15  # lone-pair s2 cations (Tl+, Sn2+, Pb2+, Bi3+, ...): metallic in this model
    if el.group == 11 and q == 1:
        return 0.15  # Cu+/Ag+/Au+: d10 under a wide s band, metallic or gapped-metal here
    if 57 <= el.Z <= 71 or not 3 <= el.group <= 12:
        return 1.0
    return 1.0 if el.group - q in (0, 10) else 0.02


def pick(rng: np.random.Generator, items, weights=None):
    """One item from a sequence, optionally weighted (weights need not be normalised)."""
    items = list(items)
    if weights is None:
        return items[int(rng.integers(len(items)))]
    w = np.asarray(weights, float)
    return items[int(rng.choice(len(items), p=w / w.sum()))]
