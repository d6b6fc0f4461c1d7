"""Host side of the tight-binding oracle: validation, neighbour lists, k-grids, packing.

Everything here is numpy. A crystal becomes a `Prepared` (orbital list, bond list with periodic
images, the time-reversal-reduced Gamma-centred k-grid); `plan_jobs`/`pack_jobs` pad them to one
static shape (sizes rounded up to a few buckets) so the jitted oracle compiles once per bucket.
A crystal's k-list may span several jobs; the DOS is linear in the k weights.
"""

import math
from typing import NamedTuple

import numpy as np

from jaxdos.kernels.oracle_params import N_SLOTS, element_table
from jaxdos.structures import is_allowed

__all__ = [
    "PAD_ONSITE",
    "BUCKETS",
    "Bucket",
    "Prepared",
    "validate_inputs",
    "kgrid",
    "prepare_crystals",
    "bucket_for",
    "plan_jobs",
    "pack_jobs",
]

PAD_ONSITE = 500.0  # eV: padding orbitals sit far above any window, never occupied


class Prepared(NamedTuple):
    """One crystal ready for the oracle (unpadded). O orbitals, E bonds, I images, Q k-points."""

    onsite: np.ndarray  # [O]
    vec: np.ndarray  # [E, 3]
    d0: np.ndarray  # [E]
    rd: np.ndarray  # [E, 2]
    scale: np.ndarray  # [E] coordination renormalisation of the hoppings
    src: np.ndarray  # [E, 9] orbital index or -1
    dst: np.ndarray  # [E, 9]
    img: np.ndarray  # [E]
    images: np.ndarray  # [I, 3]
    kpts: np.ndarray  # [Q, 3]
    kweights: np.ndarray  # [Q]
    n_elec: float
    n_atoms: int

    @property
    def n_orbitals(self) -> int:
        return int(self.onsite.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.vec.shape[0])


def kgrid(lattice: np.ndarray, k_density: float) -> tuple[np.ndarray, np.ndarray]:
    """Gamma-centred MP grid with n_i = ceil(k_density |b_i|), reduced by time reversal k ~ -k.

    Returns:
        (kpts `[Q, 3]` fractional, weights `[Q]` summing to 1).
    """
    recip = np.linalg.inv(lattice).T  # rows b_i with a_i . b_j = delta_ij
    n = np.maximum(1, np.ceil(k_density * np.linalg.norm(recip, axis=1) - 1e-6)).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(x) for x in n), indexing="ij"), -1).reshape(-1, 3)
    neg = (-grid) % n
    code = lambda g: (g[:, 0] * n[1] + g[:, 1]) * n[2] + g[:, 2]
    c, cn = code(grid), code(neg)
    keep = c <= cn
    weights = np.where(c[keep] == cn[keep], 1.0, 2.0)
    return grid[keep] / n, weights / weights.sum()


def validate_inputs(atomic_numbers, frac_coords, lattice, num_atoms, max_atoms: int):
    """Check shapes, ranges and finiteness; returns float64/int64 numpy copies.

    Raises:
        ValueError: naming the field (and crystal index) at fault and the allowed range.
    """
    z = np.asarray(atomic_numbers)
    f = np.asarray(frac_coords, dtype=np.float64)
    lat = np.asarray(lattice, dtype=np.float64)
    n = np.asarray(num_atoms)
    if z.ndim != 2:
        raise ValueError(f"atomic_numbers: expected [M, A], got shape {z.shape}")
    m, a = z.shape
    if f.shape != (m, a, 3):
        raise ValueError(f"frac_coords: expected shape {(m, a, 3)}, got {f.shape}")
    if lat.shape != (m, 3, 3):
        raise ValueError(f"lattice: expected shape {(m, 3, 3)}, got {lat.shape}")
    if n.shape != (m,):
        raise ValueError(f"num_atoms: expected shape {(m,)}, got {n.shape}")
    for i in range(m):
        ni = int(n[i])
        if not 1 <= ni <= min(a, max_atoms):
            raise ValueError(f"crystal {i}: num_atoms {ni} outside [1, {min(a, max_atoms)}]")
        zi = z[i, :ni]
        bad = [int(x) for x in zi[~is_allowed(zi)]]
        if bad:
            raise ValueError(
                f"crystal {i}: atomic_numbers {bad} unsupported (Z in 1..83, not Tc/Pm)"
            )
        if not np.all(np.isfinite(f[i, :ni])):
            raise ValueError(f"crystal {i}: frac_coords contain NaN or inf")
        li = lat[i]
        if not np.all(np.isfinite(li)):
            raise ValueError(f"crystal {i}: lattice contains NaN or inf")
        lengths = np.linalg.norm(li, axis=1)
        vol = abs(np.linalg.det(li))
        if lengths.min() < 1.0 or lengths.max() > 200.0 or vol < 0.02 * np.prod(lengths):
            raise ValueError(
                f"crystal {i}: lattice singular or degenerate (lengths {lengths.round(3)} must be "
                f"in [1, 200] A, volume {vol:.3g} A^3 >= 2% of their product)"
            )
    return z.astype(np.int64), f, lat, n.astype(np.int64)


