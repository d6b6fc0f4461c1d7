"""GemNetT (MatterGen's GemNet-dT score trunk, with GemNetTCtrl's per-block adapters).

Forward (docs/spec/mattergen.md §2.5): bases on the periodic graph -> atom embedding merged with
the time latent z -> edge embedding (+ edge/lattice-vector cosines) -> output & lattice block 0 ->
for each block: adapters, interaction, output & lattice block i+1.  Returns Cartesian per-atom
"forces" `[N, 3]` (= sum over incoming edges of F_e * V_e), the symmetric lattice score `[G, 3, 3]`
and the final atom embeddings `[N, Da]`.

Param names mirror the torch state_dict under `gemnet.` (layout rules in
`jaxdos.crystal.gemnet.layers`): `atom_emb/embeddings/embedding`, `atom_latent_emb/{kernel,bias}`,
`edge_emb/dense/linear/kernel`, `angle_edge_emb_{0,2}/{kernel,bias}`, `mlp_rbf3|mlp_rbf_h|
mlp_rbf_out|mlp_rbf_lattice/linear/kernel`, `mlp_cbf3/weight`, `int_blocks_<i>/...`,
`out_blocks_<j>/...` (force branch only), `lattice_out_blocks_<j>/...`,
`cond_adapt_layers_<prop>_<i>_{0,2}/{kernel,bias}`, `cond_mixin_layers_<prop>_<i>/kernel`.
The GaussianSmearing `offset` buffers are recomputed, not stored.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdos.crystal.gemnet.basis import periodic_fourier, radial_basis, spherical_basis
from jaxdos.crystal.gemnet.blocks import (
    EfficientDownProjection,
    InteractionBlock,
    LatticeBlock,
    OutputBlock,
)
from jaxdos.crystal.gemnet.config import GemNetConfig
from jaxdos.crystal.gemnet.layers import AtomEmbedding, Dense, EdgeEmbedding, TorchLinear
from jaxdos.crystal.graph import PeriodicGraph
from jaxdos.structures import CrystalBatch
from jaxdos.typing import Array

__all__ = ["GemNetT", "AdapterInput"]

# (property name, embedding [G, Dp], mask [G] bool): one entry per adapted property.
AdapterInput = tuple[str, Array, Array]


def _cosine(a: Array, b: Array, eps: float = 1e-8) -> Array:
    """torch.cosine_similarity over the last axis (norms clamped at eps separately)."""
    na = jnp.maximum(jnp.linalg.norm(a, axis=-1), eps)
    nb = jnp.maximum(jnp.linalg.norm(b, axis=-1), eps)
    return jnp.sum(a * b, axis=-1) / (na * nb)


def _frac_fourier_embedding(cfg, batch: CrystalBatch, graph: PeriodicGraph) -> Array:
    """`[E, D_edge]` zero-initialised projection of sin / cos(2 pi k df) (config.frac_fourier)."""
    df = batch.frac_coords[graph.idx_s] - batch.frac_coords[graph.idx_t]  # image-independent
    feats = periodic_fourier(df, cfg.frac_fourier)
    return nn.Dense(cfg.emb_size_edge, kernel_init=nn.initializers.zeros, name="frac_fourier_emb")(
        feats
    )


class GemNetT(nn.Module):
    """The GemNet-dT trunk; `adapter_names` lists the properties with adapter stacks (Ctrl)."""

    config: GemNetConfig
    adapter_names: tuple[str, ...] = ()

    @nn.compact
    def __call__(
        self,
        z: Array,
        batch: CrystalBatch,
        graph: PeriodicGraph,
        adapters: Sequence[AdapterInput] = (),
    ) -> tuple[Array, Array, Array]:
        """z `[G, latent_dim]`, batch, graph, adapters -> (F `[N,3]`, S `[G,3,3]`, h `[N,D]`)."""
        cfg = self.config
        n, g = batch.num_nodes, batch.num_graphs
        if tuple(a[0] for a in adapters) != self.adapter_names:
            raise ValueError(f"adapters must be given for {self.adapter_names}")
        emask = graph.edge_mask

        # Bases (no parameters).
        rbf = radial_basis(graph.dist, cfg.graph.cutoff, cfg.num_radial, cfg.envelope_exponent)
        cos_cab = jnp.clip(jnp.einsum("ed,etd->et", graph.vec, graph.vec[graph.trip_ba]), -1, 1)
        sph = spherical_basis(cos_cab, cfg.num_spherical) * graph.trip_mask[..., None]  # [E,T,Y]

        # Embeddings: t (and base-model properties) enter only here.
        h = AtomEmbedding(cfg.emb_size_atom, name="atom_emb")(batch.atomic_numbers)
        h = jnp.concatenate([h, z[batch.batch]], axis=-1)
        h = TorchLinear(cfg.emb_size_atom, name="atom_latent_emb")(h)
        m = EdgeEmbedding(cfg.emb_size_edge, name="edge_emb")(h, rbf, graph.idx_s, graph.idx_t)
        lat_e = batch.lattice[graph.edge_graph]  # [E, 3, 3]
        cosines = _cosine(graph.vec[:, None, :], lat_e)  # [E, 3]
        m = jnp.concatenate([m, cosines], axis=-1)
        m = TorchLinear(cfg.emb_size_edge, name="angle_edge_emb_0")(m)
        m = TorchLinear(cfg.emb_size_edge, name="angle_edge_emb_2")(jax.nn.relu(m))
        if cfg.frac_fourier:
            m = m + _frac_fourier_embedding(cfg, batch, graph)
        m = m * emask[:, None]

        rbf3 = Dense(cfg.emb_size_rbf, name="mlp_rbf3")(rbf)
        rbf_w1 = EfficientDownProjection(cfg.num_spherical, cfg.emb_size_cbf, name="mlp_cbf3")(rbf)
        rbf_h = Dense(cfg.emb_size_rbf, name="mlp_rbf_h")(rbf)
        rbf_out = Dense(cfg.emb_size_rbf, name="mlp_rbf_out")(rbf)
        rbf_lat = Dense(cfg.emb_size_rbf, name="mlp_rbf_lattice")(rbf)
        scales = dict(cfg.scale_factors)

        def out_block(j, m):
            s = scales.get(f"out_blocks_{j}/scale_rbf_F", 1.0)
            return OutputBlock(cfg.emb_size_edge, cfg.num_atom, s, name=f"out_blocks_{j}")(
                m, rbf_out, graph
            )

        def lat_block(j, m):
            return LatticeBlock(cfg.emb_size_edge, name=f"lattice_out_blocks_{j}")(
                m, rbf_lat, graph, g
            )

        f_st = out_block(0, m)
        lattice = lat_block(0, m)
        for i in range(cfg.num_blocks):
            for name, emb, mask in adapters:  # GemNetTCtrl injection, before block i
                x = jnp.concatenate([h, emb[batch.batch]], axis=-1)
                x = TorchLinear(cfg.emb_size_atom, name=f"cond_adapt_layers_{name}_{i}_0")(x)
                x = TorchLinear(cfg.emb_size_atom, name=f"cond_adapt_layers_{name}_{i}_2")(
                    jax.nn.relu(x)
                )
                x = TorchLinear(
                    cfg.emb_size_atom,
                    use_bias=False,
                    zero_init=True,
                    name=f"cond_mixin_layers_{name}_{i}",
                )(x)
                h = h + mask[batch.batch][:, None].astype(x.dtype) * x
            p = f"int_blocks_{i}"
            h, m = InteractionBlock(
                cfg.emb_size_atom,
                cfg.emb_size_edge,
                cfg.emb_size_trip,
                cfg.emb_size_bil_trip,
                cfg.emb_size_cbf,
                cfg.num_before_skip,
                cfg.num_after_skip,
                cfg.num_atom,
                (
                    scales.get(f"{p}/trip_interaction/scale_rbf", 1.0),
                    scales.get(f"{p}/trip_interaction/scale_cbf_sum", 1.0),
                    scales.get(f"{p}/atom_update/scale_sum", 1.0),
                ),
                name=p,
            )(h, m, rbf3, rbf_w1, sph, rbf_h, graph)
            m = m * emask[:, None]
            f_st = f_st + out_block(i + 1, m)
            lattice = lattice + lat_block(i + 1, m)

        forces = jax.ops.segment_sum(f_st[:, None] * graph.vec, graph.idx_t, num_segments=n)
        return forces, jnp.swapaxes(lattice, -1, -2), h
