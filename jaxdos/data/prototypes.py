"""Prototype crystal templates: nominal geometry with labelled sites (roles), scaled to a bond.

A template is a cell in nominal units plus a role per site ("A", "B", "X", ...). A decoration maps
roles to elements and names one (role, role, distance) pair; `build` scales the lattice so the
shortest such contact has that distance. Families and their chemical rules live in
`jaxdos.data.world_families`; generation (strain, rattle, supercells, doping) in `generate`.
"""

import functools
from typing import NamedTuple

import numpy as np

__all__ = ["Template", "TEMPLATES", "template", "build", "min_pair_distance"]


class Template(NamedTuple):
    """Nominal cell: `lattice` `[3, 3]` rows, `frac` `[n, 3]`, `roles` one label per site."""

    name: str
    lattice: np.ndarray
    frac: np.ndarray
    roles: tuple[str, ...]


def _fcc(a=1.0):
    return 0.5 * a * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])


def _bcc(a=1.0):
    return 0.5 * a * np.array([[-1.0, 1, 1], [1, -1, 1], [1, 1, -1]])


def _hex(a=1.0, c=1.633):
    return np.array([[a, 0.0, 0.0], [-0.5 * a, np.sqrt(3) / 2 * a, 0.0], [0.0, 0.0, c]])


def _cubic(a=1.0):
    return a * np.eye(3)


def _T(name, lat, sites):
    frac = np.array([s[1] for s in sites], float)
    return Template(name, np.asarray(lat, float), frac, tuple(s[0] for s in sites))


def _from_spacegroup(name, sg, lat, roles, coords):
    """Primitive cell from a space group (pymatgen), roles carried through placeholder elements."""
    from pymatgen.core import Lattice, Structure

    placeholders = ["H", "He", "Li", "Be"][: len(roles)]
    s = Structure.from_spacegroup(sg, Lattice(lat), placeholders, coords).get_primitive_structure()
    back = dict(zip(placeholders, roles, strict=True))
    return Template(name, s.lattice.matrix, s.frac_coords, tuple(back[x.symbol] for x in s.species))


