"""The DOSSampler as a typed model object, saved in the one model-directory format.

`DOSSamplerModel` is what sampling needs (not the optimiser): the score network and regressor
params with the property statistics (`SamplerParams`), the `ModelConfig`, and the training-set K
distribution (`ScaleDistribution`) that the prior draws from. It is saved with `jaxdos.modeldir`
(kind "dossampler"): `model.json` holds the `ModelConfig` and the metadata, `params.msgpack` the
arrays {"params": SamplerParams fields, "scale_distribution": {scale, band_gap}}.

`load_default()` reads the embedded `tiny` sampler committed under `jaxdos/assets/sampler_tiny/`
(trained by `python -m experiments.train_sampler`). Training checkpoints (optimiser, EMA, data
state) are separate orbax directories; see `jaxdos.training` and `jaxdos.sampler.fit`.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import modeldir
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.sampling import SamplerParams
from jaxdos.sampler.scale import ScaleDistribution

__all__ = ["KIND", "DEFAULT_DIR", "DOSSamplerModel", "save_sampler", "load_default"]

KIND = "dossampler"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "sampler_tiny"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: arrays do not compare
class DOSSamplerModel:
    """A trained DOSSampler: everything `guided_proposer` and `sample_dos` read.

    Attributes:
        params: score network, regressor and property statistics `[P]` (float32).
        config: the network sizes.
        scale_distribution: training-set K `[M]` with the band gap of the same record.
        meta: free-form metadata (training settings, data source).
    """

    params: SamplerParams
    config: ModelConfig
    scale_distribution: ScaleDistribution
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.params, SamplerParams):
            raise ValueError(f"params: expected SamplerParams, got {type(self.params).__name__}")
        if not isinstance(self.config, ModelConfig):
            raise ValueError(f"config: expected a ModelConfig, got {type(self.config).__name__}")
        if not isinstance(self.scale_distribution, ScaleDistribution):
            raise ValueError(
                "scale_distribution: expected a ScaleDistribution, got "
                f"{type(self.scale_distribution).__name__}"
            )

    def save(self, directory) -> Path:
        """Write this model to `directory` (see `jaxdos.modeldir.save`); returns its path."""
        arrays = {
            "params": jax.tree.map(lambda x: np.asarray(x, np.float32), self.params._asdict()),
            "scale_distribution": {
                k: np.asarray(v, np.float32) for k, v in self.scale_distribution._asdict().items()
            },
        }
        config = {"model": modeldir.config_to_json(self.config)}
        return modeldir.save(directory, KIND, config, arrays, self.meta)

    @classmethod
    def load(cls, directory) -> "DOSSamplerModel":
        """Read a "dossampler" model directory.

        Raises:
            FileNotFoundError, ValueError: naming the file (see `jaxdos.modeldir.read`).
        """
        d = modeldir.read(directory, kind=KIND)
        tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), d.params["params"])
        dist = d.params["scale_distribution"]
        return cls(
            params=SamplerParams(**tree),
            config=modeldir.config_from_json(ModelConfig, d.config["model"]),
            scale_distribution=ScaleDistribution(scale=dist["scale"], band_gap=dist["band_gap"]),
            meta=d.meta,
        )


def save_sampler(
    path,
    params: SamplerParams,
    model_config: ModelConfig,
    scale_distribution: ScaleDistribution,
    *,
    meta: dict | None = None,
) -> Path:
    """Write a sampler model directory at `path`; the trainers' export call. Returns the path."""
    model = DOSSamplerModel(
        params=params, config=model_config, scale_distribution=scale_distribution, meta=meta or {}
    )
    return model.save(path)


def load_default() -> DOSSamplerModel:
    """The embedded `tiny` sampler.

    Raises:
        FileNotFoundError: if the embedded model is not in this checkout (says how to train it).
    """
    if not (DEFAULT_DIR / modeldir.MODEL_FILE).exists():
        raise FileNotFoundError(
            f"{DEFAULT_DIR / modeldir.MODEL_FILE}: no embedded sampler; train one with "
            "`python -m experiments.train_sampler --out jaxdos/assets/sampler_tiny`"
        )
    return DOSSamplerModel.load(DEFAULT_DIR)
