"""Sampler checkpoints: what sampling needs (not the optimiser), saved with orbax.

Layout of a sampler directory:
    params/                   orbax PyTree: {diffusion, regressor, prop_mean, prop_std}
    scale_distribution.npz    ScaleDistribution arrays (K and band gap of training records)
    sampler.json              {"model_config": ..., "meta": ...}

`load_default()` reads the embedded `tiny` checkpoint committed under `jaxdos/assets/sampler_tiny/`
(trained by `python -m experiments.train_sampler`). Full training checkpoints (optimiser, EMA, data
state) are separate; see `jaxdos.sampler.fit`.
"""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.sampling import SamplerParams
from jaxdos.sampler.scale import ScaleDistribution

__all__ = ["DEFAULT_DIR", "save_sampler", "load_sampler", "load_default"]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "sampler_tiny"
_FORMAT = "jaxdos-sampler-v1"


def save_sampler(
    path,
    params: SamplerParams,
    model_config: ModelConfig,
    scale_distribution: ScaleDistribution,
    *,
    meta: dict | None = None,
) -> Path:
    """Write a sampler directory at `path` (created; an existing one is replaced)."""
    path = Path(path).resolve()
    path.mkdir(parents=True, exist_ok=True)
    tree = jax.tree.map(lambda x: np.asarray(x, np.float32), params._asdict())
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(path / "params", tree, force=True)
    ckpt.wait_until_finished()
    np.savez(path / "scale_distribution.npz", **scale_distribution._asdict())
    header = {"format": _FORMAT, "model_config": model_config.to_dict(), "meta": meta or {}}
    (path / "sampler.json").write_text(json.dumps(header, indent=1, sort_keys=True))
    return path


def load_sampler(path) -> tuple[SamplerParams, ModelConfig, ScaleDistribution]:
    """Read a sampler directory written by `save_sampler`.

    Raises:
        ValueError: if `path` is not a sampler directory of this format.
    """
    path = Path(path).resolve()
    header_file = path / "sampler.json"
    if not header_file.exists():
        raise ValueError(f"path: {path} has no sampler.json; not a sampler checkpoint")
    header = json.loads(header_file.read_text())
    if header.get("format") != _FORMAT:
        raise ValueError(f"path: {path} has format {header.get('format')!r}, expected {_FORMAT!r}")
    config = ModelConfig.from_dict(header["model_config"])
    tree = ocp.StandardCheckpointer().restore(path / "params")
    tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    params = SamplerParams(**tree)
    with np.load(path / "scale_distribution.npz") as z:
        dist = ScaleDistribution(scale=z["scale"], band_gap=z["band_gap"])
    return params, config, dist


def load_default() -> tuple[SamplerParams, ModelConfig, ScaleDistribution]:
    """The embedded `tiny` sampler: (params, model config, training-set K distribution).

    Raises:
        ValueError: if the embedded checkpoint has not been trained/committed in this checkout.
    """
    if not (DEFAULT_DIR / "sampler.json").exists():
        raise ValueError(
            f"no embedded sampler at {DEFAULT_DIR}; train one with "
            "`python -m experiments.train_sampler --out jaxdos/assets/sampler_tiny`"
        )
    return load_sampler(DEFAULT_DIR)
