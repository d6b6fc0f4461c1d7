"""Element table of the tight-binding oracle: orbitals, on-site energies, valence, radii.

Every number is derived from tabulated element data (pymatgen `Element`) or from Harrison's
universal tight-binding constants; nothing is fitted to a target DOS. See the oracle section of
`jaxdos/kernels/README.md` for the physical reasoning.

Orbital slots (per atom, fixed order, 9 slots): 0 = s; 1, 2, 3 = p_x, p_y, p_z;
4..8 = d_xy, d_yz, d_zx, d_{x^2-y^2}, d_{3z^2-r^2}. An element uses a subset:

    H, He                    s            (1 orbital)
    s-block, p-block, noble  s, p         (4 orbitals; s-block p empty but bonding)
    d-block (groups 3-11)    s, d         (6 orbitals; valence = group number)
    group 12 (Zn, Cd, Hg)    s, p, d      (9 orbitals; full d shell, the empty p makes them metals)
    La-Lu                    s, d         (6 orbitals; 4f kept in the core, valence 3)

Energies are eV; lengths Angstrom.
"""

import functools
import re
import warnings

import numpy as np

from jaxdos.structures import ALLOWED_Z

__all__ = [
    "N_SLOTS",
    "SLOT_L",
    "HBAR2_OVER_M",
    "ETA",
    "ElementTable",
    "element_table",
]

N_SLOTS = 9
SLOT_L = np.array([0, 1, 1, 1, 2, 2, 2, 2, 2], dtype=np.int32)

# hbar^2 / m_e in eV * Angstrom^2 (Harrison's 7.62).
HBAR2_OVER_M = 7.62
# Harrison's universal dimensionless coefficients (Solid State Table): V = eta * hbar^2/(m d^2) for
# s/p pairs, eta * hbar^2 r_d^{3/2}/(m d^{7/2}) for s/p-d and eta * hbar^2 r_d^3/(m d^5) for d-d.
ETA = {
    "ss_sigma": -1.40,
    "sp_sigma": 1.84,
    "pp_sigma": 3.24,
    "pp_pi": -0.81,
    "sd_sigma": -3.16,
    "pd_sigma": -2.95,
    "pd_pi": 1.36,
    "dd_sigma": -16.2,
    "dd_pi": 8.75,
    "dd_delta": 0.0,
}

# Harrison's d-state radii r_d (Angstrom), approximately as tabulated in his Solid State Table;
# lanthanides (4f in the core) reuse La's 5d radius scaled by the lanthanide contraction.
_R_D = {
    "Sc": 1.24, "Ti": 1.08, "V": 0.98, "Cr": 0.90, "Mn": 0.86, "Fe": 0.80, "Co": 0.76,
    "Ni": 0.71, "Cu": 0.67, "Zn": 0.64, "Y": 1.58, "Zr": 1.41, "Nb": 1.28, "Mo": 1.20,
    "Ru": 1.05, "Rh": 0.99, "Pd": 0.94, "Ag": 0.89, "Cd": 0.85, "La": 1.58, "Hf": 1.44,
    "Ta": 1.34, "W": 1.27, "Re": 1.20, "Os": 1.13, "Ir": 1.08, "Pt": 1.04, "Au": 1.01,
    "Hg": 0.98,
}  # fmt: skip
# Noble gases have no Slater radius in pymatgen: van der Waals-free "contact" radii used instead.
_NOBLE_RADIUS = {2: 0.35, 10: 0.45, 18: 0.71, 36: 0.88, 54: 1.08}

HARTREE = 27.211386


class ElementTable:
    """Per-element arrays indexed by Z (row 0 is padding), all numpy.

    Rows run to max(ALLOWED_Z) = 83; the oracle has parameters for exactly the elements of
    `jaxdos.structures.ALLOWED_Z` (the paper's Table 6 policy).

    Attributes:
        supported: `[84]` bool, `is_allowed` of each row.
        slot_mask: `[84, 9]` bool, which of the 9 orbital slots the element uses.
        onsite: `[84, 9]` float64 on-site energies (eV) per slot.
        valence: `[84]` float64 valence electrons.
        radius: `[84]` float64 Slater atomic radius (Angstrom); d0 = r_i + r_j is the bond scale.
        r_d: `[84]` float64 Harrison d radius (0 for elements without d orbitals).
        chi: `[84]` float64 Pauling electronegativity (noble gases: 3.0, a neutral placeholder).
    """

    def __init__(self, supported, slot_mask, onsite, valence, radius, r_d, chi):
        self.chi = chi
        self.supported = supported
        self.slot_mask = slot_mask
        self.onsite = onsite
        self.valence = valence
        self.radius = radius
        self.r_d = r_d


