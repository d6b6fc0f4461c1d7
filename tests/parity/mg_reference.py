"""Build seeded random MatterGen (PyTorch) models and tie-free random crystals for parity tests,
MatterGen's training DiffusionModule around a model, and the jaxdos views of the same inputs
(`jax_batch`, `graph_from_torch`).

Imported only from tests/parity (torch and mattergen must already be importable; the
`gemnet_scale_file` fixture must be active when a GemNetT is constructed).
"""

import contextlib
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import torch
from mattergen.common.gemnet.gemnet import GemNetT
from mattergen.common.gemnet.gemnet_ctrl import GemNetTCtrl
from mattergen.common.gemnet.layers.embedding_block import AtomEmbedding

from jaxdos.crystal.graph import GraphStats, PeriodicGraph
from jaxdos.structures import CrystalBatch

__all__ = [
    "TINY",
    "BASE",
    "random_crystals",
    "tie_free",
    "gemnet_kwargs",
    "build_gemnet",
    "build_denoiser",
    "build_diffusion_module",
    "MATERIALS_LOSS",
    "config_dict",
    "chem_batch",
    "jax_batch",
    "graph_from_torch",
    "mattergen_scales",
    "write_model_folder",
    "denoiser_from_export",
]

# A small GemNet-T with every structural feature of mattergen_base (4 blocks would also work; 2
# keep the test fast). The widths are MatterGen's ratios scaled down.
TINY = dict(
    num_blocks=2,
    emb_size_atom=32,
    emb_size_edge=32,
    emb_size_trip=8,
    emb_size_rbf=4,
    emb_size_cbf=4,
    emb_size_bil_trip=8,
    num_spherical=7,
    num_radial=128,
    latent_dim=32,
)
BASE = dict(num_blocks=4, emb_size_atom=512, emb_size_edge=512, latent_dim=512)


def gemnet_kwargs(size: dict, cutoff: float = 7.0, max_neighbors: int = 50) -> dict:
    """MatterGen's released GemNetT arguments with the widths of `size`."""
    kw = dict(
        num_targets=1,
        cutoff=cutoff,
        max_neighbors=max_neighbors,
        max_cell_images_per_dim=5,
        otf_graph=True,
        regress_stress=True,
    )
    kw.update(size)
    return kw


def build_gemnet(
    size: dict,
    seed: int,
    adapt: tuple[str, ...] = (),
    cutoff: float = 7.0,
    max_neighbors: int = 50,
) -> torch.nn.Module:
    """A seeded random GemNetT (or GemNetTCtrl conditioned on `adapt`) in eval mode."""
    torch.manual_seed(seed)
    kw = gemnet_kwargs(size, cutoff=cutoff, max_neighbors=max_neighbors)
    emb = AtomEmbedding(emb_size=kw["emb_size_atom"], with_mask_type=True)
    if adapt:
        model = GemNetTCtrl(list(adapt), atom_embedding=emb, **kw)
        # The mixin layers are zero-initialised in MatterGen; randomise them so the adapter path
        # is actually exercised by the comparison.
        for layers in model.cond_mixin_layers.values():
            for layer in layers:
                torch.nn.init.normal_(layer.weight, std=0.05)
    else:
        model = GemNetT(atom_embedding=emb, **kw)
    return model.eval()


def random_crystals(rng: np.random.Generator, num_atoms: list[int], density=0.03):
    """Random triclinic cells (rows = lattice vectors) at about `density` atoms/A^3 (a float or one
    per crystal) and uniform fractional coordinates; returns (cells `[G, 3, 3]`, fracs `[N, 3]`)."""
    cells, fracs = [], []
    densities = np.broadcast_to(np.asarray(density, dtype=float), (len(num_atoms),))
    for n, density in zip(num_atoms, densities, strict=True):
        a = np.eye(3) + 0.25 * rng.normal(size=(3, 3))
        a *= (n / density / abs(np.linalg.det(a))) ** (1 / 3)
        cells.append(a.astype(np.float32))
        fracs.append(rng.uniform(size=(n, 3)).astype(np.float32))
    return np.stack(cells), np.concatenate(fracs)


