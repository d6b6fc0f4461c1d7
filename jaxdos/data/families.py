"""Prototype families with chemical decoration rules, and seeded crystal generation.

`generate_crystal(seed, index)` draws one crystal from its own generator
`np.random.default_rng([seed, index])`, so any index range can be generated (and resumed)
independently and the result never depends on chunking. A family picks a template and a
charge-balanced or metallic decoration; then the cell is strained, optionally expanded into a
supercell with an isovalent alloy or a donor substitution (the donor-doped oxides are the seeds of
TCM-like "degenerate semiconductor" spectra), and rattled.

`Crystal` is the generator's own symbolic record (element symbols and a family tag, the
provenance the world files keep in their header); `to_crystals` turns a list of them into the
shared padded layout `jaxdos.structures.Crystals` through the one pymatgen conversion.
"""

from typing import NamedTuple

import numpy as np

from jaxdos.data import chemistry as ch
from jaxdos.data.prototypes import build, template
from jaxdos.structures import MAX_ATOMS, Crystals, from_structures

__all__ = ["FAMILY_WEIGHTS", "Crystal", "generate_crystal", "to_crystals"]


class Crystal(NamedTuple):
    """A generated crystal: `lattice` `[3, 3]`, `frac` `[n, 3]`, `symbols` [n], provenance."""

    lattice: np.ndarray
    frac: np.ndarray
    symbols: list
    family: str

    def to_structure(self):
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.symbols, self.frac)


def _anion(rng, charges=(-1, -2, -3)):
    names = [x for q in charges for x in ch.ANIONS[q]]
    x = ch.pick(rng, names, [ch.ANION_WEIGHTS[n] for n in names])
    return x, next(q for q in charges if x in ch.ANIONS[q])


def _binary(rng, tpl, n_a, n_x, anion_charges, cation_filter=None):
    """Charge-balanced A_nA X_nX: anion first, then a cation with the balancing charge."""
    x, qx = _anion(rng, anion_charges)
    total = -n_x * qx
    if total % n_a:
        return None
    qa = total // n_a
    pool = [c for c in ch.cations_with_charge(qa) if cation_filter is None or c in cation_filter]
    if not pool:
        return None
    a = ch.pick(rng, pool, [ch.cation_weight(c, qa) for c in pool])
    return tpl, {"A": a, "X": x}, ("A", "X", ch.bond_length(a, x, qa, qx)), {"A": qa, "X": qx}


def _rocksalt(rng):
    if rng.random() < 0.1:  # refractory carbides/nitrides: metallic rocksalts
        a, x = ch.pick(rng, ("Ti", "Zr", "Hf", "V", "Nb", "Ta", "Sc", "Cr")), ch.pick(rng, "CN")
        return "rocksalt", {"A": a, "X": x}, ("A", "X", 0.93 * ch.bond_length(a, x)), None
    return _binary(rng, "rocksalt", 1, 1, (-1, -2, -3))


def _tetrahedral(rng, tpl):
    pairs = {
        (3, -3): (("B", "Al", "Ga", "In"), ("N", "P", "As", "Sb")),
        (2, -2): (("Be", "Zn", "Cd", "Hg", "Mg"), ("O", "S", "Se", "Te")),
        (1, -1): (("Cu", "Ag"), ("Cl", "Br", "I")),
    }
    qa, qx = ch.pick(rng, list(pairs), [0.47, 0.47, 0.06])
    a, x = ch.pick(rng, pairs[(qa, qx)][0]), ch.pick(rng, pairs[(qa, qx)][1])
    return tpl, {"A": a, "X": x}, ("A", "X", ch.bond_length(a, x)), {"A": qa, "X": qx}


def _fluorite(rng):
    if rng.random() < 0.4:  # antifluorite A2X: alkali chalcogenides
        a, x = ch.pick(rng, ch.ALKALI), ch.pick(rng, ("O", "S", "Se", "Te"))
        return "fluorite", {"A": x, "X": a}, ("A", "X", ch.bond_length(a, x, 1, -2)), None
    return _binary(
        rng,
        "fluorite",
        1,
        2,
        (-1, -2),
        ("Ca", "Sr", "Ba", "Cd", "Pb", "Zr", "Hf", "Ce", "Eu", "Hg", "Sn"),
    )


def _rutile(rng):
    return _binary(rng, "rutile", 2, 4, (-1, -2),
                   ("Ti", "Sn", "Ge", "Pb", "V", "Cr", "Mn", "Ru", "Ir", "Os", "Mo", "W", "Nb",
                    "Mg", "Zn", "Fe", "Co", "Ni", "Te", "Pt", "Rh"))  # fmt: skip


