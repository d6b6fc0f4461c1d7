"""The DOS predictor as a typed model object in the one model-directory format (kind
"dos_predictor").

`model.json` holds `{"architecture": "equivariant" | "composition", "model": <its config>}` and the
metadata (training settings, data source); `params.msgpack` the linen parameter tree. Both the
equivariant network and the composition baseline are this kind, so every consumer (`predict_dos`,
`jaxdos.pipeline.score(scorer=...)`, the evaluation) takes either.

`load_default()` reads the embedded predictor `jaxdos/assets/predictor_default/` (`make
train-predictor`; its Table 7 figures are in docs/results.md); a checkout without it raises, saying
how to train one.
"""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos import modeldir
from jaxdos.predictor.config import ARCHITECTURES, CompositionConfig, EquivariantConfig
from jaxdos.typing import PyTree

__all__ = ["KIND", "DEFAULT_DIR", "DOSPredictorModel", "load_default"]

KIND = "dos_predictor"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "assets" / "predictor_default"
_TRAIN_HINT = "make train-predictor"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: arrays do not compare
class DOSPredictorModel:
    """A trained crystal -> DOS predictor.

    Attributes:
        params: the linen parameter tree (float32).
        config: `EquivariantConfig` or `CompositionConfig`.
        meta: free-form metadata (training settings, data source, validation metrics).
    """

    params: PyTree
    config: EquivariantConfig | CompositionConfig
    meta: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.config, (EquivariantConfig, CompositionConfig)):
            raise ValueError(
                "config: expected an EquivariantConfig or CompositionConfig, got "
                f"{type(self.config).__name__}"
            )

    @property
    def architecture(self) -> str:
        return next(k for k, v in ARCHITECTURES.items() if isinstance(self.config, v))

    def save(self, directory) -> Path:
        """Write this model to `directory` (see `jaxdos.modeldir.save`); returns its path."""
        config = {"architecture": self.architecture, "model": modeldir.config_to_json(self.config)}
        params = jax.tree.map(lambda x: np.asarray(x, np.float32), self.params)
        return modeldir.save(directory, KIND, config, params, self.meta)

    @classmethod
    def load(cls, directory) -> "DOSPredictorModel":
        """Read a "dos_predictor" model directory.

        Raises:
            FileNotFoundError, ValueError: naming the file (see `jaxdos.modeldir.read`); ValueError
                also for an unknown architecture.
        """
        d = modeldir.read(directory, kind=KIND)
        arch = d.config.get("architecture")
        if arch not in ARCHITECTURES:
            raise ValueError(
                f"{Path(directory) / modeldir.MODEL_FILE}: unknown predictor architecture "
                f"{arch!r} (known: {sorted(ARCHITECTURES)})"
            )
        config = modeldir.config_from_json(ARCHITECTURES[arch], d.config["model"])
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), d.params)
        return cls(params=params, config=config, meta=d.meta)


def load_default() -> DOSPredictorModel:
    """The embedded predictor.

    Raises:
        FileNotFoundError: the embedded folder is missing; the message says how to train one.
    """
    if not (DEFAULT_DIR / modeldir.MODEL_FILE).exists():
        raise FileNotFoundError(
            f"{DEFAULT_DIR / modeldir.MODEL_FILE}: no default DOS predictor here; train "
            f"one with `{_TRAIN_HINT}` (or `python -m experiments.train_predictor --out DIR` and "
            "pass model=DIR)"
        )
    return DOSPredictorModel.load(DEFAULT_DIR)