def tie_free(cells, fracs, num_atoms, cutoff=7.0, max_neighbors=50, tol=1e-3) -> bool:
    """True when no pair distance sits within `tol` of the cutoff or of the max-neighbour cut.

    Checked in float64 over the images MatterGen enumerates, so the graph built in float32 by
    either side is the same set of edges.
    """
    start = 0
    cross = lambda c: np.stack([np.cross(c[1], c[2]), np.cross(c[2], c[0]), np.cross(c[0], c[1])])
    reps = []
    for cell in cells:
        vol = abs(np.linalg.det(cell))
        reps.append(np.ceil(cutoff * np.linalg.norm(cross(cell), axis=1) / vol))
    rep = np.minimum(np.max(reps, axis=0), 5).astype(int)
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in rep], indexing="ij"), -1).reshape(
        -1, 3
    )
    for cell, n in zip(cells, num_atoms, strict=True):
        cart = fracs[start : start + n].astype(np.float64) @ cell
        start += n
        shifts = grid @ cell.astype(np.float64)
        d = np.linalg.norm(cart[None, :, None] + shifts[None, None] - cart[:, None, None], axis=-1)
        d = d.reshape(n, -1)
        if np.any(np.abs(d - cutoff) < tol):
            return False
        for row in d:
            inside = np.sort(row[(row > 1e-2) & (row <= cutoff)])
            if (
                len(inside) > max_neighbors
                and inside[max_neighbors] - inside[max_neighbors - 1] < tol
            ):
                return False
    return True


def config_dict(size: dict, adapt: tuple[str, ...] = (), cutoff: float = 7.0) -> dict:
    """A MatterGen config.yaml (as a dict) for the denoiser built by `build_denoiser`."""
    gem = dict(gemnet_kwargs(size, cutoff=cutoff))
    gem["_target_"] = "mattergen.common.gemnet." + (
        "gemnet_ctrl.GemNetTCtrl" if adapt else "gemnet.GemNetT"
    )
    gem["atom_embedding"] = {
        "_target_": "mattergen.common.gemnet.layers.embedding_block.AtomEmbedding",
        "emb_size": size["emb_size_atom"],
        "with_mask_type": True,
    }
    if adapt:
        gem["condition_on_adapt"] = list(adapt)
    prop = lambda name: {
        "_target_": "mattergen.property_embeddings.PropertyEmbedding",
        "conditional_embedding_module": {
            "_target_": "mattergen.diffusion.model_utils.NoiseLevelEncoding",
            "d_model": size["emb_size_atom"],
        },
        "name": name,
        "scaler": {"_target_": "mattergen.common.utils.data_utils.StandardScalerTorch"},
        "unconditional_embedding_module": {
            "_target_": "mattergen.property_embeddings.EmbeddingVector",
            "hidden_dim": size["emb_size_atom"],
        },
    }
    model = {
        "_target_": "mattergen.adapter.GemNetTAdapter"
        if adapt
        else "mattergen.denoiser.GemNetTDenoiser",
        "atom_type_diffusion": "mask",
        "denoise_atom_types": True,
        "gemnet": gem,
        "hidden_dim": size["emb_size_atom"],
        "property_embeddings": {},
        "property_embeddings_adapt": {p: prop(p) for p in adapt},
    }
    mg = "mattergen.diffusion."
    corruption = {
        "_target_": mg + "corruption.multi_corruption.MultiCorruption",
        "discrete_corruptions": {"atomic_numbers": {
            "_target_": mg + "corruption.d3pm_corruption.D3PMCorruption",
            "d3pm": {"_target_": mg + "d3pm.d3pm.MaskDiffusion", "dim": 101,
                     "schedule": {"_target_": mg + "d3pm.d3pm.create_discrete_diffusion_schedule",
                                  "kind": "standard", "num_steps": 1000}},
            "offset": 1}},
        "sdes": {
            "cell": {"_target_": "mattergen.common.diffusion.corruption.LatticeVPSDE"
                                 ".from_vpsde_config",
                     "vpsde_config": {"beta_max": 20, "beta_min": 0.1,
                                      "limit_density": 0.05771451654022283,
                                      "limit_var_scaling_constant": 0.25}},
            "pos": {"_target_": "mattergen.common.diffusion.corruption."
                                "NumAtomsVarianceAdjustedWrappedVESDE",
                    "limit_info_key": "num_atoms", "sigma_max": 5.0, "wrapping_boundary": 1.0},
        },
    }  # fmt: skip
    return {
        "data_module": {"batch_size": {"train": 32}},
        "lightning_module": {
            "_target_": "mattergen.diffusion.lightning_module.DiffusionLightningModule",
            "diffusion_module": {
                "_target_": "mattergen.diffusion.diffusion_module.DiffusionModule",
                "corruption": corruption,
                "model": model,
            },
            "optimizer_partial": {"_partial_": True, "_target_": "torch.optim.Adam", "lr": 1e-4},
        },
        "trainer": {"max_epochs": 1},
    }


