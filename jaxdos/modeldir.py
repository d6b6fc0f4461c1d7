"""The one on-disk format of every jaxdos model (DOSSampler, CDOSGen, converted MatterGen, ...).

A model directory holds two files:

    model.json       {"kind", "format_version", "config", "meta", "params": {"file", "sha256",
                     "bytes"}}: what the model is, its configs as JSON, free-form metadata (training
                     settings, metrics, conversion report), and the checksum of the parameter file
    params.msgpack   every array of the model: `flax.serialization.msgpack_serialize` of a nested
                     dict of numpy arrays

Why msgpack and not orbax: a model is small and read whole, so one file is enough. One file has
one sha256 and one size, which is what makes a truncated or corrupted model a clear error instead
of a wrong result; it loads without orbax/tensorstore; it stores float32 arrays byte for byte and
keeps the nesting of a flax param tree. Orbax stays where it earns its place: training
checkpoints (optimizer, EMA and data-iterator state, asynchronous saves).

Writes are atomic per file (temporary name in the same folder, fsync, rename, fsync of the
folder), parameters first and `model.json` last: `model.json` is the commit record. A crash in the
middle leaves the previous `model.json` beside the new parameters, which `read` reports as a
checksum mismatch rather than loading a mix. Other files in the folder (training checkpoints, logs)
are left alone.

This module is the ground floor: it imports nothing from jaxdos but `typing` and `chunkstore` (the
one atomic write), and knows
nothing of the model kinds; each stage maps its typed model object onto `save`/`read`
(`jaxdos.sampler.checkpoint`, `jaxdos.crystal.checkpoint`) and `jaxdos.pipeline.models.load`
dispatches on the kind.
"""

import dataclasses
import hashlib
import json
import types
import typing
from pathlib import Path
from typing import NamedTuple

import flax.serialization
import numpy as np

from jaxdos.chunkstore import atomic_write
from jaxdos.typing import PyTree

__all__ = [
    "FORMAT_VERSION",
    "MODEL_FILE",
    "PARAMS_FILE",
    "ModelDir",
    "save",
    "read",
    "read_kind",
    "export",
    "config_to_json",
    "config_from_json",
]

FORMAT_VERSION = 1
MODEL_FILE = "model.json"
PARAMS_FILE = "params.msgpack"
# The files of the formats this one replaces; seeing one names the migration command.
_OLD_FILES = ("sampler.json", "config.json")
_MIGRATE = "python -m jaxdos.pipeline.migrate {dir} NEW_DIR"


class ModelDir(NamedTuple):
    """The contents of a model directory, before a stage turns them into its typed model.

    Fields:
        kind: the model kind ("dossampler", "cdosgen", ...).
        config: the JSON config (see `config_from_json` to rebuild dataclasses).
        meta: free-form JSON metadata.
        params: nested dict of numpy arrays, as saved.
    """

    kind: str
    config: dict
    meta: dict
    params: dict


def _to_numpy(tree, where: str = "params"):
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings, got {k!r}")
            out[k] = _to_numpy(v, f"{where}[{k!r}]")
        return out
    if isinstance(tree, (list, tuple)) or tree is None:
        # msgpack would store these as index-keyed dicts and give back something else.
        raise ValueError(f"{where}: expected a nested dict of arrays, got {type(tree).__name__}")
    return np.asarray(tree)


def save(directory, kind: str, config: dict, params: PyTree, meta: dict | None = None) -> Path:
    """Write a model directory (created if missing; an existing model in it is replaced).

    Args:
        directory: the folder.
        kind: the model kind stored in `model.json` and checked by `read`.
        config: JSON-serialisable config (e.g. from `config_to_json`).
        params: nested dict (string keys) of arrays; jax arrays are copied to the host.
        meta: JSON-serialisable metadata.

    Returns:
        The directory as an absolute path.

    Raises:
        ValueError: if `params` is not a nested dict of arrays or config/meta are not JSON.
    """
    directory = Path(directory).resolve()
    blob = flax.serialization.msgpack_serialize(_to_numpy(params))
    doc = {
        "kind": kind,
        "format_version": FORMAT_VERSION,
        "config": config,
        "meta": meta or {},
        "params": {
            "file": PARAMS_FILE,
            "sha256": hashlib.sha256(blob).hexdigest(),
            "bytes": len(blob),
        },
    }
    try:
        # NaN stays allowed (Python's JSON reads it back): a NaN metric in meta must not make a
        # finished training run fail at its export.
        text = json.dumps(doc, indent=1)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{MODEL_FILE}: config/meta are not JSON-serialisable: {e}") from e
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(directory / PARAMS_FILE, blob)
    atomic_write(directory / MODEL_FILE, text.encode())
    return directory