def _ternary(rng, tpl, n, anion_charges, a_pool, b_radius, tolerance=None):
    """Charge-balanced A_nA B_nB X_nX with A from a_pool and B a cation of radius in b_radius."""
    x, qx = _anion(rng, anion_charges)
    options = [(a, q) for a in a_pool for q in (1, 2, 3, 4) if a in ch.cations_with_charge(q)]
    if not options:
        return None
    a, qa = ch.pick(rng, options, [ch.cation_weight(a, q) for a, q in options])
    rest = -n["X"] * qx - n["A"] * qa
    if rest <= 0 or rest % n["B"]:
        return None
    qb = rest // n["B"]
    pool = [
        b
        for b in ch.cations_with_charge(qb)
        if b != a and b_radius[0] <= ch.ionic_radius(b, qb) <= b_radius[1]
    ]
    if not pool:
        return None
    b = ch.pick(rng, pool, [ch.cation_weight(c, qb) for c in pool])
    if tolerance is not None:  # Goldschmidt tolerance factor for perovskites
        ra, rb, rx = ch.ionic_radius(a, qa), ch.ionic_radius(b, qb), ch.ionic_radius(x, qx)
        t = (ra + rx) / (np.sqrt(2) * (rb + rx))
        if not tolerance[0] <= t <= tolerance[1]:
            return None
    bond = ("B", "X", ch.bond_length(b, x, qb, qx))
    return tpl, {"A": a, "B": b, "X": x}, bond, {"A": qa, "B": qb, "X": qx}


def _perovskite(rng):
    a_pool = ("Na", "K", "Rb", "Cs", "Ca", "Sr", "Ba", "Pb", "La", "Ce", "Nd", "Sm", "Y", "Bi",
              "Gd")  # fmt: skip
    return _ternary(
        rng,
        "perovskite",
        {"A": 1, "B": 1, "X": 3},
        (-1, -2),
        a_pool,
        (0.5, 1.05),
        tolerance=(0.78, 1.08),
    )


def _spinel(rng):
    a_pool = ("Mg", "Zn", "Mn", "Fe", "Co", "Ni", "Cu", "Cd", "Ti", "Ge", "Sn", "Li", "V")
    return _ternary(rng, "spinel", {"A": 2, "B": 4, "X": 8}, (-2,), a_pool, (0.5, 1.0))


def _layered(rng):
    return _ternary(
        rng,
        "delafossite_layered",
        {"A": 1, "B": 1, "X": 2},
        (-2,),
        ("Li", "Na", "K", "Cu", "Ag"),
        (0.5, 1.0),
    )


def _corundum(rng):
    return _binary(
        rng,
        "corundum",
        2,
        3,
        (-2,),
        ("Al", "Ga", "In", "Cr", "Fe", "V", "Ti", "Sc", "Rh", "Mn", "Co", "Bi", "Y"),
    )


def _reo3(rng):
    if rng.random() < 0.4:  # WO3/MoO3 (d0) and metallic ReO3 (d1)
        b = ch.pick(rng, ("W", "Re", "Mo"), [0.55, 0.05, 0.4])
        return "reo3", {"B": b, "X": "O"}, ("B", "X", ch.bond_length(b, "O", 6, -2)), None
    b = ch.pick(rng, ("Sc", "Al", "Fe", "Ga", "In", "Cr", "Y"), [3, 3, 0.5, 3, 3, 0.5, 2])
    x = ch.pick(rng, ("F", "Cl"))
    return "reo3", {"B": b, "X": x}, ("B", "X", ch.bond_length(b, x, 3, -1)), {"B": 3, "X": -1}


def _cuprite(rng):
    a, x = ch.pick(rng, ("Cu", "Ag")), ch.pick(rng, ("O", "S", "Se"))
    return "cuprite", {"A": a, "X": x}, ("A", "X", ch.bond_length(a, x, 1, -2)), {"A": 1, "X": -2}