def _neighbours(cart, lattice, cutoff):
    """All (i, j, T) with |r_j + T - r_i| < cutoff[i, j], excluding i == j at T = 0."""
    recip = np.linalg.inv(lattice).T
    reach = np.ceil(cutoff.max() * np.linalg.norm(recip, axis=1)).astype(int) + 1
    rng = [np.arange(-r, r + 1) for r in reach]
    shifts = np.stack(np.meshgrid(*rng, indexing="ij"), -1).reshape(-1, 3)
    tvec = shifts @ lattice  # [I, 3]
    vec = cart[None, :, None, :] + tvec[None, None] - cart[:, None, None, :]  # [A, A, I, 3]
    dist = np.linalg.norm(vec, axis=-1)
    zero = np.all(shifts == 0, axis=1)
    self_mask = np.eye(len(cart), dtype=bool)[:, :, None] & zero[None, None, :]
    within = (dist < cutoff[:, :, None]) & ~self_mask
    i, j, s = np.nonzero(within)
    dmin = np.where(self_mask, np.inf, dist).min()
    return i, j, shifts[s], vec[i, j, s], dmin


def prepare_crystals(atomic_numbers, frac_coords, lattice, num_atoms, cfg) -> list[Prepared]:
    """Validate and prepare M crystals (see `Prepared`)."""
    z, f, lat, n = validate_inputs(atomic_numbers, frac_coords, lattice, num_atoms, cfg.max_atoms)
    table = element_table()
    out = []
    for c in range(z.shape[0]):
        nc = int(n[c])
        zc = z[c, :nc]
        cart = (f[c, :nc] % 1.0) @ lat[c]
        radius = table.radius[zc]
        d0_pair = radius[:, None] + radius[None, :]
        i, j, shifts, vec, dmin = _neighbours(cart, lat[c], cfg.s_cut * d0_pair)
        if dmin < cfg.min_distance:
            raise ValueError(
                f"crystal {c}: frac_coords put two atoms {dmin:.3f} A apart "
                f"(minimum {cfg.min_distance} A, periodic images included)"
            )
        mask = table.slot_mask[zc]  # [A, 9]
        slot_index = np.full(mask.shape, -1, np.int64)
        slot_index[mask] = np.arange(mask.sum())
        # Envelope-weighted coordination and electronegativity environment (see OracleConfig).
        dist = np.linalg.norm(vec, axis=-1)
        x = np.clip((dist / d0_pair[i, j] - cfg.s_on) / (cfg.s_cut - cfg.s_on), 0.0, 1.0)
        w = 0.5 * (1.0 + np.cos(np.pi * x))
        coord = np.maximum(np.bincount(i, weights=w, minlength=nc), cfg.z_ref)
        scale = (cfg.z_ref**2 / (coord[i] * coord[j])) ** (0.5 * cfg.z_exponent)
        chi = table.chi[zc]
        dchi = np.bincount(i, weights=w * (chi[j] - chi[i]), minlength=nc)
        shift = cfg.madelung * dchi / np.maximum(np.bincount(i, weights=w, minlength=nc), 1e-6)
        onsite = (table.onsite[zc] + shift[:, None])[mask]
        # Images: the zero translation first (on-site terms live there), then the used ones.
        uniq, img = np.unique(
            np.concatenate([np.zeros((1, 3), int), shifts]), axis=0, return_inverse=True
        )
        img = np.asarray(img).reshape(-1)
        zero_row = img[0]
        perm = np.arange(len(uniq))
        perm[[0, zero_row]] = perm[[zero_row, 0]]
        inv = np.argsort(perm)
        images = uniq[perm]
        img = inv[img[1:]]
        kpts, kw = kgrid(lat[c], cfg.k_density)
        out.append(
            Prepared(
                onsite=onsite,
                vec=vec,
                d0=d0_pair[i, j],
                rd=np.stack([table.r_d[zc][i], table.r_d[zc][j]], -1),
                scale=scale,
                src=slot_index[i],
                dst=slot_index[j],
                img=img,
                images=images.astype(np.float64),
                kpts=kpts,
                kweights=kw,
                n_elec=float(table.valence[zc].sum()),
                n_atoms=nc,
            )
        )
    return out


