"""CDOSGen as a typed model object, saved in the one model-directory format.

`CDOSGenModel` is what generation needs: the GemNet-T params, the `GemNetConfig`, the
`DiffusionConfig` it was trained with (the sampler reads its coordinate and lattice processes), the
training distribution of atom counts, and metadata. It is saved with `jaxdos.modeldir` (kind
"cdosgen"): `model.json` holds the three configs and the metadata, `params.msgpack` the flax
variables {"params": ...}. A converted MatterGen checkpoint (`jaxdos.crystal.convert`) is the same
kind, so it loads as the same object.

`load_default()` reads the embedded `tiny` model: a GemNet-T pre-trained on the offline world
subset and DOS-fine-tuned (`python -m experiments.train_crystal --make-default`), committed under
`jaxdos/assets/crystal_tiny/`. Training checkpoints are orbax directories; see `jaxdos.crystal.fit`.
"""

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from jaxdos import modeldir
from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion.corruption import DiffusionConfig
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
from jaxdos.crystal.gemnet.config import GemNetConfig
from jaxdos.typing import PyTree

__all__ = [
    "KIND",
    "DEFAULT_DIR",
    "CDOSGenModel",
    "save_model",
    "load_default",
    "merge_base_params",
]

KIND = "cdosgen"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "crystal_tiny"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: arrays do not compare
class CDOSGenModel:
    """A CDOSGen (or converted MatterGen) score network with what sampling from it needs.

    Attributes:
        params: flax variables `{"params": ...}` of `GemNetTDenoiser(gemnet)`.
        gemnet: the network config.
        diffusion: the forward processes it was trained with.
        num_atoms: the training distribution of atom counts (drawn before sampling).
        meta: free-form metadata (training settings and metrics, or the conversion report).
    """

    params: PyTree
    gemnet: GemNetConfig
    diffusion: DiffusionConfig = DiffusionConfig()
    num_atoms: NumAtomsDistribution
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        for name, cls in (
            ("gemnet", GemNetConfig),
            ("diffusion", DiffusionConfig),
            ("num_atoms", NumAtomsDistribution),
        ):
            if not isinstance(getattr(self, name), cls):
                got = type(getattr(self, name)).__name__
                raise ValueError(f"{name}: expected a {cls.__name__}, got {got}")
        if not isinstance(self.params, dict) or set(self.params) != {"params"}:
            raise ValueError("params: expected flax variables {'params': ...}")

    @functools.cached_property
    def denoiser(self) -> GemNetTDenoiser:
        """The flax module (built once per model object)."""
        return GemNetTDenoiser(self.gemnet)

    def save(self, directory) -> Path:
        """Write this model to `directory` (see `jaxdos.modeldir.save`); returns its path."""
        config = {
            "gemnet": modeldir.config_to_json(self.gemnet),
            "diffusion": modeldir.config_to_json(self.diffusion),
            "num_atoms": modeldir.config_to_json(self.num_atoms),
        }
        return modeldir.save(directory, KIND, config, self.params, self.meta)

    @classmethod
    def load(cls, directory) -> "CDOSGenModel":
        """Read a "cdosgen" model directory.

        Raises:
            FileNotFoundError, ValueError: naming the file (see `jaxdos.modeldir.read`).
        """
        d = modeldir.read(directory, kind=KIND)
        return cls(
            params=d.params,
            gemnet=modeldir.config_from_json(GemNetConfig, d.config["gemnet"]),
            diffusion=modeldir.config_from_json(DiffusionConfig, d.config["diffusion"]),
            num_atoms=modeldir.config_from_json(NumAtomsDistribution, d.config["num_atoms"]),
            meta=d.meta,
        )


def save_model(
    directory,
    params: PyTree,
    config: GemNetConfig,
    distribution: NumAtomsDistribution,
    meta: dict | None = None,
    *,
    diffusion: DiffusionConfig | None = None,
) -> Path:
    """Write a CDOSGen model directory; the trainers' export call. Returns the path.

    `diffusion` is the training `DiffusionConfig` (None: `DiffusionConfig()`).
    """
    diffusion = DiffusionConfig() if diffusion is None else diffusion
    host = jax.tree.map(np.asarray, params)
    model = CDOSGenModel(
        params=host, gemnet=config, diffusion=diffusion, num_atoms=distribution, meta=meta or {}
    )
    return model.save(directory)


def load_default() -> CDOSGenModel:
    """The embedded `tiny` DOS-conditional model.

    Raises:
        FileNotFoundError: if the embedded model is not in this checkout (says how to train it).
    """
    if not (DEFAULT_DIR / modeldir.MODEL_FILE).exists():
        raise FileNotFoundError(
            f"{DEFAULT_DIR / modeldir.MODEL_FILE}: the default crystal model is not there; train "
            "it with `python -m experiments.train_crystal --make-default`"
        )
    return CDOSGenModel.load(DEFAULT_DIR)


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
