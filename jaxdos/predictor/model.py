"""The crystal -> DOS networks (Flax linen, e3nn-jax) and their one forward function.

`EquivariantDOS` (NequIP / MACE-style):
1. Atoms: an embedding of Z as D even scalars (0e).
2. Edges of the periodic neighbour list (`jaxdos.neighbors.build_graph`; source = neighbour image,
   target = centre): spherical harmonics Y^l(r_st) up to `lmax` of the unit vector and a smooth
   radial basis of |r_st| times a polynomial envelope that vanishes at the cutoff, times the edge
   mask (padded edges add exactly zero).
3. `layers` interactions: message = (linear(h_s) (x) Y(r_st)) with each tensor-product path
   weighted by an MLP of the radial basis, summed over incoming edges / sqrt(avg_neighbors);
   a gated nonlinearity (e3nn `gate`) on the sum plus a linear self-connection.
4. Readout: the invariant (0e) part of each atom -> MLP -> softplus: a non-negative per-atom
   contribution `[N, L]`, averaged over the crystal's atoms, so the output is a per-atom DOS like
   the records' (states / eV / atom) and is permutation invariant by construction.

Everything the network sees is a scalar (Z, |r|) or a spherical harmonic of r, so the predicted DOS
is invariant under rotations of the lattice, under permutations of the atoms, and under integer
shifts of fractional coordinates (the neighbour list wraps them first).

`CompositionDOS`: element fractions `[G, MAX_Z + 1]` -> MLP -> softplus; the baseline.

`forward(config, params, batch) -> (dos [G, L], overflow, stats)` is the one entry the trainer,
`predict_dos` and the pipeline call; `overflow` is the neighbour list's (always False for the
composition model, whose `stats` is None).
"""

import functools

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import N_BINS
from jaxdos.neighbors import PeriodicGraph, build_graph
from jaxdos.predictor.config import CompositionConfig, EquivariantConfig, PredictorConfig
from jaxdos.structures import MAX_Z, CrystalBatch, Crystals, pack
from jaxdos.typing import Array, PRNGKey, PyTree

__all__ = ["EquivariantDOS", "CompositionDOS", "module_of", "init_params", "forward"]


def _hidden_irreps(config: EquivariantConfig) -> e3nn.Irreps:
    parts = [f"{config.scalars}x0e"]
    if config.vectors:
        # Natural parity (1o, 2e, 3o): what products of positions give; enough for a scalar DOS.
        parity = {0: "e", 1: "o"}
        parts += [f"{config.vectors}x{l}{parity[l % 2]}" for l in range(1, config.lmax + 1)]
    return e3nn.Irreps("+".join(parts))


def _pool(per_atom: Array, batch: CrystalBatch) -> Array:
    """Mean over each crystal's real atoms: `[N, L]` -> `[G, L]` (0 on padding graphs)."""
    g = batch.num_graphs
    w = batch.node_mask.astype(per_atom.dtype)[:, None]
    total = jax.ops.segment_sum(per_atom * w, batch.batch, num_segments=g)
    count = jax.ops.segment_sum(w[:, 0], batch.batch, num_segments=g)
    return total / jnp.maximum(count, 1.0)[:, None] * batch.graph_mask[:, None]


def _embed_types(embed: nn.Embed, batch: CrystalBatch, type_probs: Array | None) -> Array:
    """Atom embeddings `[N, D]`: a table lookup of Z, or for relaxed types `type_probs`
    `[N, MAX_Z + 1]` (probabilities over Z, column 0 unused) the expected embedding, which is the
    lookup again when the probabilities are one-hot (differentiable guidance of stage 2)."""
    z = jnp.clip(batch.atomic_numbers, 0, MAX_Z)
    h = embed(z)
    if type_probs is None:
        return h
    return type_probs.astype(h.dtype) @ embed.embedding


class Interaction(nn.Module):
    """One message-passing layer: radial-weighted h_s (x) Y(r_st), summed at t, gated."""

    config: EquivariantConfig

    @nn.compact
    def __call__(self, h, sh, radial, envelope, graph: PeriodicGraph):
        c = self.config
        hidden = _hidden_irreps(c)
        n = h.shape[0]
        src = e3nn.flax.Linear(h.irreps, name="pre")(h)[graph.idx_s]
        msg = e3nn.tensor_product(src, sh, filter_ir_out=hidden)
        msg = e3nn.concatenate([src.filter(keep=hidden), msg]).regroup()
        mix = e3nn.flax.MultiLayerPerceptron(
            (c.radial_hidden, msg.irreps.num_irreps), act=jax.nn.silu, output_activation=False
        )(radial)
        msg = msg * (mix * envelope[:, None])  # zero on padded edges and at the cutoff
        agg = e3nn.scatter_sum(msg, dst=graph.idx_t, output_size=n) / jnp.sqrt(c.avg_neighbors)
        # The gate needs one extra scalar per non-scalar irrep (its gate).
        n_gates = sum(mul for mul, ir in hidden if ir.l > 0)
        gate_in = e3nn.Irreps(f"{c.scalars + n_gates}x0e") + hidden.filter(drop="0e")
        pre = e3nn.flax.Linear(gate_in, name="message", force_irreps_out=True)(agg)
        pre = pre + e3nn.flax.Linear(gate_in, name="self", force_irreps_out=True)(h)
        return e3nn.gate(pre)


