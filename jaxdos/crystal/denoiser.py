"""GemNetTDenoiser: the CDOSGen score network (MatterGen's GemNetTDenoiser / GemNetTAdapter).

`model.apply(params, batch, t, cond)` -> ScoreOutput(frac `[N, 3]`,
lattice `[G, 3, 3]`, type_logits `[N, 101]`), all "score x std" predictions
(docs/spec/mattergen.md §4).
The periodic graph is built inside the call with the static budgets of `config.graph`; its
overflow flag and stats are sown into the `"diagnostics"` collection as 1-tuples
(`apply(..., mutable=["diagnostics"])`, then `diag["diagnostics"]["graph_overflow"][0]`, e.g. to
OR it into a sampler's loop state).  `apply_checked` is the host-side entry point: it validates
inputs (ValueError naming the field) and re-runs with grown budgets on overflow.

Param tree (torch state_dict `diffusion_module.model.` prefix dropped; torch Linear weight
`[out, in]` = flax `kernel.T`, ModuleList index `.i` -> `_i`; see gemnet/layers.py):
    fc_atom/{kernel, bias}                    <- fc_atom.{weight, bias}
    gemnet/...                                <- gemnet.... (gemnet/model.py lists them)
    property_embeddings_adapt_dos/conditional_embedding_module/...   (DOS, conditioning.py)
`noise_level_encoding.div_term` and scaler buffers are constants here, not params; ScalingFactors
are `config.scale_factors`.  A conditional model's tree is the unconditional tree plus the adapter
and DOS-embedding params, so base params load unchanged and, with the zero-initialised mix-ins,
a fresh conditional model equals the base model exactly.
"""

import dataclasses
import functools
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.batch import MASK_Z, DosCondition, ScoreOutput
from jaxdos.crystal.conditioning import DosEmbedding, ScalarCondition, scalar_property_embedding
from jaxdos.crystal.diffusion import wrapped_normal
from jaxdos.crystal.frac_head import FractionalHead
from jaxdos.crystal.gemnet.basis import noise_level_encoding
from jaxdos.crystal.gemnet.config import GemNetConfig
from jaxdos.crystal.gemnet.layers import TorchLinear
from jaxdos.crystal.gemnet.model import GemNetT
from jaxdos.crystal.graph import GraphConfig, PeriodicGraph, build_graph, retry_on_overflow
from jaxdos.structures import CrystalBatch
from jaxdos.typing import PyTree

__all__ = [
    "GemNetTDenoiser",
    "GemNetConfig",
    "check_inputs",
    "apply_checked",
]


