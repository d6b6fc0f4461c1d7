"""Strict jaxdos -> MatterGen export: the inverse of `convert_state_dict`, from the same name map.

Every flax param of a `CDOSGenModel` becomes the one torch key whose `name_map.RULES` match maps
back onto it (candidates: the flax path with each `_` read as `_` or `.`, i.e. the inverse of
`dotted_to_flax`; ties go to the earliest rule, then to the key with the most `.`), with the
rule's layout hook undone (`transpose` is its own inverse). ScalingFactors and scaler statistics
come back from the config the same way (`scale` / `scaler` rules). The export holds exactly what
`convert_state_dict` consumes: the tensors MatterGen has but the converter drops or recomputes
(energy head, GaussianSmearing offsets, sinusoid `div_term`s) are left to the torch module's own
values (load it with `strict=False`; the missing keys are then exactly the `drop` / `buffer` keys).

The DOS adapter (paper eq. 2: log(1 + d) -> Linear -> LayerNorm -> GELU -> Linear -> GELU) has
param names in the map but no MatterGen module that computes it (a `PropertyEmbedding` applies its
scaler, not log1p, to the value), so a DOS model exports only with `unconditional=True`: the base
network, whose score equals the jaxdos score with the DOS dropped (m = 0 zeroes the adapter
contribution, `jaxdos.crystal.conditioning`).
"""

import dataclasses
import itertools

import numpy as np
from flax import traverse_util

from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.convert.config import export_config
from jaxdos.crystal.convert.convert import param_template
from jaxdos.crystal.convert.name_map import RULES, apply_hook, match
from jaxdos.crystal.convert.reading import ConversionError
from jaxdos.crystal.gemnet import GemNetConfig, scale_paths

__all__ = ["export_state_dict", "on_mattergen_clock", "torch_key"]

_LEAF = {"kernel": "weight", "embedding": "weight", "scale": "weight", "weight": "weight",
         "bias": "bias"}  # fmt: skip
_MAX_UNDERSCORES = 14  # 2^14 candidates at most for one path (the longest MatterGen path has 7)


def on_mattergen_clock(model: CDOSGenModel) -> CDOSGenModel:
    """`model` with MatterGen's cell clock (`time_power` 1) and the same network.

    What `export_state_dict` can write for a model trained on a warped cell clock (which it
    refuses): the network is exact, but MatterGen's sampler then runs the cell on the clock t
    rather than t^P it was trained on, so use it to compare networks or speed, not samples.
    """
    cell = dataclasses.replace(model.diffusion.cell, time_power=1.0)
    return dataclasses.replace(model, diffusion=dataclasses.replace(model.diffusion, cell=cell))


def _is_dos(path: str) -> bool:
    head = path.split("/")[1] if path.startswith("gemnet/") else path.split("/")[0]
    return head.startswith(("property_embeddings_adapt_dos_", "cond_adapt_layers_dos_",
                            "cond_mixin_layers_dos_"))  # fmt: skip


def _variants(dotted: str):
    pieces = dotted.split("_")
    if len(pieces) - 1 > _MAX_UNDERSCORES:
        raise ConversionError(f"export: path {dotted!r} has too many '_' to invert")
    for seps in itertools.product("_.", repeat=len(pieces) - 1):
        yield pieces[0] + "".join(s + p for s, p in zip(seps, pieces[1:], strict=True))


def torch_key(kind: str, target, module: str, leaf: str) -> tuple[str, str]:
    """(torch key, hook) of the unique best rule of `kind` mapping back onto `target`.

    Args:
        kind: "param", "scale" or "scaler" (the `Rule.kind` the key must match).
        target: the flax path (param / scale) or the (property, field) pair (scaler).
        module: the flax module path, `/`-separated (inverted to candidate dotted names).
        leaf: the torch leaf name appended to each candidate.

    Raises:
        ConversionError: when no rule maps any candidate back onto `target`.
    """
    best = None
    for cand in _variants(module.replace("/", ".")):
        key = f"{cand}.{leaf}"
        hit = match(key)
        if hit is None or hit[0].kind != kind or hit[0].target(hit[1]) != target:
            continue
        rank = (RULES.index(hit[0]), -key.count("."))
        if best is None or rank < best[0]:
            best = (rank, key, hit[0].hook)
    if best is None:
        raise ConversionError(f"export: no name-map rule maps a MatterGen key onto {target!r}")
    return best[1], best[2]