def _layered_mx2(rng):
    if rng.random() < 0.35:
        a = ch.pick(rng, ("Mo", "W", "Nb", "Ta", "Ti", "Zr", "Hf", "V", "Re"))
        x = ch.pick(rng, ("S", "Se", "Te"))
        return "mos2", {"A": a, "X": x}, ("A", "X", 0.95 * ch.bond_length(a, x)), None
    if rng.random() < 0.5:
        a = ch.pick(
            rng,
            ("Ti", "Zr", "Hf", "Sn", "Pt", "Pd", "Ta", "Nb", "V", "Ni"),
            [2, 3, 3, 3, 1, 0.5, 0.5, 0.5, 0.5, 0.5],
        )
        x = ch.pick(rng, ("S", "Se", "Te"))
        return "cdi2", {"A": a, "X": x}, ("A", "X", 0.95 * ch.bond_length(a, x)), None
    a = ch.pick(
        rng,
        ("Mg", "Ca", "Cd", "Zn", "Fe", "Co", "Ni", "Mn", "Pb", "Ge", "V", "Ti"),
        [3, 3, 3, 3, 0.5, 0.5, 0.5, 0.5, 2, 1, 0.3, 0.3],
    )
    x = ch.pick(rng, ("Cl", "Br", "I"))
    return "cdi2", {"A": a, "X": x}, ("A", "X", ch.bond_length(a, x, 2, -1)), {"A": 2, "X": -1}


def _nias(rng):
    a = ch.pick(rng, ("Fe", "Co", "Ni", "Mn", "Cr", "V", "Ti", "Pt", "Pd", "Rh"))
    x = ch.pick(rng, ("S", "Se", "Te", "As", "Sb", "Bi", "Sn"))
    return "nias", {"A": a, "X": x}, ("A", "X", 0.95 * ch.bond_length(a, x)), None


def _metal(rng, tpl, roles):
    """Intermetallics: distinct metals per role, contact from Slater radii (metallic bonds)."""
    elements = []
    for r in roles:
        pool = {"early": ch.EARLY_TM, "late": ch.LATE_TM, "p": ch.P_BLOCK_METALS,
                "any": ch.METALS}[r[1]]  # fmt: skip
        choices = [e for e in pool if e not in elements]
        elements.append(ch.pick(rng, choices))
    species = {r[0]: e for r, e in zip(roles, elements, strict=True)}
    a, b = roles[0][0], roles[1][0]
    return tpl, species, (a, b, ch.bond_length(species[a], species[b])), None


def _intermetallic(rng):
    kind = ch.pick(
        rng,
        ("cscl", "l12", "a15", "alb2", "heusler", "half_heusler"),
        [0.25, 0.2, 0.1, 0.1, 0.2, 0.15],
    )
    if kind == "heusler":
        return _metal(rng, kind, (("X", "late"), ("Y", "early"), ("Z", "p")))
    if kind == "half_heusler":
        return _metal(rng, kind, (("X", "late"), ("Y", "early"), ("Z", "p")))
    if kind == "cscl":
        return _metal(rng, kind, (("A", "any"), ("X", "any")))
    if kind == "l12":
        return _metal(rng, kind, (("A", "any"), ("B", "any")))
    if kind == "alb2":
        a = ch.pick(rng, ("Mg", "Al", "Ti", "Zr", "Hf", "Nb", "Ta", "Sc", "Y", "Ca", "Sr"))
        b = ch.pick(rng, ("B", "Si", "Ga", "Ge", "Al"))
        return "alb2", {"A": a, "B": b}, ("A", "B", ch.bond_length(a, b)), None
    return _metal(rng, kind, (("A", "early"), ("B", "p")))


def _elemental(rng):
    kind = ch.pick(rng, ("fcc", "bcc", "hcp", "diamond", "sc"), [0.3, 0.3, 0.28, 0.07, 0.05])
    pool = {"diamond": ("C", "Si", "Ge", "Sn"), "sc": ("Po" if False else "Sb", "Bi", "Te", "As")}
    a = ch.pick(rng, pool.get(kind, ch.METALS))
    return kind, {"A": a}, ("A", "A", ch.bond_length(a, a)), None


# Family -> (weight, rule). Weights tuned so metals : gapped ~ 1 : 2.3 (see the data card).
_FAMILIES = {
    "rocksalt": (0.12, _rocksalt),
    "zincblende": (0.06, lambda r: _tetrahedral(r, "zincblende")),
    "wurtzite": (0.05, lambda r: _tetrahedral(r, "wurtzite")),
    "cscl_ionic": (0.02, lambda r: _binary(r, "cscl", 1, 1, (-1,), ("Cs", "Rb", "Tl", "K"))),
    "fluorite": (0.07, _fluorite),
    "rutile": (0.07, _rutile),
    "perovskite": (0.12, _perovskite),
    "spinel": (0.04, _spinel),
    "layered_abx2": (0.04, _layered),
    "corundum": (0.04, _corundum),
    "reo3": (0.03, _reo3),
    "cuprite": (0.012, _cuprite),
    "layered_mx2": (0.06, _layered_mx2),
    "nias": (0.01, _nias),
    "intermetallic": (0.05, _intermetallic),
    "elemental": (0.04, _elemental),
}
FAMILY_WEIGHTS = {k: v[0] for k, v in _FAMILIES.items()}


