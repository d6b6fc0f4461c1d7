"""GemNet-T blocks: triplet interaction, atom update, interaction, output (forces), lattice.

Shapes: h `[N, Da]` atoms, m `[E, De]` edges, rbf projections `[E, Dr]`, triplets `[E, T]`,
spherical basis `[E, T, Y]`.
Every per-edge message is multiplied by `edge_mask` (and per-triplet ones by `trip_mask`) before a
segment sum, so padded edges and triplets add exactly zero.  Scale constants multiply where
MatterGen's `ScalingFactor` modules sit (names in `jaxdos.crystal.gemnet.scaling`).
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.crystal.gemnet.layers import Dense, EdgeEmbedding, ResidualLayer, he_orthogonal_init
from jaxdos.crystal.graph import PeriodicGraph
from jaxdos.typing import Array

__all__ = [
    "EfficientDownProjection",
    "EfficientBilinear",
    "TripletInteraction",
    "AtomUpdateBlock",
    "InteractionBlock",
    "OutputBlock",
    "LatticeBlock",
]

INV_SQRT2 = 1.0 / math.sqrt(2.0)


class EfficientDownProjection(nn.Module):
    """MatterGen `mlp_cbf3`: rbfW1[e, j, l] = sum_r rad[e, r] W[l, r, j]; `weight [Y, Dr, C]`."""

    num_spherical: int
    emb_size_cbf: int

    @nn.compact
    def __call__(self, rad: Array) -> Array:
        w = self.param(
            "weight", he_orthogonal_init, (self.num_spherical, rad.shape[-1], self.emb_size_cbf)
        )
        return jnp.einsum("er,lrj->ejl", rad, w)  # [E, C, Y]


class EfficientBilinear(nn.Module):
    """out[e, o] = sum_{c, j} y[e, j, c] W[c, j, o]; param `weight [Ct, Cc, D]` (torch layout)."""

    features: int

    @nn.compact
    def __call__(self, y: Array) -> Array:
        w = self.param("weight", he_orthogonal_init, (y.shape[2], y.shape[1], self.features))
        return jnp.einsum("ejc,cjo->eo", y, w)


class TripletInteraction(nn.Module):
    """GemNet-T directional message c->a from all b->a (efficient bilinear form, padded T)."""

    emb_size_edge: int
    emb_size_trip: int
    emb_size_bil_trip: int
    emb_size_cbf: int
    scale_rbf: float
    scale_cbf_sum: float

    @nn.compact
    def __call__(self, m, rbf3, rbf_w1, sph, graph: PeriodicGraph) -> Array:
        x = Dense(self.emb_size_edge, activation=True, name="dense_ba")(m)
        x = x * Dense(self.emb_size_edge, name="mlp_rbf")(rbf3) * self.scale_rbf
        x = Dense(self.emb_size_trip, activation=True, name="down_projection")(x)
        xg = x[graph.trip_ba] * graph.trip_mask[..., None]  # [E, T, Ct]
        sum_k = jnp.einsum("etl,etc->elc", sph, xg)  # [E, Y, Ct]
        y = jnp.einsum("ejl,elc->ejc", rbf_w1, sum_k)  # [E, Cc, Ct]
        x = EfficientBilinear(self.emb_size_bil_trip, name="mlp_cbf")(y) * self.scale_cbf_sum
        x_ca = Dense(self.emb_size_edge, activation=True, name="up_projection_ca")(x)
        x_ac = Dense(self.emb_size_edge, activation=True, name="up_projection_ac")(x)
        return (x_ca + x_ac[graph.id_swap]) * INV_SQRT2


class AtomUpdateBlock(nn.Module):
    """Edge messages summed onto targets, then Dense_swish + `num_hidden` residual layers."""

    emb_size_atom: int
    num_hidden: int
    scale_sum: float

    @nn.compact
    def __call__(self, m, rbf, graph: PeriodicGraph, num_nodes: int) -> Array:
        x = m * Dense(m.shape[-1], name="dense_rbf")(rbf) * graph.edge_mask[:, None]
        x = jax.ops.segment_sum(x, graph.idx_t, num_segments=num_nodes) * self.scale_sum
        x = Dense(self.emb_size_atom, activation=True, name="layers_0")(x)
        for i in range(self.num_hidden):
            x = ResidualLayer(name=f"layers_{i + 1}")(x)
        return x


class InteractionBlock(nn.Module):
    """InteractionBlockTripletsOnly (GemNet-dT): edge update, atom update, edge re-embedding."""

    emb_size_atom: int
    emb_size_edge: int
    emb_size_trip: int
    emb_size_bil_trip: int
    emb_size_cbf: int
    num_before_skip: int
    num_after_skip: int
    num_atom: int
    scales: tuple[float, float, float]  # had_rbf, sum_cbf, atom-update sum

    @nn.compact
    def __call__(self, h, m, rbf3, rbf_w1, sph, rbf_h, graph: PeriodicGraph):
        x_skip = Dense(self.emb_size_edge, activation=True, name="dense_ca")(m)
        x3 = TripletInteraction(
            self.emb_size_edge,
            self.emb_size_trip,
            self.emb_size_bil_trip,
            self.emb_size_cbf,
            self.scales[0],
            self.scales[1],
            name="trip_interaction",
        )(m, rbf3, rbf_w1, sph, graph)
        x = (x_skip + x3) * INV_SQRT2
        for i in range(self.num_before_skip):
            x = ResidualLayer(name=f"layers_before_skip_{i}")(x)
        m = (m + x) * INV_SQRT2
        for i in range(self.num_after_skip):
            m = ResidualLayer(name=f"layers_after_skip_{i}")(m)
        h2 = AtomUpdateBlock(self.emb_size_atom, self.num_atom, self.scales[2], name="atom_update")(
            m, rbf_h, graph, h.shape[0]
        )
        h = (h + h2) * INV_SQRT2
        m2 = EdgeEmbedding(self.emb_size_edge, name="concat_layer")(h, m, graph.idx_s, graph.idx_t)
        m2 = ResidualLayer(name="residual_m_0")(m2)
        return h, (m + m2) * INV_SQRT2


class OutputBlock(nn.Module):
    """Direct-force branch of GemNet's OutputBlock: one scalar per edge `[E]`.

    MatterGen's energy branch (`dense_rbf`, `scale_sum`, `layers`/`seq_energy`, `out_energy`) gets
    no gradient and never reaches the denoiser's outputs, so it is not built.
    """

    emb_size_edge: int
    num_hidden: int
    scale_rbf_F: float

    @nn.compact
    def __call__(self, m, rbf_out, graph: PeriodicGraph) -> Array:
        x = Dense(self.emb_size_edge, activation=True, name="seq_forces_0")(m)
        for i in range(self.num_hidden):
            x = ResidualLayer(name=f"seq_forces_{i + 1}")(x)
        x = x * Dense(self.emb_size_edge, name="dense_rbf_F")(rbf_out) * self.scale_rbf_F
        return Dense(1, name="out_forces")(x)[:, 0] * graph.edge_mask


class LatticeBlock(nn.Module):
    """RBFBasedLatticeUpdateBlockFrac: sum_e s_e v_e v_e^T / E_g per crystal `[G, 3, 3]`."""

    emb_size_edge: int

    @nn.compact
    def __call__(self, m, rbf_lat, graph: PeriodicGraph, num_graphs: int) -> Array:
        x = Dense(self.emb_size_edge, activation=True, name="mlp_0")(m)
        x = Dense(self.emb_size_edge, name="mlp_1")(x)
        x = x * Dense(self.emb_size_edge, name="dense_rbf_F")(rbf_lat)
        s = Dense(1, name="out_forces")(x)[:, 0] * graph.edge_mask
        n_e = jnp.maximum(graph.num_edges, 1).astype(s.dtype)
        s = s / n_e[graph.edge_graph]
        outer = graph.vec[:, :, None] * graph.vec[:, None, :]
        return jax.ops.segment_sum(s[:, None, None] * outer, graph.edge_graph, num_graphs)