class Bucket(NamedTuple):
    """Static padded sizes of one jitted call: orbitals, bonds, images, k-points per job, jobs."""

    o: int
    e: int
    t: int
    k: int
    c: int


# Sized so a call holds a few million complex entries; Q per job falls as O grows (small cells
# need many k-points but few orbitals, large cells the opposite), long k-lists are split in jobs.
BUCKETS = (
    Bucket(o=8, e=96, t=128, k=256, c=16),
    Bucket(o=16, e=192, t=128, k=128, c=16),
    Bucket(o=32, e=384, t=128, k=64, c=16),
    Bucket(o=64, e=768, t=128, k=16, c=16),
    Bucket(o=128, e=1536, t=128, k=8, c=8),
    Bucket(o=192, e=2304, t=192, k=4, c=4),
)


def _pow2(x: int) -> int:
    return 2 ** math.ceil(math.log2(max(x, 1)))


def bucket_for(p: Prepared) -> Bucket:
    """The smallest static bucket that holds the crystal (a dynamic one beyond the table)."""
    for b in BUCKETS:
        if p.n_orbitals <= b.o and p.n_edges <= b.e and len(p.images) <= b.t:
            return b
    o = _pow2(p.n_orbitals)
    return Bucket(o=o, e=_pow2(p.n_edges), t=_pow2(len(p.images)), k=max(8, 2048 // o), c=2)


def plan_jobs(preps: list[Prepared]):
    """Split crystals into (crystal, k-slice) jobs and group them into full bucket chunks.

    Returns:
        list of (bucket, jobs) with at most bucket.c jobs, each job `(crystal_index, slice)`.
    """
    by_bucket: dict[Bucket, list] = {}
    for c, p in enumerate(preps):
        b = bucket_for(p)
        nk = len(p.kpts)
        for start in range(0, nk, b.k):
            by_bucket.setdefault(b, []).append((c, slice(start, min(start + b.k, nk))))
    plans = []
    for b, jobs in by_bucket.items():
        plans += [(b, jobs[i : i + b.c]) for i in range(0, len(jobs), b.c)]
    return plans


def pack_jobs(preps: list[Prepared], jobs, bucket: Bucket):
    """Pad one chunk of jobs to the bucket's static shape; returns the eigenvalue stage's args.

    Missing jobs repeat the first (results discarded). Padded bonds point at the dump orbital,
    padded orbitals sit at PAD_ONSITE, padded images are never referenced and padded k-points
    are dropped by the caller: each contributes exactly nothing.
    """
    jobs = list(jobs) + [jobs[0]] * (bucket.c - len(jobs))
    c, o, e, t, k = bucket.c, bucket.o, bucket.e, bucket.t, bucket.k
    onsite = np.full((c, o), PAD_ONSITE, np.float32)
    vec = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (c, e, 1))
    d0 = np.ones((c, e), np.float32)
    rd = np.zeros((c, e, 2), np.float32)
    scale = np.zeros((c, e), np.float32)
    src = np.full((c, e, N_SLOTS), o, np.int32)
    dst = np.full((c, e, N_SLOTS), o, np.int32)
    img = np.zeros((c, e), np.int32)
    images = np.zeros((c, t, 3), np.float32)
    kpts = np.zeros((c, k, 3), np.float32)
    n_orb = np.ones((c,), np.int32)
    n_k = np.ones((c,), np.int32)
    for b, (ci, ks) in enumerate(jobs):
        p = preps[ci]
        no, ne, nt = p.n_orbitals, p.n_edges, len(p.images)
        onsite[b, :no] = p.onsite
        vec[b, :ne] = p.vec
        d0[b, :ne] = p.d0
        rd[b, :ne] = p.rd
        scale[b, :ne] = p.scale
        src[b, :ne] = np.where(p.src >= 0, p.src, o)
        dst[b, :ne] = np.where(p.dst >= 0, p.dst, o)
        img[b, :ne] = p.img
        images[b, :nt] = p.images
        kpts[b, : ks.stop - ks.start] = p.kpts[ks]
        n_orb[b], n_k[b] = no, ks.stop - ks.start
    return onsite, vec, d0, rd, scale, src, dst, img, images, kpts, n_orb, n_k