class EquivariantDOS(nn.Module):
    """Crystal batch -> `[G, L]` per-atom DOS (see the module docstring)."""

    config: EquivariantConfig

    @nn.compact
    def __call__(
        self, batch: CrystalBatch, graph: PeriodicGraph, type_probs: Array | None = None
    ) -> Array:
        c = self.config
        mask = graph.edge_mask.astype(jnp.float32)
        sh = e3nn.spherical_harmonics(
            e3nn.Irreps.spherical_harmonics(c.lmax),
            graph.vec,
            normalize=True,
            normalization="component",
        )
        x = graph.dist / c.graph.cutoff
        radial = e3nn.soft_one_hot_linspace(
            x, start=0.0, end=1.0, number=c.num_basis, basis="smooth_finite", cutoff=True
        ) * jnp.sqrt(c.num_basis)
        envelope = e3nn.poly_envelope(5, 2)(x) * mask
        radial = radial * mask[:, None]
        embed = nn.Embed(MAX_Z + 1, c.scalars, name="embed")
        h = _embed_types(embed, batch, type_probs)
        h = e3nn.IrrepsArray(f"{c.scalars}x0e", h * batch.node_mask[:, None])
        for i in range(c.layers):
            h = Interaction(c, name=f"interaction_{i}")(h, sh, radial, envelope, graph)
        s = h.filter(keep="0e").array
        s = nn.silu(nn.Dense(c.readout_hidden, name="readout_0")(s))
        per_atom = jax.nn.softplus(nn.Dense(N_BINS, name="readout_1")(s))
        return _pool(per_atom, batch)


class CompositionDOS(nn.Module):
    """Element fractions -> `[G, L]` per-atom DOS; blind to geometry (the baseline)."""

    config: CompositionConfig

    @nn.compact
    def __call__(self, batch: CrystalBatch, type_probs: Array | None = None) -> Array:
        if type_probs is None:
            onehot = jax.nn.one_hot(jnp.clip(batch.atomic_numbers, 0, MAX_Z), MAX_Z + 1)
        else:
            onehot = type_probs
        frac = _pool(onehot, batch)  # [G, MAX_Z + 1]
        h = frac
        for i, width in enumerate(self.config.hidden):
            h = nn.silu(nn.Dense(width, name=f"hidden_{i}")(h))
        return jax.nn.softplus(nn.Dense(N_BINS, name="out")(h)) * batch.graph_mask[:, None]


@functools.lru_cache(maxsize=32)
def module_of(config: PredictorConfig) -> nn.Module:
    if isinstance(config, EquivariantConfig):
        return EquivariantDOS(config)
    if isinstance(config, CompositionConfig):
        return CompositionDOS(config)
    raise ValueError(f"config: expected an EquivariantConfig or CompositionConfig, got {config!r}")


def forward(config: PredictorConfig, params: PyTree, batch: CrystalBatch, type_probs=None):
    """`(dos [G, L], overflow [], stats)` of a flat crystal batch (jittable, differentiable in
    coordinates, lattice and, given as `type_probs [N, MAX_Z + 1]` over Z, relaxed types).
    A True `overflow` means the neighbour list was truncated: the DOS must not be used; grow
    `config.graph` (`jaxdos.neighbors.retry_on_overflow`) and rerun."""
    module = module_of(config)
    if isinstance(config, CompositionConfig):
        return module.apply(params, batch, type_probs), jnp.zeros((), bool), None
    graph = build_graph(batch, config.graph)
    return module.apply(params, batch, graph, type_probs), graph.overflow, graph.stats


def init_params(key: PRNGKey, config: PredictorConfig) -> PyTree:
    """Parameters of the network of `config` (initialised on a one-crystal dummy batch)."""
    dummy = Crystals(
        np.array([[6, 8]], np.int32),
        np.array([[[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]], np.float32),
        (3.0 * np.eye(3, dtype=np.float32))[None],
        np.array([2], np.int32),
    )
    batch = jax.tree.map(jnp.asarray, pack(dummy, num_nodes=2, num_graphs=2))
    module = module_of(config)

    def init(key):
        if isinstance(config, CompositionConfig):
            return module.init(key, batch)
        return module.init(key, batch, build_graph(batch, config.graph))

    return jax.jit(init)(key)  # eager e3nn dispatches op by op: a minute on a busy CPU
