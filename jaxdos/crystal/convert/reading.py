"""Read a MatterGen model folder: `config.yaml` + a Lightning checkpoint or a bare state_dict.

torch is imported lazily inside `read_checkpoint` (unpickling needs it); nothing else in jaxdos
imports torch. Tensors come back as float32 numpy arrays keyed by the model-relative state_dict name
(`diffusion_module.model.` stripped). Everything in the file that is not a model tensor is listed in
`Checkpoint.dropped` with the reason it is not converted.
"""

import dataclasses
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import yaml

__all__ = ["Checkpoint", "ConversionError", "read_checkpoint", "read_model_dir", "MODEL_PREFIX"]

MODEL_PREFIX = "diffusion_module.model."

# Lightning 2.0 checkpoint entries besides `state_dict`, and why none of them is converted.
_LIGHTNING_DROPS = {
    "optimizer_states": "Adam moments: training state, not needed to sample",
    "lr_schedulers": "ReduceLROnPlateau state: training only",
    "epoch": "training progress counter",
    "global_step": "training progress counter",
    "pytorch-lightning_version": "writer version (informational)",
    "callbacks": "Lightning callback state: training only",
    "loops": "Lightning loop state: training only",
    "hparams_name": "Lightning hyper-parameter bookkeeping",
    "hyper_parameters": "Lightning hyper-parameter copy; config.yaml is the source",
    "hyper_parameters_name": "Lightning hyper-parameter bookkeeping",
    "config": "AddConfigCallback copy of config.yaml (used only when config.yaml is absent)",
}


class ConversionError(ValueError):
    """A checkpoint or config that the strict converter refuses; the message names every key."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Model tensors of one checkpoint.

    Attributes:
        tensors: model-relative state_dict name -> float32 (or int) numpy array.
        dropped: checkpoint entry -> reason it is not converted (optimizer state, counters, ...).
        embedded_config: the `config` dict a MatterGen Lightning checkpoint carries, if any.
        source: the file read.
    """

    tensors: dict
    dropped: dict
    embedded_config: dict | None
    source: str


def _load_torch(path: Path, trust_pickle: bool):
    try:
        import torch  # lazy: only reading a torch file needs torch
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConversionError(
            "reading a PyTorch checkpoint needs torch (scripts/install_parity.sh installs a CPU "
            "build)"
        ) from e
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as e:
        raise ConversionError(
            f"{path}: holds Python objects that the safe loader refuses ({e}); if you trust the "
            "file, pass trust_pickle=True (CLI: --trust-pickle)"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ConversionError(f"{path}: not a readable torch checkpoint (truncated?): {e}") from e


def _to_numpy(name: str, value) -> np.ndarray:
    if not hasattr(value, "detach"):
        raise ConversionError(
            f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor"
        )
    arr = value.detach().cpu().numpy()
    if arr.dtype.kind == "f" and arr.dtype != np.float32:
        raise ConversionError(f"tensor {name!r} has dtype {arr.dtype}; expected float32")
    return arr


def read_checkpoint(path, *, trust_pickle: bool = False) -> Checkpoint:
    """Read a Lightning `.ckpt` (dict with `state_dict`) or a bare state_dict file.

    Raises:
        ConversionError: unreadable/truncated file, non-tensor entries, non-float32 tensors, or
            state_dict keys outside `diffusion_module.model.` in a Lightning checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"checkpoint {path} does not exist")
    obj = _load_torch(path, trust_pickle)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a dict, got {type(obj).__name__}")
    dropped, embedded = {}, None
    if "state_dict" in obj:  # Lightning checkpoint
        raw = obj["state_dict"]
        for key in obj:
            if key == "state_dict":
                continue
            if key not in _LIGHTNING_DROPS:
                raise ConversionError(f"{path}: unknown Lightning checkpoint entry {key!r}")
            dropped[key] = _LIGHTNING_DROPS[key]
        if isinstance(obj.get("config"), dict):
            embedded = obj["config"]
        outside = [k for k in raw if not k.startswith(MODEL_PREFIX)]
        if outside:
            raise ConversionError(f"{path}: state_dict keys outside {MODEL_PREFIX!r}: {outside}")
        tensors = {k[len(MODEL_PREFIX) :]: _to_numpy(k, v) for k, v in raw.items()}
    else:  # bare state_dict, with or without the Lightning prefix
        tensors = {k.removeprefix(MODEL_PREFIX): _to_numpy(k, v) for k, v in obj.items()}
    return Checkpoint(tensors, dropped, embedded, str(path))


def _checkpoint_file(model_dir: Path) -> Path:
    for candidate in ("checkpoints/last.ckpt", "state_dict.pt"):
        if (model_dir / candidate).is_file():
            return model_dir / candidate
    raise ConversionError(
        f"{model_dir}: no checkpoints/last.ckpt (Lightning) or state_dict.pt (bare state_dict)"
    )


def read_model_dir(model_dir, *, trust_pickle: bool = False) -> tuple[dict, Checkpoint]:
    """(config dict, checkpoint) of a MatterGen model folder.

    The config is `config.yaml`, or the copy embedded in the Lightning checkpoint when the yaml
    file is absent.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConversionError(f"model_dir {model_dir} is not a directory")
    ckpt = read_checkpoint(_checkpoint_file(model_dir), trust_pickle=trust_pickle)
    cfg_file = model_dir / "config.yaml"
    if cfg_file.is_file():
        try:
            config = yaml.safe_load(io.StringIO(cfg_file.read_text()))
        except yaml.YAMLError as e:
            raise ConversionError(f"{cfg_file}: not valid YAML: {e}") from e
    elif ckpt.embedded_config is not None:
        config = ckpt.embedded_config
    else:
        raise ConversionError(f"{model_dir}: no config.yaml and no config inside the checkpoint")
    if not isinstance(config, dict):
        raise ConversionError(f"{model_dir}: config is a {type(config).__name__}, not a mapping")
    return config, ckpt