def build_denoiser(
    size: dict,
    seed: int,
    adapt: tuple[str, ...] = (),
    cutoff: float = 7.0,
    max_neighbors: int = 50,
):
    """A seeded random GemNetTDenoiser / GemNetTAdapter (eval mode) matching `config_dict`."""
    from mattergen.adapter import GemNetTAdapter
    from mattergen.common.utils.data_utils import StandardScalerTorch
    from mattergen.denoiser import GemNetTDenoiser
    from mattergen.diffusion.model_utils import NoiseLevelEncoding
    from mattergen.property_embeddings import EmbeddingVector, PropertyEmbedding

    gem = build_gemnet(size, seed, adapt, cutoff, max_neighbors)
    torch.manual_seed(seed + 1)
    d = size["emb_size_atom"]
    if not adapt:
        return GemNetTDenoiser(gemnet=gem, hidden_dim=d).eval()
    embs = {
        p: PropertyEmbedding(
            name=p,
            conditional_embedding_module=NoiseLevelEncoding(d),
            unconditional_embedding_module=EmbeddingVector(d),
            scaler=StandardScalerTorch(means=torch.tensor(1.5), stds=torch.tensor(0.7)),
        )
        for p in adapt
    }
    return GemNetTAdapter(gemnet=gem, hidden_dim=d, property_embeddings_adapt=embs).eval()


def chem_batch(cells, fracs, num_atoms, types, props: dict | None = None, use_uncond=None):
    """A batched mattergen ChemGraph (properties `[G]` and `_USE_UNCONDITIONAL_EMBEDDING`)."""
    from mattergen.common.data.chemgraph import ChemGraph
    from torch_geometric.data import Batch

    graphs, start = [], 0
    for g, n in enumerate(num_atoms):
        kw = dict(
            pos=torch.tensor(fracs[start : start + n]),
            cell=torch.tensor(cells[g : g + 1]),
            atomic_numbers=torch.tensor(types[start : start + n], dtype=torch.long),
            num_atoms=torch.tensor([n]),
        )
        for name, values in (props or {}).items():
            kw[name] = torch.tensor([values[g]], dtype=torch.float32)
        graphs.append(ChemGraph(**kw))
        start += n
    batch = Batch.from_data_list(graphs)
    if use_uncond is not None:
        batch = batch.replace(
            _USE_UNCONDITIONAL_EMBEDDING={
                k: torch.tensor(v, dtype=torch.bool).reshape(-1, 1) for k, v in use_uncond.items()
            }
        )
    return batch


# MatterGen's training loss, mattergen/conf/lightning_module/diffusion_module/default.yaml (loss_fn;
# the wheel ships no conf/, so the values are restated here).
MATERIALS_LOSS = dict(
    reduce="sum",
    include_pos=True,
    include_cell=True,
    include_atomic_numbers=True,
    d3pm_hybrid_lambda=0.01,
    weights={"cell": 1.0, "pos": 0.1, "atomic_numbers": 1.0},
)


