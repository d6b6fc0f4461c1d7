"""Periodic radius graph with static shapes (MatterGen's `radius_graph_pbc` + GemNet edge handling).

Ground floor: shared by CDOSGen (`jaxdos.crystal.graph` re-exports it) and the DOS predictor
(`jaxdos.predictor`, which reads the edges and ignores the triplets). Imports only
`jaxdos.structures` and `jaxdos.typing`.

Everything is computed inside `jit` with shapes fixed by a `GraphConfig`:

1. Each crystal's own image box: per lattice direction k, MatterGen's count
   rep_gk = min(ceil(cutoff * |a_j x a_k| / V), max_cell_images_per_dim), so the box holds
   I_g = prod_k (2 rep_gk + 1) images, ordered like `torch.cartesian_prod(range(-r, r + 1) x 3)`
   (first axis slowest).
2. Candidates `[N, J]` of every centre-atom slot i, J = `candidates_per_atom`: candidate c is
   neighbour j = c // I_g of the centre's crystal (n_g atoms) at image c % I_g of that crystal's
   box, so candidates are j-major, then image; one is kept iff j < n_g and 1e-4 < d^2 <= cutoff^2.
   A crystal needs n_g * I_g candidates (`GraphStats.candidates_needed`).
3. The `max_neighbors` nearest per centre (`lax.top_k`: ties go to the lower candidate index, i.e.
   lower j, then earlier image, so the cut is deterministic; torch's unstable sort is not).
4. GemNet's `reorder_symmetric_edges`: keep s < t, or s == t with a lexicographically negative
   offset, then append reversed copies (offset and unit vector negated).  The first `E // 2` slots
   hold the kept edges, the last `E // 2` their reverses, so `id_swap[e] = (e + E // 2) mod E`.
5. Triplets as GemNet-T's `get_triplets` (every b->a for each c->a, b->a != c->a; parallel periodic
   copies stay distinct), stored densely `[E, T]` with T = `max_in_degree`, the same padded layout
   as MatterGen's efficient bilinear (its Kmax).

Why per-crystal boxes give MatterGen's graph although MatterGen enumerates one box for the whole
batch (its per-direction count maxed over the batch, then capped): with wrapped coordinates the
fractional difference df_k of two atoms has |df_k| < 1, so an image with |n_k| > rep_gk lies at
least |n_k + df_k| h_k > rep_gk h_k >= cutoff away (h_k = V / |a_j x a_k|, the spacing of the
lattice planes) when the cap does not bind; where it binds for crystal g, the batch box is capped
at the same value. The images of the batch box outside a crystal's own box therefore never hold a
neighbour, and the candidates that remain keep their relative order (j, then image), so the
neighbour sets and the top_k tie-break are the same. The builder used to enumerate that dense
batch box, `[G, A, A * I]` candidates; `experiments.reference.dense_graph` keeps it as the
reference (tests/crystal/test_graph_equivalence.py, experiments/bench_graph.py).

Fractional coordinates are wrapped to [0, 1) before anything else (a no-op on MatterGen's data),
so integer image shifts of single atoms leave the graph unchanged.

Edge convention (MatterGen): source s is the neighbour image, target t the centre;
`vec = V_st = (x_t - x_s - n @ L) / |...|` points from the source image to the target; messages
aggregate over `idx_t`.  Padded edges and triplets have mask False, index 0, distance = cutoff
(zero envelope) and a finite unit vector; consumers multiply by the masks so they add exactly zero.

Overflow: `stats` holds what the batch needed; `overflow` is True when any budget was too small
(the graph is then truncated and must not be used).  `build_graph_checked` re-runs with budgets
grown to fit; jitted callers read `overflow` and retry on the host.
"""

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array

R = TypeVar("R")

__all__ = [
    "GraphConfig",
    "GraphStats",
    "PeriodicGraph",
    "build_graph",
    "build_graph_jit",
    "build_graph_checked",
    "blind_growth",
    "grow_budgets",
    "presize_budgets",
    "retry_on_overflow",
    "image_offsets",
]