class GemNetTDenoiser(nn.Module):
    """Score network; conditional on DOS iff `config.dos_dim` is set (plus scalar properties)."""

    config: GemNetConfig
    pos: wrapped_normal.WrappedNormalConfig = wrapped_normal.WrappedNormalConfig()

    @nn.compact
    def __call__(
        self,
        batch: CrystalBatch,
        t: jax.Array,
        cond: DosCondition | None = None,
        properties: Mapping[str, ScalarCondition] | None = None,
        graph: PeriodicGraph | None = None,
    ) -> ScoreOutput:
        """Args:
        batch: noisy crystals (N atom slots, G graph slots).
        t: `[G]` diffusion time in (0, 1].
        cond: DOS condition (None on a DOS model = every crystal unconditional).
        properties: scalar conditions by name (missing = unconditional).
        graph: a prebuilt graph (parity tests feed torch's edge list); default: built here.
        """
        cfg = self.config
        g = batch.num_graphs
        if graph is None:
            graph = build_graph(batch, cfg.graph)
        # A 1-tuple holding this call's value (`diag["diagnostics"]["graph_overflow"][0]`), even
        # when stale diagnostics from `init` ride along in the variables passed to `apply`.
        keep_last = dict(init_fn=tuple, reduce_fn=lambda _, new: (new,))
        self.sow("diagnostics", "graph_overflow", graph.overflow, **keep_last)
        self.sow("diagnostics", "graph_stats", graph.stats, **keep_last)
        z = noise_level_encoding(t.astype(jnp.float32) * cfg.time_scale, cfg.latent_dim)

        adapters = []
        if cfg.dos_dim is not None:
            if cond is None:
                cond = DosCondition(jnp.zeros((g, cfg.dos_dim)), jnp.zeros((g,), bool))
            m = cond.use_cond & batch.graph_mask
            # Zero the DOS of unconditional crystals before the MLP so a NaN placeholder there can
            # never reach the outputs or the gradients (0 * NaN = NaN under jnp.where's VJP).
            dos = jnp.where(m[:, None], cond.dos.astype(jnp.float32), 0.0)
            emb = DosEmbedding(
                cfg.dos_emb_size, name="property_embeddings_adapt_dos_conditional_embedding_module"
            )(dos)
            adapters.append(("dos", jnp.where(m[:, None], emb, 0.0), m))
        elif cond is not None:
            raise ValueError("cond given to an unconditional model (config.dos_dim is None)")
        properties = dict(properties or {})
        for prop in sorted(cfg.properties, key=lambda p: p.name):
            pc = properties.pop(prop.name, None)
            if pc is None:
                pc = ScalarCondition(jnp.zeros((g,)), jnp.zeros((g,), bool))
            pc = ScalarCondition(pc.value, pc.use_cond & batch.graph_mask)
            adapters.append(
                (prop.name, scalar_property_embedding(prop, pc, cfg.emb_size_atom), pc.use_cond)
            )
        if properties:
            raise ValueError(f"properties has names without adapters: {sorted(properties)}")

        forces, stress, h = GemNetT(cfg, cfg.adapter_names, name="gemnet")(
            z, batch, graph, adapters
        )
        logits = TorchLinear(cfg.num_type_classes, name="fc_atom")(h)
        eye = jnp.eye(3, dtype=batch.lattice.dtype)
        lat = jnp.where(batch.graph_mask[:, None, None], batch.lattice, eye)
        # A Cartesian displacement F maps to fractional as F @ L^-1 (row convention).
        frac = jnp.einsum("ni,nij->nj", forces, jnp.linalg.inv(lat)[batch.batch])
        if cfg.frac_head:
            head = FractionalHead(
                cfg.emb_size_atom, cfg.frac_head, cfg.graph.max_atoms_per_crystal, name="frac_head"
            )
            frac = frac + head(batch, z, [(emb, m) for _, emb, m in adapters])
        if cfg.pos_sigma_ref is not None:
            sig = wrapped_normal.sigma(t[batch.batch], batch.num_atoms[batch.batch], self.pos)
            frac = frac * jnp.sqrt(1.0 + (cfg.pos_sigma_ref / sig) ** 2)[:, None]
        nm = batch.node_mask[:, None]
        return ScoreOutput(
            frac=jnp.where(nm, frac, 0.0),
            lattice=jnp.where(batch.graph_mask[:, None, None], stress, 0.0),
            type_logits=jnp.where(nm, logits, 0.0),
        )