def _supercell(lattice, frac, symbols, axis):
    """Double the cell along one lattice vector."""
    lat = lattice.copy()
    lat[axis] *= 2
    f1, f2 = frac.copy(), frac.copy()
    f1[:, axis] /= 2
    f2[:, axis] = f2[:, axis] / 2 + 0.5
    return lat, np.concatenate([f1, f2]), list(symbols) + list(symbols)


def _substitute(rng, symbols, charges, species, donor: bool, family_is_metallic: bool):
    """Replace one cation site: by a same-charge element (alloy) or a +1 donor (doping)."""
    cation_roles = [r for r, q in (charges or {}).items() if q > 0]
    if cation_roles:
        role = ch.pick(rng, cation_roles)
        host, q = species[role], charges[role]
        pool = [c for c in ch.cations_with_charge(q + 1 if donor else q) if c != host]
        if not pool:
            return None
        r0 = ch.ionic_radius(host, q)
        qn = q + 1 if donor else q
        pool = sorted(pool, key=lambda c: abs(ch.ionic_radius(c, qn) - r0))[:4]
        new = ch.pick(rng, pool, [ch.cation_weight(c, qn) for c in pool])
    elif not donor and family_is_metallic:
        host = ch.pick(rng, sorted(set(symbols) & set(ch.METALS)) or [None])
        if host is None:
            return None
        new = ch.pick(rng, [m for m in ch.METALS if m != host])
    else:
        return None
    sites = [i for i, s in enumerate(symbols) if s == host]
    out = list(symbols)
    out[sites[int(rng.integers(len(sites)))]] = new
    return out


def generate_crystal(seed: int, index: int, max_atoms: int = MAX_ATOMS) -> Crystal:
    """The `index`-th crystal of the world with this seed (deterministic, order-independent)."""
    rng = np.random.default_rng([seed, index])
    names = list(_FAMILIES)
    weights = [_FAMILIES[n][0] for n in names]
    for _ in range(100):
        family = ch.pick(rng, names, weights)
        dec = _FAMILIES[family][1](rng)
        if dec is None:
            continue
        tpl, species, bond, charges = dec
        lattice, frac, symbols = build(template(tpl), species, bond)
        tag = family
        u = rng.random()
        if u < 0.30 and 2 * len(symbols) <= max_atoms:
            donor = u < 0.025 and charges is not None and species.get("X") == "O"
            lattice, frac, sup = _supercell(lattice, frac, symbols, int(rng.integers(3)))
            sub = _substitute(
                rng, sup, charges, species, donor, family in ("intermetallic", "elemental")
            )
            symbols, tag = sup, family + "+supercell"
            if sub is not None:
                symbols, tag = sub, family + ("+donor" if donor else "+alloy")
        if len(symbols) > max_atoms:
            continue
        # Strain: isotropic scale (radii are approximate) and, sometimes, a small shear.
        strain = np.eye(3) * rng.uniform(0.97, 1.05)
        if rng.random() < 0.4:
            e = rng.normal(0, 0.015, (3, 3))
            strain = strain + 0.5 * (e + e.T)
        lattice = lattice @ strain
        if rng.random() < 0.5:  # rattle: thermal-like displacements break exact degeneracies
            cart = frac @ lattice + rng.normal(0, 0.03, frac.shape)
            frac = cart @ np.linalg.inv(lattice)
        frac = frac % 1.0
        if _min_distance(lattice, frac) < max(1.0, 0.6 * bond[2]):
            continue
        return Crystal(lattice, frac, symbols, tag)
    raise RuntimeError(f"no valid crystal after 100 draws for seed {seed}, index {index}")


def _min_distance(lattice, frac):
    shifts = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cart = frac @ lattice
    d = cart[None, :, None] + (shifts @ lattice)[None, None] - cart[:, None, None]
    d = np.linalg.norm(d, axis=-1)
    d[np.arange(len(cart)), np.arange(len(cart)), 13] = np.inf  # shift (0,0,0) is index 13
    return float(d.min())


def to_crystals(crystals: list[Crystal], max_atoms: int = MAX_ATOMS) -> Crystals:
    """The padded layout of generated crystals (raises if one has more than `max_atoms` atoms)."""
    return from_structures([c.to_structure() for c in crystals], max_atoms)