@functools.lru_cache(maxsize=1)
def _templates() -> dict[str, Template]:
    h3 = (1 / 3, 2 / 3)
    u = 0.305  # rutile oxygen parameter
    t = [
        _T("rocksalt", _fcc(), [("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))]),
        _T("cscl", _cubic(), [("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))]),
        _T("zincblende", _fcc(), [("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))]),
        _T("wurtzite", _hex(1.0, 1.633), [
            ("A", (*h3, 0)), ("A", (2 / 3, 1 / 3, 0.5)),
            ("X", (*h3, 0.375)), ("X", (2 / 3, 1 / 3, 0.875))]),
        _T("fluorite", _fcc(), [("A", (0, 0, 0)), ("X", (0.25,) * 3), ("X", (0.75,) * 3)]),
        _T("rutile", np.diag([1.0, 1.0, 0.64]), [
            ("A", (0, 0, 0)), ("A", (0.5, 0.5, 0.5)), ("X", (u, u, 0)), ("X", (1 - u, 1 - u, 0)),
            ("X", (0.5 + u, 0.5 - u, 0.5)), ("X", (0.5 - u, 0.5 + u, 0.5))]),
        _T("perovskite", _cubic(), [
            ("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)),
            ("X", (0.5, 0.5, 0)), ("X", (0.5, 0, 0.5)), ("X", (0, 0.5, 0.5))]),
        _T("reo3", _cubic(), [
            ("B", (0, 0, 0)), ("X", (0.5, 0, 0)), ("X", (0, 0.5, 0)), ("X", (0, 0, 0.5))]),
        _T("cuprite", _cubic(), [
            ("X", (0, 0, 0)), ("X", (0.5, 0.5, 0.5)), ("A", (0.25, 0.25, 0.25)),
            ("A", (0.75, 0.75, 0.25)), ("A", (0.75, 0.25, 0.75)), ("A", (0.25, 0.75, 0.75))]),
        _T("heusler", _fcc(), [
            ("Y", (0, 0, 0)), ("Z", (0.5, 0.5, 0.5)), ("X", (0.25,) * 3), ("X", (0.75,) * 3)]),
        _T("half_heusler", _fcc(), [("Y", (0, 0, 0)), ("Z", (0.5,) * 3), ("X", (0.25,) * 3)]),
        _T("l12", _cubic(), [
            ("A", (0, 0, 0)), ("B", (0.5, 0.5, 0)), ("B", (0.5, 0, 0.5)), ("B", (0, 0.5, 0.5))]),
        _T("a15", _cubic(), [
            ("B", (0, 0, 0)), ("B", (0.5, 0.5, 0.5)), ("A", (0.25, 0, 0.5)), ("A", (0.75, 0, 0.5)),
            ("A", (0.5, 0.25, 0)), ("A", (0.5, 0.75, 0)), ("A", (0, 0.5, 0.25)),
            ("A", (0, 0.5, 0.75))]),
        _T("alb2", _hex(1.0, 1.08), [
            ("A", (0, 0, 0)), ("B", (*h3, 0.5)), ("B", (2 / 3, 1 / 3, 0.5))]),
        _T("fcc", _fcc(), [("A", (0, 0, 0))]),
        _T("bcc", _bcc(), [("A", (0, 0, 0))]),
        _T("sc", _cubic(), [("A", (0, 0, 0))]),
        _T("hcp", _hex(1.0, 1.633), [("A", (*h3, 0.25)), ("A", (2 / 3, 1 / 3, 0.75))]),
        _T("diamond", _fcc(), [("A", (0, 0, 0)), ("A", (0.25,) * 3)]),
        _T("cdi2", _hex(1.0, 1.6), [
            ("A", (0, 0, 0)), ("X", (*h3, 0.25)), ("X", (2 / 3, 1 / 3, 0.75))]),
        _T("mos2", _hex(1.0, 3.9), [
            ("A", (*h3, 0.25)), ("A", (2 / 3, 1 / 3, 0.75)), ("X", (*h3, 0.621)),
            ("X", (*h3, 0.879)), ("X", (2 / 3, 1 / 3, 0.121)), ("X", (2 / 3, 1 / 3, 0.379))]),
        _T("nias", _hex(1.0, 1.39), [
            ("A", (0, 0, 0)), ("A", (0, 0, 0.5)), ("X", (*h3, 0.25)), ("X", (2 / 3, 1 / 3, 0.75))]),
    ]  # fmt: skip
    out = {x.name: x for x in t}
    out["spinel"] = _from_spacegroup(
        "spinel", "Fd-3m", _cubic(8.0), ["A", "B", "X"],
        [[0, 0, 0], [0.625, 0.625, 0.625], [0.387, 0.387, 0.387]])  # fmt: skip
    out["corundum"] = _from_spacegroup(
        "corundum", "R-3c", _hex(4.76, 12.99), ["A", "X"], [[0, 0, 0.352], [0.306, 0, 0.25]]
    )
    out["delafossite_layered"] = _from_spacegroup(
        "delafossite_layered",
        "R-3m",
        _hex(2.85, 14.1),
        ["A", "B", "X"],
        [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.26]],
    )  # alpha-NaFeO2 (LiCoO2) type
    return out


TEMPLATES = (
    "rocksalt", "cscl", "zincblende", "wurtzite", "fluorite", "rutile", "perovskite", "reo3",
    "cuprite", "heusler", "half_heusler", "l12", "a15", "alb2", "fcc", "bcc", "sc", "hcp",
    "diamond", "cdi2", "mos2", "nias", "spinel", "corundum", "delafossite_layered",
)  # fmt: skip


def template(name: str) -> Template:
    """The named template (built once; spinel/corundum/layered via pymatgen space groups)."""
    table = _templates()
    if name not in table:
        raise ValueError(f"name: unknown template {name!r}; expected one of {TEMPLATES}")
    return table[name]


def min_pair_distance(lattice, frac, mask_a, mask_b) -> float:
    """Shortest distance between a site in mask_a and one in mask_b, periodic images included."""
    shifts = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3)
    cart = frac @ lattice
    tvec = shifts @ lattice
    va = cart[mask_a][:, None, None, :]
    vb = cart[mask_b][None, :, None, :] + tvec[None, None]
    d = np.linalg.norm(vb - va, axis=-1)
    d = np.where(d < 1e-6, np.inf, d)  # a site is not its own neighbour
    return float(d.min())


def build(tpl: Template, species: dict, bond: tuple[str, str, float]):
    """Decorate a template and scale it so the shortest `bond[0]`-`bond[1]` contact is bond[2].

    Returns:
        (lattice `[3, 3]`, frac `[n, 3]`, symbols list[str]).
    """
    roles = np.array(tpl.roles)
    d = min_pair_distance(tpl.lattice, tpl.frac, roles == bond[0], roles == bond[1])
    lattice = tpl.lattice * (bond[2] / d)
    return lattice, tpl.frac.copy(), [species[r] for r in tpl.roles]