def _not_a_model(directory: Path) -> FileNotFoundError:
    old = [name for name in _OLD_FILES if (directory / name).exists()]
    if old:
        how = _MIGRATE.format(dir=directory)
        return FileNotFoundError(
            f"{directory / MODEL_FILE}: not found; {directory} holds an old-format model "
            f"({', '.join(old)}); convert it with `{how}`"
        )
    return FileNotFoundError(f"{directory / MODEL_FILE}: not found; not a jaxdos model directory")


def _header(directory: Path) -> dict:
    path = directory / MODEL_FILE
    if not path.is_file():
        raise _not_a_model(directory)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    keys = ("kind", "format_version", "config", "meta", "params")
    missing = [k for k in keys if k not in doc] if isinstance(doc, dict) else list(keys)
    if missing:
        raise ValueError(f"{path}: missing {missing}; not a jaxdos model.json")
    if doc["format_version"] != FORMAT_VERSION:
        raise ValueError(
            f"{path}: unknown format_version {doc['format_version']!r} (this jaxdos reads "
            f"{FORMAT_VERSION}); use the jaxdos version that wrote it"
        )
    return doc


def read_kind(directory) -> str:
    """The kind named in `directory/model.json` (parameters are not read).

    Raises:
        FileNotFoundError, ValueError: as `read`.
    """
    return _header(Path(directory))["kind"]


def export(directory, dest) -> Path:
    """Copy the model folder `directory` to `dest` (a training run's `--export`), replacing what
    is there: into a temporary sibling first, then renamed, so a killed copy leaves the old `dest`
    whole. Returns `dest`."""
    import shutil

    src, dest = Path(directory), Path(dest)
    _header(src)  # a model folder, or the usual one-line error
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def read(directory, kind: str | None = None) -> ModelDir:
    """Read and verify a model directory written by `save`.

    Args:
        directory: the folder.
        kind: the expected kind (None: any).

    Raises:
        FileNotFoundError: naming `model.json` or the parameter file when one is missing (and the
            migration command when the folder holds an old-format model).
        ValueError: naming the file, on a wrong kind, an unknown format_version, a parameter file
            of the wrong size (truncated) or checksum (corrupt), or unreadable JSON.
    """
    directory = Path(directory)
    doc = _header(directory)
    if kind is not None and doc["kind"] != kind:
        raise ValueError(
            f"{directory / MODEL_FILE}: a {doc['kind']!r} model, expected a {kind!r} model"
        )
    info = doc["params"]
    path = directory / info["file"]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (named in {directory / MODEL_FILE})")
    blob = path.read_bytes()
    if len(blob) != info["bytes"]:
        raise ValueError(
            f"{path}: {len(blob)} bytes, {MODEL_FILE} says {info['bytes']} (truncated or "
            "overwritten)"
        )
    if hashlib.sha256(blob).hexdigest() != info["sha256"]:
        raise ValueError(f"{path}: sha256 differs from {MODEL_FILE} (corrupt file)")
    params = flax.serialization.msgpack_restore(blob)
    return ModelDir(kind=doc["kind"], config=doc["config"], meta=doc["meta"], params=params)


def config_to_json(config) -> dict:
    """A frozen-dataclass config (nested dataclasses and tuples too) as a JSON-ready dict."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config: expected a dataclass instance, got {config!r}")
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_json(cls, d: dict):
    """Rebuild dataclass `cls` from `config_to_json(cls(...))`, exactly.

    Field types (from the annotations) steer the rebuild: nested dataclasses, `tuple[X, ...]`,
    `tuple[X, Y]` and `X | None`. Fields missing from `d` take their defaults (a config saved before
    the field existed); an unknown field is an error, because silently dropping it would load a
    different model than the one saved. A dataclass that retired a field says how its older JSON
    reads in a static `upgrade_json(d) -> d`, applied before the check (e.g.
    `jaxdos.neighbors.GraphConfig`, whose `image_budget` gave way to `candidates_per_atom`).

    Raises:
        ValueError: naming the field, on an unknown field or a value of the wrong shape.
    """
    return _build(cls, d, cls.__name__)


def _build(tp, value, where: str):
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {value!r}")
        upgrade = getattr(tp, "upgrade_json", None)
        if upgrade is not None:
            value = upgrade(value)
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}")
        kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return tp(**kwargs)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise ValueError(f"{where}: cannot rebuild a value of type {tp}")
        return _build(rest[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # JSON writers may drop the ".0"
    return value