def _check_exportable(gemnet: GemNetConfig, unconditional: bool) -> None:
    problems = []
    if gemnet.time_scale != 1.0:
        problems.append(f"time_scale={gemnet.time_scale} (MatterGen: 1.0)")
    if gemnet.pos_sigma_ref is not None:
        problems.append(f"pos_sigma_ref={gemnet.pos_sigma_ref} (MatterGen: none)")
    if gemnet.frac_fourier:
        problems.append(f"frac_fourier={gemnet.frac_fourier} (MatterGen: 0)")
    if gemnet.frac_head:
        problems.append(f"frac_head={gemnet.frac_head} (MatterGen: 0)")
    if gemnet.num_type_classes != 101:
        problems.append(f"num_type_classes={gemnet.num_type_classes} (MatterGen: 101)")
    if gemnet.dos_dim is not None and not unconditional:
        problems.append(
            "a DOS adapter: MatterGen has no module computing paper eq. 2 (log1p before the "
            "Sequential); pass unconditional=True to export the base network"
        )
    if problems:
        raise ConversionError("export: not representable in MatterGen: " + "; ".join(problems))


def export_state_dict(model: CDOSGenModel, *, unconditional: bool = False) -> tuple[dict, dict]:
    """A CDOSGen as a MatterGen `config.yaml` dict and a model-relative state_dict (numpy).

    Args:
        model: the CDOSGen (a jaxdos-trained one or a converted MatterGen one).
        unconditional: drop the DOS adapter (required for a DOS model; module docstring).

    Returns:
        (config dict `translate_config` reads back, {torch key: float32 array}); with
        `convert_checkpoint` they give back the same params bit for bit.

    Raises:
        ConversionError: listing every param missing from, extra to or mis-shaped against the
            model's template, every field MatterGen cannot represent, and any key collision.
    """
    gemnet = model.gemnet
    _check_exportable(gemnet, unconditional)
    flat = traverse_util.flatten_dict(model.params["params"], sep="/")
    template = param_template(gemnet)
    errors = [
        f"param {p!r} is not in the model's template" for p in sorted(set(flat) - set(template))
    ]
    errors += [f"missing param {p!r}" for p in sorted(set(template) - set(flat))]
    errors += [
        f"param {p!r} has shape {np.shape(v)}; the model needs {tuple(template[p].shape)}"
        for p, v in sorted(flat.items())
        if p in template and tuple(np.shape(v)) != tuple(template[p].shape)
    ]
    if errors:
        raise ConversionError("export rejected:\n  " + "\n  ".join(errors))
    if unconditional and gemnet.dos_dim is not None:
        flat = {p: v for p, v in flat.items() if not _is_dos(p)}
        gemnet = dataclasses.replace(gemnet, dos_dim=None)

    state: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}

    def put(key: str, value: np.ndarray, origin: str) -> None:
        if key in state:
            errors.append(f"{origin!r} and {source[key]!r} both export to {key!r}")
        state[key], source[key] = value, origin

    for path, value in sorted(flat.items()):
        module, leaf = path.rsplit("/", 1)
        try:
            key, hook = torch_key("param", path, module, _LEAF.get(leaf, leaf))
        except ConversionError as e:
            errors.append(str(e))
            continue
        put(key, apply_hook(hook, np.asarray(value, np.float32)), path)
    scales = dict(gemnet.scale_factors)
    for path in sorted(scale_paths(gemnet.num_blocks)):
        key, _ = torch_key("scale", path, f"gemnet/{path}", "scale_factor")
        put(key, np.asarray(scales.pop(path, 1.0), np.float32), f"scale_factors[{path}]")
    errors += [f"scale factor {p!r}: no ScalingFactor of that path" for p in sorted(scales)]
    for prop in gemnet.properties:
        for field, value in (("means", prop.mean), ("stds", prop.std)):
            key, _ = torch_key("scaler", (prop.name, field),
                               f"property_embeddings_adapt/{prop.name}/scaler", field)  # fmt: skip
            put(key, np.asarray([value], np.float32), f"ScalarProperty({prop.name}).{field}")
    if errors:
        raise ConversionError("export rejected:\n  " + "\n  ".join(errors))
    return export_config(gemnet, model.diffusion), state