def _orbital_energy(orbitals: dict, n: int, letter: str) -> float:
    """LDA atomic eigenvalue (eV) of orbital `n letter`, NaN if pymatgen does not list it."""
    for key, value in orbitals.items():
        m = re.fullmatch(r"(\d+)([spdf])", key)
        if m and int(m.group(1)) == n and m.group(2) == letter:
            return float(value) * HARTREE
    return float("nan")


def _fill_by_neighbours(values: np.ndarray, members: np.ndarray) -> None:
    """Fill NaNs among `members` (Z indices) by linear interpolation over Z within the group."""
    known = [z for z in members if np.isfinite(values[z])]
    for z in members:
        if not np.isfinite(values[z]):
            values[z] = np.interp(z, known, values[known])


@functools.lru_cache(maxsize=1)
def element_table() -> ElementTable:
    """Build the table once from pymatgen (cached)."""
    from pymatgen.core import Element  # host-side only, imported lazily

    n = max(ALLOWED_Z) + 1
    supported = np.zeros(n, bool)
    slot_mask = np.zeros((n, N_SLOTS), bool)
    eps = np.full((n, 3), np.nan)  # s, p, d
    valence = np.zeros(n)
    radius = np.zeros(n)
    r_d = np.zeros(n)
    chi = np.zeros(n)
    s_or_p, d_like = [], []
    for z in ALLOWED_Z:
        el = Element.from_Z(z)
        supported[z] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # noble gases: pymatgen warns and returns NaN
            x = float(el.X)
        chi[z] = x if np.isfinite(x) else 3.0
        period, group = el.row, el.group
        orbitals = el.atomic_orbitals or {}
        lanthanide = 57 <= z <= 71
        radius[z] = float(el.atomic_radius) if el.atomic_radius is not None else _NOBLE_RADIUS[z]
        if z <= 2:
            slot_mask[z, 0] = True
            valence[z] = z
            eps[z, 0] = _orbital_energy(orbitals, 1, "s")
        elif lanthanide or 3 <= group <= 12:
            slot_mask[z, [0, 4, 5, 6, 7, 8]] = True
            valence[z] = 3 if lanthanide else group
            eps[z, 0] = _orbital_energy(orbitals, period, "s")
            if group == 12:
                slot_mask[z, 1:4] = True
                eps[z, 1] = 0.45 * eps[z, 0]  # empty np level, as for the s-block below
            eps[z, 2] = _orbital_energy(orbitals, period - 1, "d")
            r_d[z] = _R_D.get(el.symbol, _R_D["La"] * (1.0 - 0.004 * (z - 57)))
            d_like.append(z)
        else:
            slot_mask[z, :4] = True
            valence[z] = group if group <= 2 else group - 10
            eps[z, 0] = _orbital_energy(orbitals, period, "s")
            eps[z, 1] = _orbital_energy(orbitals, period, "p")
            if group <= 2 and not np.isfinite(eps[z, 1]):
                # Empty p level of alkali/alkaline-earth atoms (not in the occupied-orbital
                # table): the atomic np level sits at roughly 0.45 of the ns binding energy.
                eps[z, 1] = 0.45 * eps[z, 0]
            s_or_p.append(z)
    # Missing d/s levels of d-block atoms (e.g. Pd 5s, 4f-in-core lanthanides' 5d): interpolate.
    _fill_by_neighbours(eps[:, 0], np.array(d_like))
    _fill_by_neighbours(eps[:, 2], np.array(d_like))
    onsite = np.zeros((n, N_SLOTS))
    onsite[:, 0] = eps[:, 0]
    onsite[:, 1:4] = eps[:, 1:2]
    onsite[:, 4:9] = eps[:, 2:3]
    onsite = np.where(slot_mask, onsite, 0.0)
    if not np.all(np.isfinite(onsite)):
        bad = np.argwhere(~np.isfinite(onsite))
        raise RuntimeError(f"element table has undefined on-site energies at (Z, slot) {bad}")
    return ElementTable(supported, slot_mask, onsite, valence, radius, r_d, chi)