# Fields of older GraphConfig JSON that no longer exist (saved model directories, checkpoint
# budgets): `image_budget` (images per direction of the dense batch box) has no counterpart in
# `candidates_per_atom`, which takes its default and grows on overflow like every budget.
_RETIRED_FIELDS = ("image_budget",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GraphConfig:
    """Cutoffs (MatterGen semantics) and static budgets (ours) of the periodic graph.

    Attributes:
        cutoff: radius in Angstrom (MatterGen: 7.0).
        max_neighbors: nearest neighbours kept per centre atom before symmetrisation (50).
        max_cell_images_per_dim: MatterGen's cap on images per lattice direction (5).
        max_atoms_per_crystal: A, the most atoms of one crystal; a batch with more overflows (the
            denoiser's input check rejects it before).
        candidates_per_atom: J, (neighbour atom, image) candidates enumerated per centre-atom slot;
            a crystal of n atoms whose own image box holds I images needs n * I (at most
            A * (2 * max_cell_images_per_dim + 1)^3); a batch needing more overflows and is
            re-run with a larger budget.
        edges_per_atom: directed edges (after symmetrisation) per atom slot; E = N * this, even.
        max_in_degree: T, incoming edges per atom (and triplets per edge) budget.
    """

    cutoff: float = 7.0
    max_neighbors: int = 50
    max_cell_images_per_dim: int = 5
    max_atoms_per_crystal: int = 20
    candidates_per_atom: int = 2048
    edges_per_atom: int = 64
    max_in_degree: int = 64

    def __post_init__(self):
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {self.cutoff}")
        for name in (
            "max_neighbors",
            "max_cell_images_per_dim",
            "max_atoms_per_crystal",
            "candidates_per_atom",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.edges_per_atom < 2 or self.edges_per_atom % 2:
            raise ValueError(f"edges_per_atom must be even and >= 2, got {self.edges_per_atom}")
        if self.max_in_degree < 1:
            raise ValueError(f"max_in_degree must be >= 1, got {self.max_in_degree}")

    @property
    def candidate_bound(self) -> int:
        """The most candidates one crystal can need, A (2 max_cell_images_per_dim + 1)^3: a
        candidate budget this large never overflows."""
        return self.max_atoms_per_crystal * (2 * self.max_cell_images_per_dim + 1) ** 3

    @staticmethod
    def upgrade_json(d: dict) -> dict:
        """An older GraphConfig JSON in today's fields (`modeldir.config_from_json` calls it).

        Drops the retired `image_budget`; `candidates_per_atom`, if absent, takes its default.
        """
        return {k: v for k, v in d.items() if k not in _RETIRED_FIELDS}


class GraphStats(NamedTuple):
    """What a batch needed (int32 scalars), to compare with the budgets."""

    candidates_needed: Array  # max over crystals of n_g * I_g (atoms x own-box images, capped)
    half_edges_needed: Array  # kept (s<t) edges before appending reverses
    in_degree_needed: Array  # max incoming edges of any atom
    atoms_needed: Array | int = 0  # most atoms in one crystal


class PeriodicGraph(NamedTuple):
    """Padded periodic graph (E edges, T triplet slots per edge).

    Fields:
        idx_s, idx_t: `[E]` int32 source (neighbour) and target (centre) atoms.
        cell_offsets: `[E, 3]` int32 image n of the source (x_s + n @ L).
        vec: `[E, 3]` unit vector from the source image to the target (MatterGen's V_st).
        dist: `[E]` edge length in Angstrom.
        edge_mask: `[E]` bool.
        edge_graph: `[E]` int32 crystal of each edge.
        id_swap: `[E]` int32 index of the reverse edge.
        trip_ba: `[E, T]` int32 incoming edges b->a of each output edge c->a (axis 0).
        trip_mask: `[E, T]` bool.
        num_edges: `[G]` int32 edges per crystal (after symmetrisation).
        stats: GraphStats.
        overflow: `[]` bool, True when any budget was exceeded.
    """

    idx_s: Array
    idx_t: Array
    cell_offsets: Array
    vec: Array
    dist: Array
    edge_mask: Array
    edge_graph: Array
    id_swap: Array
    trip_ba: Array
    trip_mask: Array
    num_edges: Array
    stats: GraphStats
    overflow: Array


def image_offsets(r: int) -> np.ndarray:
    """Integer image offsets `[(2r+1)^3, 3]`, `torch.cartesian_prod` order (first axis slowest)."""
    rng = range(-r, r + 1)
    return np.array(list(itertools.product(rng, rng, rng)), dtype=np.int32).reshape(-1, 3)


def _inverse_spacings(lattice: Array) -> Array:
    """1 / h_k = |a_j x a_k| / |V| per crystal and lattice direction, `[G, 3]`."""
    a0, a1, a2 = lattice[:, 0], lattice[:, 1], lattice[:, 2]
    crosses = jnp.stack([jnp.cross(a1, a2), jnp.cross(a2, a0), jnp.cross(a0, a1)], axis=1)
    vol = jnp.sum(a0 * crosses[:, 0], axis=-1)
    return jnp.linalg.norm(crosses / vol[:, None, None], axis=-1)


def _box_sizes(lattice: Array, config: GraphConfig) -> Array:
    """Per-crystal image box rep_gk = min(ceil(cutoff * |a_j x a_k| / |V|), cap), `[G, 3]` int32.

    A NaN or infinite count (a degenerate cell) takes the cap, so the box stays finite.
    """
    cap = config.max_cell_images_per_dim
    need = jnp.ceil(config.cutoff * _inverse_spacings(lattice))
    return jnp.where(need <= cap, need, cap).astype(jnp.int32)


def _d2_summed(cart: Array, nbr: Array, gc: Array) -> Array:
    diff = cart[:, None, :] - nbr[gc]
    return jnp.sum(diff * diff, axis=-1)


def _d2_written_out(cart: Array, nbr: Array, gc: Array) -> Array:
    sq = [jnp.maximum(jnp.square(cart[:, k, None] - nbr[gc, :, k]), 0.0) for k in range(3)]
    return (sq[0] + sq[2]) + sq[1]


def _squared_distances(cart: Array, nbr: Array, gc: Array) -> Array:
    """|x_i - y_{g(i), c}|^2 `[N, J]` of centres `cart [N, 3]` and neighbour images `nbr [G, J, 3]`
    (`gc [N]`: the crystal of each centre).

    Rounded exactly as `jnp.sum(diff * diff, axis=-1)` of the dense builder, so that distance
    ties at the k-NN cut resolve the same way. XLA:CPU (jax 0.10: a YNNPACK reduction) adds that
    sum as (x0 + x2) + x1 and is slow over a trailing axis of 3 (a quarter of this builder's
    time), so the CPU branch writes it out per component; `maximum(., 0)` (a no-op on squares)
    keeps LLVM from contracting a square and an add into one FMA, which rounds differently.
    Other backends run the sum itself. tests/crystal/test_graph_equivalence.py checks that both
    forms agree bit for bit, so a compiler that changes either fails there, not silently.
    """
    return jax.lax.platform_dependent(cart, nbr, gc, cpu=_d2_written_out, default=_d2_summed)


def build_graph(batch: CrystalBatch, config: GraphConfig) -> PeriodicGraph:
    """Build the padded periodic graph of a batch (jittable; budgets static from `config`).

    Args:
        batch: CrystalBatch with N atom slots and G graph slots; each crystal's atoms contiguous
            and in graph order (`CrystalBatch`'s layout; `denoiser.check_inputs` enforces it).
        config: GraphConfig.

    Returns:
        PeriodicGraph with E = N * edges_per_atom edges and T = max_in_degree triplet slots.
    """
    n, g = batch.num_nodes, batch.num_graphs
    n_cand = config.candidates_per_atom
    e_half = n * config.edges_per_atom // 2
    k_in = config.max_in_degree
    lattice = batch.lattice.astype(jnp.float32)

    # Each crystal's own box (step 1); padding graphs get the one image n = 0.
    rep = jnp.where(batch.graph_mask[:, None], _box_sizes(lattice, config), 0)  # [G, 3]
    width = 2 * rep + 1
    n_img = jnp.prod(width, axis=-1)  # [G] I_g

    # Wrap first: MatterGen's inputs always are, and then unwrapped inputs give the same graph.
    frac = jnp.mod(batch.frac_coords.astype(jnp.float32), 1.0)
    cart = jnp.einsum("ni,nij->nj", frac, lattice[batch.batch])
    node_ids = jnp.arange(n, dtype=jnp.int32)
    gid = jnp.where(batch.node_mask, batch.batch, g)  # padding atoms -> extra slot g
    count = jax.ops.segment_sum(batch.node_mask.astype(jnp.int32), gid, num_segments=g + 1)
    first = jax.ops.segment_min(jnp.where(batch.node_mask, node_ids, n), gid, num_segments=g + 1)
    first = jnp.where(count > 0, first, 0)  # an empty crystal's segment_min is INT_MAX
    gc = jnp.minimum(gid, g - 1)  # the centre's crystal, clipped for gathers (padding: masked)

    # Candidates (step 2), decoded once per crystal `[G, J]`: neighbour j-major, then image in
    # cartesian order; every centre slot of a crystal reads its crystal's row.
    cand = jnp.arange(n_cand, dtype=jnp.int32)[None, :]
    j_loc = cand // n_img[:, None]
    s = cand % n_img[:, None]
    n2 = s % width[:, 2:3] - rep[:, 2:3]
    s = s // width[:, 2:3]
    n1 = s % width[:, 1:2] - rep[:, 1:2]
    n0 = s // width[:, 1:2] - rep[:, 0:1]
    cand_ok = j_loc < count[:g, None]
    j_flat = jnp.minimum(first[:g, None] + j_loc, n - 1)  # [G, J]
    # n @ L of every image of the cap's box `[G, (2 cap + 1)^3, 3]`, the dense builder's einsum
    # (the same rounding whatever the box), read at each candidate's image.
    cap = config.max_cell_images_per_dim
    offs = jnp.asarray(image_offsets(cap), jnp.float32)
    shifts = jnp.einsum("mi,gij->gmj", offs, lattice)
    w_cap = 2 * cap + 1
    in_cap = ((n0 + cap) * w_cap + (n1 + cap)) * w_cap + (n2 + cap)  # [G, J]
    shift = jnp.take_along_axis(shifts, in_cap[..., None], axis=1)  # [G, J, 3]
    nbr = cart[j_flat] + shift  # neighbour image positions [G, J, 3]
    d2 = _squared_distances(cart, nbr, gc)  # [N, J]
    ok = cand_ok[gc] & (gid < g)[:, None] & (d2 <= config.cutoff**2) & (d2 > 1e-4)
    key = jnp.where(ok, -d2, -jnp.inf)
    k_nn = min(config.max_neighbors, n_cand)
    top_val, top_idx = jax.lax.top_k(key, k_nn)  # ties: lower candidate index first
    sel = jnp.isfinite(top_val)  # [N, k]

    def take(x):  # [G, J] -> [N, k]: the top candidates of each centre slot
        return x[gc[:, None], top_idx]

    src_all = take(j_flat)
    img = jnp.stack([take(n0), take(n1), take(n2)], axis=-1)  # [N, k, 3]
    tgt_all = jnp.broadcast_to(node_ids[:, None], src_all.shape)
    edges, n_keep, counts = symmetric_edges(
        sel.reshape(-1), src_all.reshape(-1), tgt_all.reshape(-1), img.reshape(-1, 3),
        jnp.broadcast_to(gc[:, None], src_all.shape).reshape(-1), cart, lattice, n, g, config,
    )  # fmt: skip

    stats = GraphStats(
        candidates_needed=jnp.max(count[:g] * n_img).astype(jnp.int32),
        half_edges_needed=n_keep.astype(jnp.int32),
        in_degree_needed=jnp.max(counts).astype(jnp.int32),
        atoms_needed=jnp.max(count[:g]).astype(jnp.int32),
    )
    overflow = (
        (stats.candidates_needed > n_cand)
        | (stats.half_edges_needed > e_half)
        | (stats.in_degree_needed > k_in)
        | (stats.atoms_needed > config.max_atoms_per_crystal)
    )
    return edges._replace(stats=stats, overflow=overflow)


def symmetric_edges(sel, src, tgt, img, egraph, cart, lattice, n: int, g: int, config: GraphConfig):
    """Steps 4-5 from the k-NN cut: the kept half of the directed edges, their reverses, and the
    triplet table (shared with the dense reference builder, experiments/reference/dense_graph.py).

    Args:
        sel, src, tgt, egraph: `[K]` flat over (centre, rank): selected, source and target atom
            ids (contiguous per crystal, in graph order), the crystal.
        img: `[K, 3]` image offsets. cart `[N, 3]` wrapped Cartesian positions, lattice `[G, 3, 3]`.

    Returns:
        (the PeriodicGraph with `stats` and `overflow` None, kept half-edges, in-degrees `[N]`).
    """
    e_half = n * config.edges_per_atom // 2
    k_in = config.max_in_degree
    lex_neg = (img[:, 0] < 0) | (
        (img[:, 0] == 0) & ((img[:, 1] < 0) | ((img[:, 1] == 0) & (img[:, 2] < 0)))
    )
    keep_f = sel & ((src < tgt) | ((src == tgt) & lex_neg))

    # Compact the kept (source j, target i) edges into E // 2 slots, order (i, rank), which is
    # (g, local i, rank) with the atoms of each crystal contiguous and in graph order.
    n_keep = jnp.sum(keep_f.astype(jnp.int32))
    slot = jnp.where(keep_f, jnp.cumsum(keep_f) - 1, e_half)

    def compact(x, fill):
        out = jnp.full((e_half,) + x.shape[1:], fill, x.dtype)
        return out.at[slot].set(x, mode="drop")

    src = compact(src, 0)
    tgt = compact(tgt, 0)
    off = compact(img, 0)
    half_mask = jnp.arange(e_half) < n_keep
    egraph = compact(egraph.astype(jnp.int32), 0)

    dvec = (
        cart[src] + jnp.einsum("ei,eij->ej", off.astype(jnp.float32), lattice[egraph]) - cart[tgt]
    )
    # Padding slots repeat atom 0 with itself (dvec = 0), where sqrt and the division have NaN
    # gradients that a later mask cannot stop (0 * inf): a predictor guiding the sampler
    # differentiates through this. Padding gets a unit vector and the cutoff distance.
    dvec = jnp.where(half_mask[:, None], dvec, jnp.array([-config.cutoff, 0.0, 0.0]))
    dist = jnp.sqrt(jnp.sum(dvec * dvec, axis=-1))
    unit = -dvec / dist[:, None]

    idx_s = jnp.concatenate([src, tgt])
    idx_t = jnp.concatenate([tgt, src])
    edge_mask = jnp.concatenate([half_mask, half_mask])
    n_edges = 2 * e_half
    id_swap = (jnp.arange(n_edges, dtype=jnp.int32) + e_half) % n_edges
    edge_graph = jnp.concatenate([egraph, egraph])

    # In-degree table [N, T] of edge ids sorted by target (stable), then triplets [E, T].
    t_key = jnp.where(edge_mask, idx_t, n)
    order = jnp.argsort(t_key, stable=True).astype(jnp.int32)
    sorted_t = t_key[order]
    counts = jax.ops.segment_sum(edge_mask.astype(jnp.int32), t_key, num_segments=n + 1)[:n]
    start = jnp.cumsum(counts) - counts
    rank = jnp.arange(n_edges) - start[jnp.minimum(sorted_t, n - 1)]
    table = jnp.full((n, k_in), n_edges, jnp.int32).at[sorted_t, rank].set(order, mode="drop")
    trip = table[idx_t]  # [E, T]
    trip_mask = (trip < n_edges) & (trip != jnp.arange(n_edges)[:, None]) & edge_mask[:, None]
    trip = jnp.where(trip_mask, trip, 0)

    graph = PeriodicGraph(
        idx_s=idx_s.astype(jnp.int32),
        idx_t=idx_t.astype(jnp.int32),
        cell_offsets=jnp.concatenate([off, -off]).astype(jnp.int32),
        vec=jnp.concatenate([unit, -unit]),
        dist=jnp.concatenate([dist, dist]),
        edge_mask=edge_mask,
        edge_graph=edge_graph,
        id_swap=id_swap,
        trip_ba=trip,
        trip_mask=trip_mask,
        num_edges=jax.ops.segment_sum(edge_mask.astype(jnp.int32), edge_graph, num_segments=g),
        stats=None,
        overflow=None,
    )
    return graph, n_keep, counts


def _pow2(x: float, floor: int = 1) -> int:
    """The smallest power of two >= max(x, floor)."""
    return 1 << max(0, math.ceil(math.log2(max(x, floor, 1))))


def grow_budgets(
    config: GraphConfig, stats: GraphStats, num_nodes: int, *, saturate_candidates: bool = False
) -> GraphConfig:
    """A GraphConfig whose budgets cover `stats` (host-side; powers of two for few recompiles).

    `saturate_candidates`: an overflowing candidate budget goes straight to its bound
    (`GraphConfig.candidate_bound`) instead of to this run's need. For a re-run that does not
    repeat the run that overflowed: a sampler trajectory changes with its budgets (reduction
    order), and its most degenerate cell, which sets the need, changes with it.
    """

    def grown(budget: int, needed: int, floor: int = 1) -> int:
        return budget if needed <= budget else _pow2(needed, floor)

    per_atom = math.ceil(2 * int(stats.half_edges_needed) / max(num_nodes, 1))
    config = dataclasses.replace(
        config,
        max_atoms_per_crystal=max(config.max_atoms_per_crystal, int(stats.atoms_needed)),
        edges_per_atom=grown(config.edges_per_atom, per_atom, 2),
        max_in_degree=grown(config.max_in_degree, int(stats.in_degree_needed)),
    )
    need = int(stats.candidates_needed)
    if saturate_candidates and need > config.candidates_per_atom:
        need = config.candidate_bound
    return dataclasses.replace(config, candidates_per_atom=grown(config.candidates_per_atom, need))


def blind_growth(config: GraphConfig) -> GraphConfig:
    """Budgets grown where no `GraphStats` reach the host (a guide loss's graph inside the
    sampler's gradient, jaxdos.pipeline.guided): candidates at their bound, which no cell can
    exceed, the edge and in-degree budgets doubled. The atom budget stays: the caller sizes it
    from the atom counts (`presize_budgets`)."""
    return dataclasses.replace(
        config,
        candidates_per_atom=max(config.candidates_per_atom, _pow2(config.candidate_bound)),
        edges_per_atom=2 * config.edges_per_atom,
        max_in_degree=2 * config.max_in_degree,
    )


def presize_budgets(config: GraphConfig, num_atoms, limit_density: float) -> GraphConfig:
    """Budgets for a sampling run, sized before it from its atom counts and the cutoff (never
    smaller than `config`'s; overflow stays detected and handled by `retry_on_overflow`).

    - atoms per crystal: the largest count of the run;
    - candidates: the most n * I(n) over the run's counts n, I(n) = (2 r + 1)^3 images of the
      prior cell of n atoms, a cube of side (n / rho)^(1/3) (the VP limit, lattice.py), with
      r = ceil(cutoff / side) capped at MatterGen's per-direction cap;
    - edges: k = min(max_neighbors, rho 4/3 pi cutoff^3) neighbours per centre; symmetrised k-NN
      lists give about k directed edges per atom (bounded by 2k), so 5/4 k edge slots and 3/2 k
      in-degree slots;
    each rounded up to a power of two (few distinct buckets).
    """
    n = np.asarray(num_atoms, np.int64)
    if n.size == 0 or n.min() < 1:
        raise ValueError("num_atoms: expected a non-empty array of ints >= 1")
    if not limit_density > 0:
        raise ValueError(f"limit_density: expected > 0, got {limit_density}")

    def candidates(atoms: int) -> int:
        side = (atoms / limit_density) ** (1.0 / 3.0)
        r = min(config.max_cell_images_per_dim, math.ceil(config.cutoff / side))
        return atoms * (2 * r + 1) ** 3

    need = max(candidates(int(a)) for a in np.unique(n))
    k = min(config.max_neighbors, limit_density * 4.0 / 3.0 * math.pi * config.cutoff**3)
    return dataclasses.replace(
        config,
        max_atoms_per_crystal=max(config.max_atoms_per_crystal, int(n.max())),
        candidates_per_atom=max(config.candidates_per_atom, _pow2(need)),
        edges_per_atom=max(config.edges_per_atom, _pow2(1.25 * k, 2)),
        max_in_degree=max(config.max_in_degree, _pow2(1.5 * k, 2)),
    )


# One jitted builder shared by every host-side caller (its cache is keyed on the static config).
build_graph_jit = jax.jit(build_graph, static_argnums=1)


def retry_on_overflow(
    run: Callable[[GraphConfig], tuple[R, Array, GraphStats, int]],
    config: GraphConfig,
    max_tries: int = 4,
    grow: Callable[[GraphConfig, GraphStats, int], GraphConfig] = grow_budgets,
) -> tuple[R, GraphConfig]:
    """Host-side: `run(config)`, growing the budgets and re-running until nothing overflows.

    The one grow-and-retry rule of the package: the graph builder, the denoiser, generation and
    the training step all go through it.

    Args:
        run: `run(config) -> (result, overflow, stats, num_nodes)`: the call with these budgets,
            whether any budget was too small, what it needed, and the node count the per-atom
            budgets are sized for.
        config: the starting budgets.
        max_tries: budget increases before giving up.
        grow: `grow(config, stats, num_nodes)`, the budgets of the next try.

    Returns:
        (the result of the first call that did not overflow, the budgets it used).

    Raises:
        RuntimeError: if the budgets still overflow after `max_tries` increases.
    """
    for _ in range(max_tries + 1):
        result, overflow, stats, num_nodes = run(config)
        if not bool(overflow):
            return result, config
        config = grow(config, jax.device_get(stats), num_nodes)
    raise RuntimeError(f"periodic graph still overflows after {max_tries} budget increases")


def build_graph_checked(
    batch: CrystalBatch, config: GraphConfig, max_tries: int = 4
) -> tuple[PeriodicGraph, GraphConfig]:
    """Host-side: build the graph, growing budgets and re-running until nothing overflows.

    Returns:
        (graph, config actually used).

    Raises:
        RuntimeError: if the budgets still overflow after `max_tries` re-runs.
    """

    def run(cfg: GraphConfig):
        graph = build_graph_jit(batch, cfg)
        return graph, graph.overflow, graph.stats, batch.num_nodes

    return retry_on_overflow(run, config, max_tries)