def check_inputs(
    config: GemNetConfig,
    batch: CrystalBatch,
    t,
    cond: DosCondition | None = None,
    properties: Mapping[str, ScalarCondition] | None = None,
) -> None:
    """Host-side validation of a denoiser call; raises ValueError naming the field and range."""
    z = np.asarray(batch.atomic_numbers)
    nm = np.asarray(batch.node_mask, bool)
    gm = np.asarray(batch.graph_mask, bool)
    nat = np.asarray(batch.num_atoms)
    b = np.asarray(batch.batch)
    n, g = z.shape[0], nat.shape[0]
    if np.asarray(batch.frac_coords).shape != (n, 3) or np.asarray(batch.lattice).shape != (
        g,
        3,
        3,
    ):
        raise ValueError("batch: expected frac_coords [N, 3] and lattice [G, 3, 3]")
    a_max = config.graph.max_atoms_per_crystal
    if np.any(nat[gm] < 1) or np.any(nat[gm] > a_max):
        raise ValueError(
            f"batch.num_atoms: each real crystal needs 1..{a_max} atoms, got {nat[gm]}"
        )
    bad = nm & ~((z >= 1) & (z <= MASK_Z))
    if np.any(bad):
        raise ValueError(
            f"batch.atomic_numbers: expected Z in 1..{MASK_Z} (101 = mask), got {z[bad]}"
        )
    if np.any(nm & ((b < 0) | (b >= g))) or np.any(nm & ~gm[np.clip(b, 0, g - 1)]):
        raise ValueError("batch.batch: real atoms must point at real graphs")
    counts = np.bincount(b[nm], minlength=g)
    if not np.array_equal(counts, np.where(gm, nat, 0)):
        raise ValueError(f"batch.num_atoms: {nat} disagrees with the batch vector counts {counts}")
    idx = np.flatnonzero(nm)
    if (
        idx.size
        and np.any(np.diff(b[idx]) < 0)
        or any(np.ptp(np.flatnonzero(nm & (b == k))) + 1 != c for k, c in enumerate(counts) if c)
    ):
        raise ValueError("batch.batch: each crystal's atoms must be contiguous and in graph order")
    lat = np.asarray(batch.lattice, np.float64)[gm]
    if not np.all(np.isfinite(lat)) or np.any(np.abs(np.linalg.det(lat)) < 1e-6):
        raise ValueError("batch.lattice: real crystals need finite, non-singular lattices")
    if not np.all(np.isfinite(np.asarray(batch.frac_coords)[nm])):
        raise ValueError("batch.frac_coords: expected finite values")
    tt = np.asarray(t)
    if tt.shape != (g,) or not np.all(np.isfinite(tt)):
        raise ValueError(f"t: expected finite shape ({g},), got {tt.shape}")
    if cond is not None:
        if config.dos_dim is None:
            raise ValueError("cond: the model is unconditional (config.dos_dim is None)")
        dos = np.asarray(cond.dos)
        if dos.shape != (g, config.dos_dim):
            raise ValueError(f"cond.dos: expected shape ({g}, {config.dos_dim}), got {dos.shape}")
        if not np.all(np.isfinite(dos)) or np.any(dos < 0):
            raise ValueError("cond.dos: expected finite values >= 0 (states / eV / atom)")
        if np.asarray(cond.use_cond).shape != (g,):
            raise ValueError(f"cond.use_cond: expected shape ({g},)")
    known = {p.name: p for p in config.properties}
    for name, pc in (properties or {}).items():
        if name not in known:
            raise ValueError(f"properties: {name!r} has no adapter (known: {sorted(known)})")
        v, u = np.asarray(pc.value, np.float64), np.asarray(pc.use_cond, bool)
        if v.shape != (g,) or u.shape != (g,):
            raise ValueError(f"properties[{name!r}]: value and use_cond must have shape ({g},)")
        if not np.all(np.isfinite(v[u])) or (known[name].log10 and np.any(v[u] <= 0)):
            raise ValueError(f"properties[{name!r}].value: expected finite (and > 0 if log10)")


@functools.cache  # one compiled apply per (config, pos): the module is a function of its fields
def _jitted_apply(config: GemNetConfig, pos: wrapped_normal.WrappedNormalConfig):
    model = GemNetTDenoiser(config=config, pos=pos)
    return jax.jit(lambda p, b, t, c, pr: model.apply(p, b, t, c, pr, mutable=["diagnostics"]))


def apply_checked(
    model: GemNetTDenoiser,
    params: PyTree,
    batch: CrystalBatch,
    t,
    cond: DosCondition | None = None,
    properties: Mapping[str, ScalarCondition] | None = None,
    max_tries: int = 4,
) -> tuple[ScoreOutput, GemNetTDenoiser]:
    """Validate, run jitted, and re-run with grown graph budgets until nothing overflows.

    `params` should be `{"params": ...}` (drop the "diagnostics" collection that `init` returns).

    Returns:
        (score, the model actually used: reuse it to keep the grown budgets).
    """
    check_inputs(model.config, batch, t, cond, properties)

    def run(graph_cfg: GraphConfig):
        m = model
        if graph_cfg != model.config.graph:
            m = model.clone(config=dataclasses.replace(model.config, graph=graph_cfg))
        fn = _jitted_apply(m.config, m.pos)
        out, diag = fn(params, batch, jnp.asarray(t), cond, properties)
        d = diag["diagnostics"]
        return (out, m), d["graph_overflow"][0], d["graph_stats"][0], batch.num_nodes

    result, _ = retry_on_overflow(run, model.config.graph, max_tries)
    return result