def build_diffusion_module(model: torch.nn.Module, average_density: float):
    """MatterGen's DiffusionModule around `model`: the corruption of config_dict (conf corruption/
    default.yaml) and MaterialsLoss(**MATERIALS_LOSS); no pre-corruption (unconditional model)."""
    from mattergen.common.diffusion.corruption import (
        LatticeVPSDE,
        NumAtomsVarianceAdjustedWrappedVESDE,
    )
    from mattergen.common.loss import MaterialsLoss
    from mattergen.diffusion.corruption.d3pm_corruption import D3PMCorruption
    from mattergen.diffusion.corruption.multi_corruption import MultiCorruption
    from mattergen.diffusion.d3pm.d3pm import MaskDiffusion, create_discrete_diffusion_schedule
    from mattergen.diffusion.diffusion_module import DiffusionModule

    schedule = create_discrete_diffusion_schedule(kind="standard", num_steps=1000)
    corruption = MultiCorruption(
        sdes={
            "pos": NumAtomsVarianceAdjustedWrappedVESDE(
                wrapping_boundary=1.0, sigma_max=5.0, limit_info_key="num_atoms"
            ),
            "cell": LatticeVPSDE.from_vpsde_config(
                dict(
                    beta_min=0.1,
                    beta_max=20,
                    limit_density=average_density,
                    limit_var_scaling_constant=0.25,
                )
            ),
        },
        discrete_corruptions={
            "atomic_numbers": D3PMCorruption(
                d3pm=MaskDiffusion(dim=101, schedule=schedule), offset=1
            )
        },
    )
    return DiffusionModule(
        model=model, corruption=corruption, loss_fn=MaterialsLoss(**MATERIALS_LOSS)
    )


def jax_batch(cells, fracs, num_atoms, types, pad_atoms: int = 0, pad_graphs: int = 0):
    """The crystals as a jaxdos `CrystalBatch`, optionally with padding slots appended.

    Padding atoms have Z = 0, fractional coordinates 0 and point at the first padding graph (graph
    0 without one); padding graphs have a unit cell and no atoms.
    """
    n, g = len(fracs), len(num_atoms)
    types = np.concatenate([types, np.zeros(pad_atoms)])
    fracs = np.concatenate([fracs, np.zeros((pad_atoms, 3), np.float32)])
    cells = np.concatenate([cells, np.tile(np.eye(3, dtype=np.float32), (pad_graphs, 1, 1))])
    graph_of_atom = np.concatenate(
        [np.repeat(np.arange(g), num_atoms), np.full(pad_atoms, g if pad_graphs else 0)]
    )
    return CrystalBatch(
        atomic_numbers=jnp.asarray(types, jnp.int32),
        frac_coords=jnp.asarray(fracs),
        lattice=jnp.asarray(cells),
        num_atoms=jnp.asarray(list(num_atoms) + [0] * pad_graphs, jnp.int32),
        batch=jnp.asarray(graph_of_atom, jnp.int32),
        node_mask=jnp.arange(n + pad_atoms) < n,
        graph_mask=jnp.arange(g + pad_graphs) < g,
    )


