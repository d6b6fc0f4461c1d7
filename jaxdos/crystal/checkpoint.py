"""The embedded default CDOSGen model: a `tiny` GemNet-T pre-trained on the offline world subset
and DOS-fine-tuned, committed under `jaxdos/assets/crystal_tiny/`.

Files: `params.msgpack` (flax serialisation of the conditional model's params), `config.json`
(the `GemNetConfig`, the training num_atoms distribution, the recommended CPU sampler steps and the
measured validation losses). Orbax directories are for training runs; the committed asset is one
small msgpack file so that it loads without orbax and diff-reviews as a binary blob.
"""

import dataclasses
import json
from pathlib import Path

import flax.serialization
import jax
import numpy as np

from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.gemnet.config import GemNetConfig, ScalarProperty
from jaxdos.crystal.graph import GraphConfig
from jaxdos.typing import PyTree

__all__ = [
    "DEFAULT_DIR",
    "CPU_SAMPLING_STEPS",
    "save_model",
    "load_model",
    "load_default",
    "merge_base_params",
]

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "crystal_tiny"
CPU_SAMPLING_STEPS = 100  # documented CPU default for the end-to-end pipeline (paper: 1000)


def config_to_dict(config: GemNetConfig) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(d: dict) -> GemNetConfig:
    d = dict(d)
    d["graph"] = GraphConfig(**d["graph"])
    d["scale_factors"] = tuple((str(k), float(v)) for k, v in d["scale_factors"])
    d["properties"] = tuple(ScalarProperty(**p) for p in d["properties"])
    return GemNetConfig(**d)


def save_model(
    directory,
    params: PyTree,
    config: GemNetConfig,
    distribution: NumAtomsDistribution,
    meta: dict | None = None,
) -> None:
    """Write `params.msgpack` and `config.json` into `directory` (created)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    host = jax.tree.map(np.asarray, params)
    (directory / "params.msgpack").write_bytes(flax.serialization.msgpack_serialize(host))
    doc = {
        "format": "jaxdos-crystal-v1",
        "gemnet_config": config_to_dict(config),
        "num_atoms_probs": list(distribution.probs),
        "cpu_sampling_steps": CPU_SAMPLING_STEPS,
        **(meta or {}),
    }
    (directory / "config.json").write_text(json.dumps(doc, indent=1))


def load_model(directory) -> tuple[PyTree, GemNetConfig, NumAtomsDistribution, dict]:
    """(params, config, num_atoms distribution, the rest of config.json) from `directory`.

    Raises:
        FileNotFoundError: if the files are missing; ValueError: on an unknown format.
    """
    directory = Path(directory)
    doc = json.loads((directory / "config.json").read_text())
    if doc.get("format") != "jaxdos-crystal-v1":
        raise ValueError(f"config.json: unknown format {doc.get('format')!r}")
    params = flax.serialization.msgpack_restore((directory / "params.msgpack").read_bytes())
    params = jax.tree.map(np.asarray, params)
    config = config_from_dict(doc.pop("gemnet_config"))
    dist = NumAtomsDistribution(probs=tuple(doc.pop("num_atoms_probs")))
    return params, config, dist, doc


def load_default() -> tuple[PyTree, GemNetConfig, NumAtomsDistribution]:
    """The committed tiny DOS-conditional model: (params, GemNetConfig, num_atoms distribution)."""
    if not (DEFAULT_DIR / "params.msgpack").exists():
        raise FileNotFoundError(
            f"{DEFAULT_DIR}: the default crystal model is not there; train it with "
            "`python -m experiments.train_crystal --make-default`"
        )
    params, config, dist, _ = load_model(DEFAULT_DIR)
    return params, config, dist


def merge_base_params(cond_params: PyTree, base_params: PyTree) -> PyTree:
    """MatterGen's fine-tune init: every conditional-model leaf whose path exists in the base model
    takes the base value (adapters and the DOS embedding keep their fresh init).

    Raises:
        ValueError: if a shared path has a different shape.
    """
    flat_base = {
        jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_leaves_with_path(base_params)
    }

    def pick(path, leaf):
        v = flat_base.get(jax.tree_util.keystr(path))
        if v is None:
            return leaf
        if np.shape(v) != np.shape(leaf):
            raise ValueError(
                f"base_params{jax.tree_util.keystr(path)}: shape {np.shape(v)} != {np.shape(leaf)}"
            )
        return v

    return jax.tree_util.tree_map_with_path(pick, cond_params)
