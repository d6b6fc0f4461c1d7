"""Periodic radius graph with static shapes (MatterGen's `radius_graph_pbc` + GemNet edge handling).

Ground floor: shared by CDOSGen (`jaxdos.crystal.graph` re-exports it) and the DOS predictor
(`jaxdos.predictor`, which reads the edges and ignores the triplets). Imports only
`jaxdos.structures` and `jaxdos.typing`.

Everything is computed inside `jit` with shapes fixed by a `GraphConfig`:

1. Per-crystal dense view `[G, A]` of the flat atoms (A = `max_atoms_per_crystal`).
2. All (centre i, neighbour j, image n) candidates `[G, A, A * I]`, I = (2 * image_budget + 1)^3,
   images ordered like `torch.cartesian_prod(range(-r, r + 1) x 3)`, candidates j-major.
   MatterGen's image count per direction, ceil(cutoff * |a_j x a_k| / V) maxed over the batch
   and capped at `max_cell_images_per_dim`, masks the images actually used;
   a candidate is kept iff 1e-4 < d^2 <= cutoff^2.
3. The `max_neighbors` nearest per centre (`lax.top_k`: ties go to the lower candidate index, i.e.
   lower j, then earlier image, so the cut is deterministic; torch's unstable sort is not).
4. GemNet's `reorder_symmetric_edges`: keep s < t, or s == t with a lexicographically negative
   offset, then append reversed copies (offset and unit vector negated).  The first `E // 2` slots
   hold the kept edges, the last `E // 2` their reverses, so `id_swap[e] = (e + E // 2) mod E`.
5. Triplets as GemNet-T's `get_triplets` (every b->a for each c->a, b->a != c->a; parallel periodic
   copies stay distinct), stored densely `[E, T]` with T = `max_in_degree`, the same padded layout
   as MatterGen's efficient bilinear (its Kmax).

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
    "grow_budgets",
    "presize_budgets",
    "retry_on_overflow",
    "image_offsets",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class GraphConfig:
    """Cutoffs (MatterGen semantics) and static budgets (ours) of the periodic graph.

    Attributes:
        cutoff: radius in Angstrom (MatterGen: 7.0).
        max_neighbors: nearest neighbours kept per centre atom before symmetrisation (50).
        max_cell_images_per_dim: MatterGen's cap on images per lattice direction (5).
        max_atoms_per_crystal: static A; a crystal with more atoms is a host-side ValueError.
        image_budget: images per direction enumerated statically (<= the cap); a batch needing more
            (but <= the cap) overflows and is re-run with a larger budget.
        edges_per_atom: directed edges (after symmetrisation) per atom slot; E = N * this, even.
        max_in_degree: T, incoming edges per atom (and triplets per edge) budget.
    """

    cutoff: float = 7.0
    max_neighbors: int = 50
    max_cell_images_per_dim: int = 5
    max_atoms_per_crystal: int = 20
    image_budget: int = 2
    edges_per_atom: int = 64
    max_in_degree: int = 64

    def __post_init__(self):
        if not self.cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {self.cutoff}")
        for name in ("max_neighbors", "max_cell_images_per_dim", "max_atoms_per_crystal"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.image_budget <= self.max_cell_images_per_dim:
            raise ValueError(
                f"image_budget must be in [0, max_cell_images_per_dim="
                f"{self.max_cell_images_per_dim}], got {self.image_budget}"
            )
        if self.edges_per_atom < 2 or self.edges_per_atom % 2:
            raise ValueError(f"edges_per_atom must be even and >= 2, got {self.edges_per_atom}")
        if self.max_in_degree < 1:
            raise ValueError(f"max_in_degree must be >= 1, got {self.max_in_degree}")


class GraphStats(NamedTuple):
    """What a batch needed (int32 scalars), to compare with the budgets."""

    images_needed: Array  # max over the batch of per-direction images, after MatterGen's cap
    half_edges_needed: Array  # kept (s<t) edges before appending reverses
    in_degree_needed: Array  # max incoming edges of any atom
    atoms_needed: Array | int = 0  # most atoms in one crystal (beyond A they would be dropped)


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


def _images_needed(lattice: Array, cutoff: float) -> Array:
    """Per-crystal images per direction, ceil(cutoff * |a_j x a_k| / |V|), `[G, 3]`."""
    a0, a1, a2 = lattice[:, 0], lattice[:, 1], lattice[:, 2]
    crosses = jnp.stack([jnp.cross(a1, a2), jnp.cross(a2, a0), jnp.cross(a0, a1)], axis=1)
    vol = jnp.sum(a0 * crosses[:, 0], axis=-1)
    inv_min_dist = jnp.linalg.norm(crosses / vol[:, None, None], axis=-1)
    return jnp.ceil(cutoff * inv_min_dist).astype(jnp.int32)


def _dense_view(batch: CrystalBatch, max_atoms: int) -> Array:
    """Flat index of local atom a of crystal g, `[G, A]` (N where empty)."""
    n, g = batch.num_nodes, batch.num_graphs
    node_ids = jnp.arange(n, dtype=jnp.int32)
    valid = batch.node_mask
    gid = jnp.where(valid, batch.batch, g)
    first = jax.ops.segment_min(jnp.where(valid, node_ids, n), gid, num_segments=g + 1)
    local = jnp.where(valid, node_ids - first[gid], max_atoms)
    dense = jnp.full((g + 1, max_atoms), n, jnp.int32)
    return dense.at[gid, local].set(node_ids, mode="drop")[:g]


def build_graph(batch: CrystalBatch, config: GraphConfig) -> PeriodicGraph:
    """Build the padded periodic graph of a batch (jittable; budgets static from `config`).

    Args:
        batch: CrystalBatch with N atom slots and G graph slots.
        config: GraphConfig.

    Returns:
        PeriodicGraph with E = N * edges_per_atom edges and T = max_in_degree triplet slots.
    """
    n, g = batch.num_nodes, batch.num_graphs
    a = config.max_atoms_per_crystal
    offs_np = image_offsets(config.image_budget)
    n_img = offs_np.shape[0]
    offs = jnp.asarray(offs_np)
    e_half = n * config.edges_per_atom // 2
    k_in = config.max_in_degree
    lattice = batch.lattice.astype(jnp.float32)

    # Images MatterGen would enumerate for this batch: max over the (valid) batch, capped.
    per_graph = jnp.where(batch.graph_mask[:, None], _images_needed(lattice, config.cutoff), 0)
    rep = jnp.minimum(per_graph.max(axis=0), config.max_cell_images_per_dim)  # [3]
    image_ok = jnp.all(jnp.abs(offs) <= rep[None, :], axis=-1)  # [I]

    # Wrap first: MatterGen's inputs always are, and then unwrapped inputs give the same graph.
    frac = jnp.mod(batch.frac_coords.astype(jnp.float32), 1.0)
    cart = jnp.einsum("ni,nij->nj", frac, lattice[batch.batch])
    dense = _dense_view(batch, a)  # [G, A]
    gid = jnp.where(batch.node_mask, batch.batch, g)
    per_crystal = jax.ops.segment_sum(batch.node_mask.astype(jnp.int32), gid, num_segments=g + 1)
    dense_ok = dense < n
    cart_p = jnp.concatenate([cart, jnp.zeros((1, 3), cart.dtype)])
    dcart = cart_p[dense]  # [G, A, 3]
    shifts = jnp.einsum("mi,gij->gmj", offs.astype(jnp.float32), lattice)  # [G, I, 3]
    # Neighbour image positions [G, A(j), I, 3]; centre i broadcast in front.
    nbr = dcart[:, :, None, :] + shifts[:, None, :, :]
    diff = dcart[:, :, None, None, :] - nbr[:, None, :, :, :]  # [G, i, j, I, 3]
    d2 = jnp.sum(diff * diff, axis=-1)
    ok = (
        dense_ok[:, :, None, None]
        & dense_ok[:, None, :, None]
        & image_ok[None, None, None, :]
        & (d2 <= config.cutoff**2)
        & (d2 > 1e-4)
    )
    key = jnp.where(ok, -d2, -jnp.inf).reshape(g, a, a * n_img)
    k_nn = min(config.max_neighbors, a * n_img)
    top_val, top_idx = jax.lax.top_k(key, k_nn)  # ties: lower candidate index first
    sel = jnp.isfinite(top_val)  # [G, A, k]
    j_loc = top_idx // n_img
    img = offs[top_idx % n_img]  # [G, A, k, 3]
    i_loc = jnp.broadcast_to(jnp.arange(a)[None, :, None], j_loc.shape)
    lex_neg = (img[..., 0] < 0) | (
        (img[..., 0] == 0) & ((img[..., 1] < 0) | ((img[..., 1] == 0) & (img[..., 2] < 0)))
    )
    keep = sel & ((j_loc < i_loc) | ((j_loc == i_loc) & lex_neg))

    # Compact the kept (source j, target i) edges into E // 2 slots, order (g, i, rank).
    keep_f = keep.reshape(-1)
    n_keep = jnp.sum(keep_f.astype(jnp.int32))
    slot = jnp.where(keep_f, jnp.cumsum(keep_f) - 1, e_half)
    gg = jnp.broadcast_to(jnp.arange(g)[:, None, None], j_loc.shape).reshape(-1)
    src_all = dense[gg, j_loc.reshape(-1)]
    tgt_all = dense[gg, i_loc.reshape(-1)]

    def compact(x, fill):
        out = jnp.full((e_half,) + x.shape[1:], fill, x.dtype)
        return out.at[slot].set(x, mode="drop")

    src = compact(src_all, 0)
    tgt = compact(tgt_all, 0)
    off = compact(img.reshape(-1, 3), 0)
    half_mask = jnp.arange(e_half) < n_keep
    egraph = compact(gg.astype(jnp.int32), 0)

    dvec = (
        cart[src] + jnp.einsum("ei,eij->ej", off.astype(jnp.float32), lattice[egraph]) - cart[tgt]
    )
    dist = jnp.sqrt(jnp.sum(dvec * dvec, axis=-1))
    safe = jnp.where(half_mask, dist, 1.0)
    unit = jnp.where(half_mask[:, None], -dvec / safe[:, None], jnp.array([1.0, 0.0, 0.0]))
    dist = jnp.where(half_mask, dist, config.cutoff)

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

    stats = GraphStats(
        images_needed=jnp.max(rep).astype(jnp.int32),
        half_edges_needed=n_keep.astype(jnp.int32),
        in_degree_needed=jnp.max(counts).astype(jnp.int32),
        atoms_needed=jnp.max(per_crystal[:g]).astype(jnp.int32),
    )
    overflow = (
        (stats.images_needed > config.image_budget)
        | (stats.half_edges_needed > e_half)
        | (stats.in_degree_needed > k_in)
        | (stats.atoms_needed > a)
    )
    return PeriodicGraph(
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
        stats=stats,
        overflow=overflow,
    )


def grow_budgets(config: GraphConfig, stats: GraphStats, num_nodes: int) -> GraphConfig:
    """A GraphConfig whose budgets cover `stats` (host-side; powers of two for few recompiles)."""

    def pow2(x: int) -> int:
        return 1 << max(0, math.ceil(math.log2(max(x, 1))))

    images = max(config.image_budget, int(stats.images_needed))
    per_atom = math.ceil(2 * int(stats.half_edges_needed) / max(num_nodes, 1))
    edges = config.edges_per_atom if per_atom <= config.edges_per_atom else max(2, pow2(per_atom))
    deg = int(stats.in_degree_needed)
    return dataclasses.replace(
        config,
        image_budget=min(images, config.max_cell_images_per_dim),
        max_atoms_per_crystal=max(config.max_atoms_per_crystal, int(stats.atoms_needed)),
        edges_per_atom=edges,
        max_in_degree=config.max_in_degree if deg <= config.max_in_degree else pow2(deg),
    )


def presize_budgets(config: GraphConfig, num_atoms, limit_density: float) -> GraphConfig:
    """Budgets for a sampling run, sized before it from its atom counts and the cutoff (never
    smaller than `config`'s; overflow stays detected and handled by `retry_on_overflow`).

    - atoms per crystal: the largest count of the run;
    - images: ceil(cutoff / side) for the smallest crystal's prior cell (side = (n / rho)^(1/3),
      the VP limit, lattice.py), capped at MatterGen's per-direction cap;
    - edges: k = min(max_neighbors, rho 4/3 pi cutoff^3) neighbours per centre; symmetrised k-NN
      lists give about k directed edges per atom (bounded by 2k), so 5/4 k edge slots and 3/2 k
      in-degree slots, rounded up to powers of two (few distinct buckets).
    """
    n = np.asarray(num_atoms, np.int64)
    if n.size == 0 or n.min() < 1:
        raise ValueError("num_atoms: expected a non-empty array of ints >= 1")
    if not limit_density > 0:
        raise ValueError(f"limit_density: expected > 0, got {limit_density}")

    def pow2(x: float) -> int:
        return 1 << max(1, math.ceil(math.log2(max(x, 1.0))))

    side = (float(n.min()) / limit_density) ** (1.0 / 3.0)
    images = min(config.max_cell_images_per_dim, math.ceil(config.cutoff / side))
    k = min(config.max_neighbors, limit_density * 4.0 / 3.0 * math.pi * config.cutoff**3)
    return dataclasses.replace(
        config,
        max_atoms_per_crystal=max(config.max_atoms_per_crystal, int(n.max())),
        image_budget=max(config.image_budget, images),
        edges_per_atom=max(config.edges_per_atom, pow2(1.25 * k)),
        max_in_degree=max(config.max_in_degree, pow2(1.5 * k)),
    )


# One jitted builder shared by every host-side caller (its cache is keyed on the static config).
build_graph_jit = jax.jit(build_graph, static_argnums=1)


def retry_on_overflow(
    run: Callable[[GraphConfig], tuple[R, Array, GraphStats, int]],
    config: GraphConfig,
    max_tries: int = 4,
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

    Returns:
        (the result of the first call that did not overflow, the budgets it used).

    Raises:
        RuntimeError: if the budgets still overflow after `max_tries` increases.
    """
    for _ in range(max_tries + 1):
        result, overflow, stats, num_nodes = run(config)
        if not bool(overflow):
            return result, config
        config = grow_budgets(config, jax.device_get(stats), num_nodes)
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
