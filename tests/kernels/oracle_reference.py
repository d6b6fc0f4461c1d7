"""Plain numpy reference of the tight-binding oracle, used only by tests.

Written independently of `jaxdos.kernels.oracle`: its own neighbour search (explicit image loop),
Slater-Koster blocks by rotating bond-frame sigma/pi/delta orbitals (explicit orthonormal frame,
no closed-form projector algebra), dense Bloch matrices in the atom-position gauge
(H_ab(k) = sum_T t_ab(T) exp(2 pi i k.(T + x_b - x_a)), a different gauge from the oracle's, same
spectrum), a full (not time-reversal reduced) k-grid, per-level exact kernel integrals.
Shares only the element table and the numerical constants (they define the model).
"""

import numpy as np
from scipy.special import ndtr

from jaxdos.kernels.grid import BIN_WIDTH, bin_edges
from jaxdos.kernels.oracle import OracleConfig
from jaxdos.kernels.oracle_params import ETA, HBAR2_OVER_M, element_table

_Q = {  # d orbitals as normalised quadratic forms, slot order xy, yz, zx, x2-y2, 3z2-r2
    0: np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]) / np.sqrt(2),
    1: np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]]) / np.sqrt(2),
    2: np.array([[0, 0, 1], [0, 0, 0], [1, 0, 0]]) / np.sqrt(2),
    3: np.array([[1, 0, 0], [0, -1, 0], [0, 0, 0]]) / np.sqrt(2),
    4: np.array([[-1, 0, 0], [0, -1, 0], [0, 0, 2]]) / np.sqrt(6),
}
_L = [0, 1, 1, 1, 2, 2, 2, 2, 2]


def _frame(u):
    a = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(u, a)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1)


def _components(slot, u, e1, e2):
    """Bond-frame components of orbital `slot`: dict m -> list of amplitudes (|m| = 0, 1, 2)."""
    if slot == 0:
        return {0: [1.0], 1: [0.0, 0.0], 2: [0.0, 0.0]}
    if slot <= 3:
        b = np.eye(3)[slot - 1]
        return {0: [b @ u], 1: [b @ e1, b @ e2], 2: [0.0, 0.0]}
    q = _Q[slot - 4]
    frob = lambda s: float(np.sum(q * s))
    sig = (3 * np.outer(u, u) - np.eye(3)) / np.sqrt(6)
    pis = [(np.outer(u, e) + np.outer(e, u)) / np.sqrt(2) for e in (e1, e2)]
    dels = [
        (np.outer(e1, e1) - np.outer(e2, e2)) / np.sqrt(2),
        (np.outer(e1, e2) + np.outer(e2, e1)) / np.sqrt(2),
    ]
    return {0: [frob(sig)], 1: [frob(p) for p in pis], 2: [frob(d) for d in dels]}


def _v(l1, l2, m, d, rd1, rd2):
    """Harrison two-centre integral V_{l1 l2 m} with l1 <= l2 (rd of the d-orbital atoms)."""
    names = {(0, 0): "ss", (0, 1): "sp", (1, 1): "pp", (0, 2): "sd", (1, 2): "pd", (2, 2): "dd"}
    key = f"{names[(l1, l2)]}_{['sigma', 'pi', 'delta'][m]}"
    eta = ETA.get(key, 0.0)
    if l2 < 2:
        return eta * HBAR2_OVER_M / d**2
    if l1 < 2:
        return eta * HBAR2_OVER_M * rd2**1.5 / d**3.5
    return eta * HBAR2_OVER_M * (rd1 * rd2) ** 1.5 / d**5


def sk_element(slot_a, slot_b, vec, rd_a=0.0, rd_b=0.0):
    """<a on atom 0 | H | b on atom at vec> without envelope or clamp (for table checks)."""
    d = np.linalg.norm(vec)
    u = vec / d
    e1, e2 = _frame(u)
    la, lb = _L[slot_a], _L[slot_b]
    ca, cb = _components(slot_a, u, e1, e2), _components(slot_b, u, e1, e2)
    total = 0.0
    for m in range(min(la, lb) + 1):
        if la <= lb:
            v = _v(la, lb, m, d, rd_a, rd_b)
        else:  # parity: swap the orbitals' roles and reverse the bond
            v = (-1) ** (la + lb) * _v(lb, la, m, d, rd_b, rd_a)
        total += v * sum(x * y for x, y in zip(ca[m], cb[m], strict=True))
    return total


