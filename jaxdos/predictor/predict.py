"""`predict_dos(crystals, model=None)`: the predictor's `[M, 256]` per-atom DOS of padded crystals.

Crystals are packed B at a time into one static flat shape (N = B * A atom slots, G = B + 1 graph
slots), so every chunk, the last one included, runs the same compiled function; the neighbour
list's budgets grow on overflow (`jaxdos.neighbors.retry_on_overflow`) and the grown budgets are
kept for the following chunks.
"""

import dataclasses
from functools import partial
from pathlib import Path

import jax
import numpy as np

from jaxdos.kernels.grid import N_BINS
from jaxdos.neighbors import GraphConfig, retry_on_overflow
from jaxdos.predictor.checkpoint import DOSPredictorModel, load_default
from jaxdos.predictor.config import EquivariantConfig
from jaxdos.predictor.model import forward
from jaxdos.structures import MAX_Z, Crystals, pack

__all__ = ["as_predictor", "check_crystals", "predict_dos"]

# One jitted forward for every caller; its cache is keyed on the (hashable, frozen) config.
forward_jit = jax.jit(forward, static_argnums=0)


def as_predictor(model) -> DOSPredictorModel:
    """None -> the embedded default; a str / Path -> the model in that directory; a
    `DOSPredictorModel` as is.

    Raises:
        ValueError: for anything else; FileNotFoundError / ValueError from loading.
    """
    if model is None:
        return load_default()
    if isinstance(model, (str, Path)):
        return DOSPredictorModel.load(model)
    if not isinstance(model, DOSPredictorModel):
        raise ValueError(
            "model: expected None, a DOSPredictorModel or a 'dos_predictor' model directory, got "
            f"{type(model).__name__}"
        )
    return model


def check_crystals(crystals) -> Crystals:
    """`crystals` as numpy `Crystals`, shapes and atom counts checked.

    Raises:
        ValueError: naming the field whose shape or values are wrong.
    """
    if not isinstance(crystals, Crystals):
        raise ValueError(
            f"crystals: expected jaxdos.structures.Crystals, got {type(crystals).__name__}"
        )
    z, frac, lat, n = (np.asarray(f) for f in crystals)
    if z.ndim != 2:
        raise ValueError(f"crystals.atomic_numbers: expected [M, A], got shape {z.shape}")
    m, a = z.shape
    for name, arr, shape in (
        ("frac_coords", frac, (m, a, 3)),
        ("lattice", lat, (m, 3, 3)),
        ("num_atoms", n, (m,)),
    ):
        if arr.shape != shape:
            raise ValueError(f"crystals.{name}: expected shape {shape}, got {arr.shape}")
    if m and (n.min() < 1 or n.max() > a):
        raise ValueError(
            f"crystals.num_atoms: expected values in [1, {a}], got {n.min()}..{n.max()}"
        )
    real = np.arange(a)[None, :] < n[:, None]
    if np.any(real & ((z < 1) | (z > MAX_Z))):
        raise ValueError(
            f"crystals.atomic_numbers: expected elements Z in 1..{MAX_Z} on real atoms"
        )
    if not (np.all(np.isfinite(frac)) and np.all(np.isfinite(lat))):
        raise ValueError("crystals: frac_coords and lattice must be finite")
    return Crystals(
        z.astype(np.int32), frac.astype(np.float32), lat.astype(np.float32), n.astype(np.int32)
    )


def _with_graph(config, graph: GraphConfig):
    return dataclasses.replace(config, graph=graph)


def predict_dos(crystals: Crystals, model=None, *, batch_size: int = 16) -> np.ndarray:
    """The predicted per-atom DOS (states / eV / atom) on the paper's 256-bin grid.

    Args:
        crystals: M padded crystals (`jaxdos.structures.Crystals`).
        model: None (the embedded default), a model directory, or a `DOSPredictorModel`.
        batch_size: B crystals per compiled call.

    Returns:
        `[M, 256]` float32, >= 0.

    Raises:
        ValueError: naming `batch_size`, a `crystals` field or `model`, before any compute;
        FileNotFoundError: when `model` is None and no default predictor is shipped.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    crystals = check_crystals(crystals)
    model = as_predictor(model)
    m, a = crystals.atomic_numbers.shape
    out = np.zeros((m, N_BINS), np.float32)
    config = model.config
    for start in range(0, m, batch_size):
        rows = np.arange(start, min(start + batch_size, m))
        flat = pack(crystals.take(rows), num_nodes=batch_size * a, num_graphs=batch_size + 1)
        if isinstance(config, EquivariantConfig):
            run = partial(_run, model.params, flat, config)
            dos, graph = retry_on_overflow(run, config.graph)
            config = _with_graph(config, graph)
        else:
            dos = forward_jit(config, model.params, flat)[0]
        out[rows] = np.asarray(dos)[: rows.size]
    return out


def _run(params, flat, config, graph: GraphConfig):
    dos, overflow, stats = forward_jit(_with_graph(config, graph), params, flat)
    return dos, overflow, stats, flat.num_nodes
