"""Load any jaxdos model by its directory; migrate the model folders of earlier versions.

    load(dir)                  -> DOSSamplerModel | CDOSGenModel | DOSPredictorModel, by the kind
                               in dir/model.json
    load_default(kind)         the embedded model of kind "dossampler", "cdosgen" or
                               "dos_predictor" (cached)
    load_checked(field, m, k)  `as_model`, its errors as one line naming a config field / flag
    migrate(old, new)          rewrite an old-format folder in the one format (jaxdos.modeldir)

    python -m jaxdos.pipeline.migrate OLD NEW     (the command line of `migrate`)

The old formats (before issue 13) were three: the sampler's orbax `params/` + `sampler.json`
("jaxdos-sampler-v1"), CDOSGen's `params.msgpack` + `config.json` ("jaxdos-crystal-v1"), and the
MatterGen converter's orbax `params/` + `config.json` ("jaxdos-mattergen-v1"). Their readers live
here only, for `migrate`; nothing else reads them.
"""

import functools
import json
from pathlib import Path

from jaxdos import modeldir
from jaxdos.crystal.checkpoint import KIND as CDOSGEN
from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.checkpoint import load_default as _cdosgen_default
from jaxdos.predictor.checkpoint import KIND as DOS_PREDICTOR
from jaxdos.predictor.checkpoint import DOSPredictorModel
from jaxdos.predictor.checkpoint import load_default as _predictor_default
from jaxdos.sampler.checkpoint import KIND as DOSSAMPLER
from jaxdos.sampler.checkpoint import DOSSamplerModel
from jaxdos.sampler.checkpoint import load_default as _sampler_default

__all__ = [
    "KINDS",
    "Model",
    "load",
    "load_default",
    "as_model",
    "load_checked",
    "read_old",
    "migrate",
]