def reference_dos(z, frac, lattice, cfg: OracleConfig | None = None, full_output=False):
    """DOS `[256]` and E_F of one crystal (unpadded z `[n]`, frac `[n, 3]`, lattice `[3, 3]`)."""
    cfg = cfg or OracleConfig()
    t = element_table()
    z = np.asarray(z)
    n = len(z)
    frac = np.asarray(frac, float) % 1.0
    lattice = np.asarray(lattice, float)
    cart = frac @ lattice
    orbs = [(a, s) for a in range(n) for s in range(9) if t.slot_mask[z[a], s]]
    index = {o: i for i, o in enumerate(orbs)}
    rad = t.radius[z]
    bonds = []  # (a, b, T, vec, d0, w)
    reach = 4
    for a in range(n):
        for b in range(n):
            d0 = rad[a] + rad[b]
            for tr in np.ndindex(2 * reach + 1, 2 * reach + 1, 2 * reach + 1):
                tr = np.array(tr) - reach
                vec = cart[b] + tr @ lattice - cart[a]
                dist = np.linalg.norm(vec)
                if (a == b and not tr.any()) or dist >= cfg.s_cut * d0:
                    continue
                x = min(max((dist / d0 - cfg.s_on) / (cfg.s_cut - cfg.s_on), 0.0), 1.0)
                bonds.append((a, b, tr, vec, d0, 0.5 * (1 + np.cos(np.pi * x))))
    coord = np.zeros(n)
    dchi = np.zeros(n)
    for a, b, _, _, _, w in bonds:
        coord[a] += w
        dchi[a] += w * (t.chi[z[b]] - t.chi[z[a]])
    shift = cfg.madelung * dchi / np.maximum(coord, 1e-6)
    coord = np.maximum(coord, cfg.z_ref)
    recip = np.linalg.inv(lattice).T
    nk = np.maximum(1, np.ceil(cfg.k_density * np.linalg.norm(recip, axis=1) - 1e-6)).astype(int)
    kpts = np.array(list(np.ndindex(*nk))) / nk
    no = len(orbs)
    hk = np.zeros((len(kpts), no, no), complex)
    for a, s in orbs:
        hk[:, index[(a, s)], index[(a, s)]] += t.onsite[z[a], s] + shift[a]
    for a, b, tr, vec, d0, w in bonds:
        dist = np.linalg.norm(vec)
        vec_eff = vec * max(dist, cfg.d_min_ratio * d0) / dist
        scale = w * (cfg.z_ref**2 / (coord[a] * coord[b])) ** (0.5 * cfg.z_exponent)
        phase = np.exp(2j * np.pi * kpts @ (tr + frac[b] - frac[a]))
        for sa in range(9):
            if not t.slot_mask[z[a], sa]:
                continue
            for sb in range(9):
                if not t.slot_mask[z[b], sb]:
                    continue
                v = sk_element(sa, sb, vec_eff, t.r_d[z[a]], t.r_d[z[b]]) * scale
                hk[:, index[(a, sa)], index[(b, sb)]] += v * phase
    eigs = np.linalg.eigvalsh(hk)
    flat = np.sort(eigs.ravel())
    n_elec = t.valence[z].sum()
    per_level = 2.0 / len(kpts)
    filled = n_elec / per_level  # number of fully occupied levels (maybe fractional)
    homo = flat[int(np.ceil(filled - 1e-6)) - 1]
    if abs(filled - round(filled)) > 1e-6 or flat[int(round(filled))] - homo < 1e-5:
        efermi = homo
    else:
        efermi = homo + min(0.5 * (flat[int(round(filled))] - homo), 3.0)
    edges = efermi + bin_edges()
    tr_ = 3.0
    lo = ndtr(-tr_)
    x = np.clip((edges[None, :] - flat[:, None]) / cfg.sigma, -tr_, tr_)
    cdf = (ndtr(x) - lo) / (1 - 2 * lo)
    dos = per_level * np.diff(cdf, axis=1).sum(0) / BIN_WIDTH / n
    if full_output:
        below = per_level * np.sum(cdf[:, 0]) / n  # states per atom below the window
        return dos, efermi, eigs, below
    return dos, efermi