def graph_from_torch(gemnet, cells, fracs, num_atoms) -> PeriodicGraph:
    """MatterGen's own symmetric edge list + triplets as a jaxdos PeriodicGraph (no padding)."""
    nat = torch.tensor(num_atoms)
    cart = torch.einsum(
        "ni,nij->nj", torch.tensor(fracs), torch.tensor(cells).repeat_interleave(nat, 0)
    )
    with torch.no_grad():
        out = gemnet.generate_interaction_graph(cart, torch.tensor(cells), nat, None, None, None)
    edge_index, neighbors, dist, vec, id_swap, _, _, _, offsets = (
        x.numpy() if isinstance(x, torch.Tensor) else x for x in out
    )
    # jaxdos layout: the kept half first, their reverses second (id_swap = e + E/2 mod E).
    kept = np.flatnonzero(id_swap > np.arange(len(id_swap)))
    order = np.concatenate([kept, id_swap[kept]])
    idx_s, idx_t = edge_index[0][order], edge_index[1][order]
    n_edges = len(order)
    graph_of_atom = np.repeat(np.arange(len(num_atoms)), num_atoms)
    incoming = [np.flatnonzero(idx_t == a) for a in range(len(fracs))]
    k = max(len(x) for x in incoming)
    trip = np.zeros((n_edges, k), np.int32)
    mask = np.zeros((n_edges, k), bool)
    for e in range(n_edges):
        others = [b for b in incoming[idx_t[e]] if b != e]
        trip[e, : len(others)] = others
        mask[e, : len(others)] = True
    i32 = lambda x: jnp.asarray(np.asarray(x), jnp.int32)
    return PeriodicGraph(
        idx_s=i32(idx_s),
        idx_t=i32(idx_t),
        cell_offsets=i32(offsets[order]),
        vec=jnp.asarray(vec[order]),
        dist=jnp.asarray(dist[order]),
        edge_mask=jnp.ones(n_edges, bool),
        edge_graph=i32(graph_of_atom[idx_t]),
        id_swap=i32((np.arange(n_edges) + n_edges // 2) % n_edges),
        trip_ba=i32(trip),
        trip_mask=jnp.asarray(mask),
        num_edges=i32(neighbors),
        stats=GraphStats(i32(0), i32(len(kept)), i32(k)),
        overflow=jnp.asarray(False),
    )


@contextlib.contextmanager
def mattergen_scales(root):
    """Construct MatterGen GemNetTs inside: the gemnet-dT.json the wheel lacks, written under
    `root` (the `gemnet_scale_file` fixture, for module-scoped fixtures and other test folders)."""
    import json

    import mattergen.common.gemnet.gemnet as mg_gemnet
    from parity_helpers import GEMNET_DT_SCALES

    path = Path(root) / "common" / "gemnet" / "gemnet-dT.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(GEMNET_DT_SCALES))
    old, mg_gemnet.MODELS_PROJECT_ROOT = mg_gemnet.MODELS_PROJECT_ROOT, str(root)
    try:
        yield
    finally:
        mg_gemnet.MODELS_PROJECT_ROOT = old


def write_model_folder(folder, size: dict, seed: int, adapt: tuple[str, ...] = ()):
    """A MatterGen model folder (`config.yaml` + bare `state_dict.pt`) holding a seeded random
    denoiser, as `experiments.convert_mattergen` reads it; returns (folder, the torch model)."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with mattergen_scales(folder / "scales"):
        model = build_denoiser(size, seed, adapt)
    (folder / "config.yaml").write_text(yaml.safe_dump(config_dict(size, adapt)))
    torch.save(dict(model.state_dict()), folder / "state_dict.pt")
    return folder, model


_SIZE_KEYS = (
    "num_blocks", "emb_size_atom", "emb_size_edge", "emb_size_trip", "emb_size_rbf",
    "emb_size_cbf", "emb_size_bil_trip", "num_spherical", "num_radial", "num_before_skip",
    "num_after_skip", "num_atom", "latent_dim",
)  # fmt: skip


def denoiser_from_export(config: dict, state_dict: dict) -> torch.nn.Module:
    """The torch denoiser an exported (config dict, state_dict) describes, weights loaded (eval).

    Built from the config alone (sizes, cutoff, neighbours, adapters); the state_dict must load
    with no unexpected key, and the keys it lacks must be exactly those the name map drops or
    recomputes (energy head, analytic buffers), which keep the module's own values. Construct
    inside `mattergen_scales` (the ScalingFactors are all overwritten by the state_dict).
    """
    from jaxdos.crystal.convert.name_map import match

    gem = config["lightning_module"]["diffusion_module"]["model"]["gemnet"]
    if gem.get("envelope", {}).get("exponent", 5) != 5:
        raise ValueError("denoiser_from_export: only the default envelope exponent 5 is built")
    size = {k: gem[k] for k in _SIZE_KEYS}
    model = build_denoiser(size, 0, tuple(gem.get("condition_on_adapt", ())), gem["cutoff"],
                           gem["max_neighbors"])  # fmt: skip
    missing, unexpected = model.load_state_dict(
        {k: torch.tensor(np.array(v)) for k, v in state_dict.items()}, strict=False
    )
    assert not unexpected, unexpected
    kept = [k for k in missing if match(k) is None or match(k)[0].kind not in ("drop", "buffer")]
    assert not kept, f"exported state_dict lacks {kept}"
    return model.eval()