Model = DOSSamplerModel | CDOSGenModel | DOSPredictorModel
KINDS = {DOSSAMPLER: DOSSamplerModel, CDOSGEN: CDOSGenModel, DOS_PREDICTOR: DOSPredictorModel}
_DEFAULTS = {
    DOSSAMPLER: _sampler_default,
    CDOSGEN: _cdosgen_default,
    DOS_PREDICTOR: _predictor_default,
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {sorted(KINDS)}, got {kind!r}")


def load(directory) -> Model:
    """The typed model saved in `directory`, whatever its kind.

    Raises:
        FileNotFoundError, ValueError: naming the file (see `jaxdos.modeldir.read`); ValueError
            also for a kind this jaxdos does not know.
    """
    kind = modeldir.read_kind(directory)
    if kind not in KINDS:
        raise ValueError(
            f"{Path(directory) / modeldir.MODEL_FILE}: unknown model kind {kind!r} "
            f"(known: {sorted(KINDS)})"
        )
    return KINDS[kind].load(directory)


@functools.cache  # the embedded models never change within a process; load each once
def load_default(kind: str) -> Model:
    """The embedded tiny model of `kind` ("dossampler", "cdosgen" or "dos_predictor").

    Raises:
        ValueError: on an unknown kind; FileNotFoundError: if the model is not in this checkout.
    """
    _check_kind(kind)
    return _DEFAULTS[kind]()


def as_model(model, kind: str) -> Model:
    """`model` as a typed model of `kind`: None is the embedded default, a path is loaded.

    Args:
        model: None, a typed model object, or a model directory (str or Path).
        kind: "dossampler", "cdosgen" or "dos_predictor".

    Raises:
        ValueError: if `model` is of another kind or type; FileNotFoundError, ValueError from
            loading a directory.
    """
    _check_kind(kind)
    if model is None:
        return load_default(kind)
    if isinstance(model, (str, Path)):
        return KINDS[kind].load(model)
    if not isinstance(model, KINDS[kind]):
        raise ValueError(
            f"model: expected a {KINDS[kind].__name__} or a {kind!r} model directory, got "
            f"{type(model).__name__}"
        )
    return model


def load_checked(field: str, model, kind: str) -> Model:
    """`as_model(model, kind)` with any loading error (wrong kind, missing or corrupt file) as one
    ValueError line naming `field`, the config field the commands turn into their flag."""
    try:
        return as_model(model, kind)
    except (OSError, ValueError) as err:
        raise ValueError(f"{field}: {err}") from None


# --- old formats: read for `migrate` only ------------------------------------------------------


def _read_old_sampler(old: Path) -> DOSSamplerModel:
    """A "jaxdos-sampler-v1" folder: orbax `params/`, `scale_distribution.npz`, `sampler.json`."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import orbax.checkpoint as ocp

    from jaxdos.sampler.config import ModelConfig
    from jaxdos.sampler.sampling import SamplerParams
    from jaxdos.sampler.scale import ScaleDistribution

    header = json.loads((old / "sampler.json").read_text())
    tree = ocp.StandardCheckpointer().restore((old / "params").resolve())
    tree = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)
    with np.load(old / "scale_distribution.npz") as z:
        dist = ScaleDistribution(scale=z["scale"], band_gap=z["band_gap"])
    return DOSSamplerModel(
        params=SamplerParams(**tree),
        config=modeldir.config_from_json(ModelConfig, header["model_config"]),
        scale_distribution=dist,
        meta=header.get("meta", {}),
    )


def _read_old_crystal(old: Path, doc: dict) -> CDOSGenModel:
    """A "jaxdos-crystal-v1" folder: `params.msgpack` + `config.json` (no diffusion config)."""
    import flax.serialization
    import jax
    import numpy as np

    from jaxdos.crystal.diffusion.corruption import DiffusionConfig
    from jaxdos.crystal.diffusion.d3pm import D3PMConfig
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
    from jaxdos.crystal.gemnet.config import GemNetConfig

    params = flax.serialization.msgpack_restore((old / "params.msgpack").read_bytes())
    meta = {k: v for k, v in doc.items() if k not in ("format", "gemnet_config", "num_atoms_probs")}
    # The format kept no DiffusionConfig. train_crystal varied only the type loss weight (its
    # --type-ce lever, recorded in meta["loss"]); everything else was DiffusionConfig().
    type_ce = (meta.get("loss") or {}).get("type_ce")
    types = D3PMConfig() if type_ce is None else D3PMConfig(hybrid_coeff=float(type_ce))
    return CDOSGenModel(
        params=jax.tree.map(np.asarray, params),
        gemnet=modeldir.config_from_json(GemNetConfig, doc["gemnet_config"]),
        diffusion=DiffusionConfig(types=types),
        num_atoms=NumAtomsDistribution(probs=tuple(doc["num_atoms_probs"])),
        meta=meta,
    )


def _read_old_converted(old: Path, doc: dict) -> CDOSGenModel:
    """A "jaxdos-mattergen-v1" folder: orbax `params/`, `config.json`, `conversion.json`."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    from jaxdos.crystal.diffusion.corruption import DiffusionConfig
    from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20
    from jaxdos.crystal.gemnet.config import GemNetConfig

    params = ocp.StandardCheckpointer().restore((old / "params").resolve())
    report = old / "conversion.json"
    meta = {"source": "mattergen"}
    if report.is_file():
        meta["conversion"] = json.loads(report.read_text())
    return CDOSGenModel(
        params=jax.tree.map(np.asarray, params),
        gemnet=modeldir.config_from_json(GemNetConfig, doc["gemnet"]),
        diffusion=modeldir.config_from_json(DiffusionConfig, doc["diffusion"]),
        num_atoms=ALEX_MP_20,  # what the converter gives a MatterGen model (trained on alex-mp-20)
        meta=meta,
    )


def read_old(old) -> Model:
    """The typed model of an old-format folder (see the module docstring).

    Raises:
        ValueError: naming the folder, if it holds none of the old formats.
    """
    old = Path(old)
    if (old / "sampler.json").is_file():
        fmt = json.loads((old / "sampler.json").read_text()).get("format")
        if fmt == "jaxdos-sampler-v1":
            return _read_old_sampler(old)
    elif (old / "config.json").is_file():
        doc = json.loads((old / "config.json").read_text())
        fmt = doc.get("format")
        if fmt == "jaxdos-crystal-v1":
            return _read_old_crystal(old, doc)
        if fmt == "jaxdos-mattergen-v1":
            return _read_old_converted(old, doc)
    else:
        fmt = None
    raise ValueError(
        f"{old}: not an old-format jaxdos model (format {fmt!r}; expected sampler.json or "
        "config.json of jaxdos-sampler-v1, jaxdos-crystal-v1 or jaxdos-mattergen-v1)"
    )


def migrate(old, new) -> Model:
    """Rewrite the old-format model in folder `old` as a model directory `new`; returns it.

    `new` may equal `old`: the new files are written beside the old ones, which are left for the
    user to delete.

    Raises:
        ValueError: if `old` holds no old-format model, or `new` already holds a model.
    """
    new = Path(new)
    if (new / modeldir.MODEL_FILE).exists():
        raise ValueError(f"{new / modeldir.MODEL_FILE}: exists; not overwriting a model")
    model = read_old(old)
    model.save(new)
    return load(new)
