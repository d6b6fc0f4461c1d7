"""The dense periodic graph builder that `jaxdos.neighbors.build_graph` replaced: the reference.

It enumerates MatterGen's batch-wide image box literally: every (centre i, neighbour j, image n)
candidate of the dense per-crystal view, `[G, A, A * I]` with A = `max_atoms_per_crystal` and
I = (2 * image_budget + 1)^3 images of the box, ordered like `torch.cartesian_prod` (first axis
slowest), candidates j-major; the images MatterGen would use (its per-direction count maxed over
the batch, then capped) are masked in. Steps 3-5 (k-NN cut, symmetrisation, triplets) are the
library's. Kept outside the library, unchanged but for its budgets (`image_budget` is an
argument, `GraphConfig` no longer has it), as the independent reference of
tests/crystal/test_graph_equivalence.py and the "dense" side of experiments/bench_graph.py.

Needs only jax (no torch).
"""

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.neighbors import GraphConfig, PeriodicGraph, symmetric_edges
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array

__all__ = [
    "DenseStats",
    "build_graph_dense",
    "build_graph_dense_jit",
    "image_offsets",
    "world_batch",
]


class DenseStats(NamedTuple):
    """What a batch needed from the dense builder (int32 scalars)."""

    images_needed: Array  # max over the batch of per-direction images, after MatterGen's cap
    half_edges_needed: Array
    in_degree_needed: Array
    atoms_needed: Array


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


def build_graph_dense(batch: CrystalBatch, config: GraphConfig, image_budget: int) -> PeriodicGraph:
    """The dense builder (jittable; `config` and `image_budget` static).

    Args:
        batch: CrystalBatch with N atom slots and G graph slots.
        config: GraphConfig (its `candidates_per_atom` is not read).
        image_budget: images per direction enumerated (<= `config.max_cell_images_per_dim`).

    Returns:
        PeriodicGraph (stats: `DenseStats`); overflow when the batch needs more than
        `image_budget` images in a direction or any other budget is too small.
    """
    if not 0 <= image_budget <= config.max_cell_images_per_dim:
        raise ValueError(f"image_budget must be in [0, {config.max_cell_images_per_dim}]")
    n, g = batch.num_nodes, batch.num_graphs
    a = config.max_atoms_per_crystal
    offs_np = image_offsets(image_budget)
    n_img = offs_np.shape[0]
    offs = jnp.asarray(offs_np)
    e_half = n * config.edges_per_atom // 2
    k_in = config.max_in_degree
    lattice = batch.lattice.astype(jnp.float32)

    # Images MatterGen would enumerate for this batch: max over the (valid) batch, capped.
    per_graph = jnp.where(batch.graph_mask[:, None], _images_needed(lattice, config.cutoff), 0)
    rep = jnp.minimum(per_graph.max(axis=0), config.max_cell_images_per_dim)  # [3]
    image_ok = jnp.all(jnp.abs(offs) <= rep[None, :], axis=-1)  # [I]

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
    gg = jnp.broadcast_to(jnp.arange(g)[:, None, None], j_loc.shape).reshape(-1)
    edges, n_keep, counts = symmetric_edges(
        sel.reshape(-1), dense[gg, j_loc.reshape(-1)], dense[gg, i_loc.reshape(-1)],
        img.reshape(-1, 3), gg, cart, lattice, n, g, config,
    )  # fmt: skip

    stats = DenseStats(
        images_needed=jnp.max(rep).astype(jnp.int32),
        half_edges_needed=n_keep.astype(jnp.int32),
        in_degree_needed=jnp.max(counts).astype(jnp.int32),
        atoms_needed=jnp.max(per_crystal[:g]).astype(jnp.int32),
    )
    overflow = (
        (stats.images_needed > image_budget)
        | (stats.half_edges_needed > e_half)
        | (stats.in_degree_needed > k_in)
        | (stats.atoms_needed > a)
    )
    return edges._replace(stats=stats, overflow=overflow)


build_graph_dense_jit = jax.jit(build_graph_dense, static_argnums=(1, 2))


def world_batch(count: int, seed: int = 0, t=None) -> CrystalBatch:
    """`count` seeded world training crystals in one flat batch (atom slots rounded up to a multiple
    of 32, one padding graph), lattices polar-symmetrised as in training; corrupted by CDOSGen's
    forward process at time `t` (a float, or "uniform": the training draw t ~ U(t_min, 1) per
    crystal) unless None.
    The batches tests/crystal/test_graph_equivalence.py and experiments/bench_graph.py compare on.
    """
    from jaxdos.crystal.diffusion.corruption import DiffusionConfig, corrupt, sample_time
    from jaxdos.crystal.train import symmetrized
    from jaxdos.data.world import load_world
    from jaxdos.structures import pack

    records = load_world("train")
    rng = np.random.default_rng(seed)
    sub = records.take(np.sort(rng.choice(len(records), count, replace=False)))
    slots = -(-int(np.sum(sub.num_atoms)) // 32) * 32
    batch = symmetrized(
        jax.tree.map(jnp.asarray, pack(sub.crystals, num_nodes=slots, num_graphs=count + 1))
    )
    if t is None:
        return batch
    key_t, key = jax.random.split(jax.random.key(seed))
    g, config = batch.num_graphs, DiffusionConfig()
    times = sample_time(key_t, g, config) if t == "uniform" else jnp.full((g,), float(t))
    return corrupt(key, batch, times, config).batch
