"""Strict MatterGen -> jaxdos conversion: state_dict + config -> GemNetTDenoiser params + configs.

`convert_state_dict` maps every tensor through `name_map.RULES` and checks the result against the
param tree of `GemNetTDenoiser(config)` (from `jax.eval_shape`, no compute): a missing, unused,
unknown or mis-shaped tensor, a scale factor for a module the model lacks, or a buffer that differs
from its analytic value is a `ConversionError` that lists every offending key. `convert_model_dir`
adds the config translation and writes a "cdosgen" model directory (`jaxdos.modeldir`), the same
format and typed object (`CDOSGenModel`) as a jaxdos-trained model.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.convert.config import TranslatedConfig, translate_config
from jaxdos.crystal.convert.name_map import apply_hook, match
from jaxdos.crystal.convert.reading import Checkpoint, ConversionError, read_model_dir
from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion import DiffusionConfig
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20
from jaxdos.crystal.gemnet import GemNetConfig, scale_paths
from jaxdos.crystal.gemnet.basis import noise_level_div_term
from jaxdos.structures import CrystalBatch

__all__ = [
    "ConversionReport",
    "param_template",
    "convert_state_dict",
    "convert_checkpoint",
    "to_model",
    "convert_model_dir",
]


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What a conversion did.

    Attributes:
        num_params: scalars in the converted flax params.
        num_tensors: converted tensors.
        dropped: torch key (or checkpoint entry / config path) -> reason it was not converted.
        consumed: torch key -> where its value went (config scale factor, scaler statistic).
    """

    num_params: int
    num_tensors: int
    dropped: dict
    consumed: dict

    def summary(self) -> str:
        """A human-readable multi-line summary (the CLI prints it)."""
        lines = [f"converted {self.num_tensors} tensors, {self.num_params:,} parameters"]
        by_reason: dict[str, list[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in sorted(by_reason.items()):
            lines.append(
                f"dropped {len(keys)} ({reason}): {keys[0]}" + (" ..." if len(keys) > 1 else "")
            )
        lines.append(
            f"consumed {len(self.consumed)} tensors into the config (scale factors, scalers)"
        )
        return "\n".join(lines)


def _dummy_batch() -> CrystalBatch:
    return CrystalBatch(
        atomic_numbers=jnp.ones((2,), jnp.int32),
        frac_coords=jnp.zeros((2, 3)),
        lattice=jnp.eye(3)[None] * 4.0,
        num_atoms=jnp.array([2], jnp.int32),
        batch=jnp.zeros((2,), jnp.int32),
        node_mask=jnp.ones((2,), bool),
        graph_mask=jnp.ones((1,), bool),
    )


@functools.lru_cache(maxsize=8)  # tracing the model takes seconds; configs are hashable
def param_template(config: GemNetConfig) -> dict:
    """flax path -> ShapeDtypeStruct of every param of `GemNetTDenoiser(config)` (no compute)."""
    small = dataclasses.replace(
        config, graph=dataclasses.replace(config.graph, max_atoms_per_crystal=2,
                                          candidates_per_atom=2, edges_per_atom=2,
                                          max_in_degree=2)
    )  # fmt: skip
    model = GemNetTDenoiser(small)
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), _dummy_batch(), jnp.ones((1,), jnp.float32)
    )
    return traverse_util.flatten_dict(shapes["params"], sep="/")


def _check_buffer(key: str, kind: str, value: np.ndarray, config: GemNetConfig) -> str | None:
    if kind == "offset":
        ref = np.linspace(0.0, 1.0, config.num_radial, dtype=np.float32)
    else:
        ref = noise_level_div_term(2 * value.shape[0]).astype(np.float32)
    if value.shape != ref.shape or not np.allclose(value, ref, rtol=1e-6, atol=1e-7):
        return f"buffer {key!r} {value.shape} differs from its analytic value {ref.shape}"
    return None


def convert_state_dict(
    tensors: dict, config: GemNetConfig
) -> tuple[dict, GemNetConfig, ConversionReport]:
    """Map a model-relative MatterGen state_dict onto `GemNetTDenoiser(config)`.

    Args:
        tensors: torch key (without `diffusion_module.model.`) -> numpy array.
        config: the translated GemNetConfig (scale factors / scaler statistics are filled here).

    Returns:
        ({"params": ...} flax variables, the completed config, report).

    Raises:
        ConversionError: listing every unknown, unused, missing or mis-shaped tensor by key.
    """
    errors: list[str] = []
    dropped: dict[str, str] = {}
    consumed: dict[str, str] = {}
    mapped: dict[str, tuple[str, np.ndarray]] = {}  # flax path -> (torch key, array)
    scales: dict[str, float] = {}
    scalers: dict[str, dict[str, float]] = {}
    valid_scales = set(scale_paths(config.num_blocks))
    prop_names = {p.name for p in config.properties}

    for key in sorted(tensors):
        value = tensors[key]
        hit = match(key)
        if hit is None:
            errors.append(f"unknown tensor {key!r} {tuple(value.shape)} (no rule in the name map)")
            continue
        rule, m = hit
        if rule.kind == "drop":
            dropped[key] = rule.reason
        elif rule.kind == "buffer":
            problem = _check_buffer(key, rule.target, value, config)
            if problem:
                errors.append(problem)
            else:
                dropped[key] = rule.reason
        elif rule.kind == "scale":
            path = rule.target(m)
            if path not in valid_scales or value.size != 1:
                errors.append(f"unused tensor {key!r}: no ScalingFactor {path!r} in this model")
            else:
                scales[path] = float(value.reshape(()))
                consumed[key] = f"GemNetConfig.scale_factors[{path!r}]"
        elif rule.kind == "scaler":
            prop, field = rule.target(m)
            if prop not in prop_names or value.size != 1:
                errors.append(f"unused tensor {key!r}: no scalar property {prop!r} of size 1")
            else:
                scalers.setdefault(prop, {})[field] = float(value.reshape(()))
                consumed[key] = f"ScalarProperty({prop}).{field[:-1]}"
        else:
            path = rule.target(m)
            if path in mapped:
                errors.append(f"tensors {mapped[path][0]!r} and {key!r} both map to {path!r}")
                continue
            try:
                mapped[path] = (key, apply_hook(rule.hook, value))
            except ValueError as e:
                errors.append(f"tensor {key!r}: {e}")

    props = []
    for p in config.properties:
        st = scalers.get(p.name, {})
        if set(st) != {"means", "stds"}:
            errors.append(f"missing tensor 'property_embeddings_adapt.{p.name}.scaler.means/stds'")
            props.append(p)
        else:
            props.append(dataclasses.replace(p, mean=st["means"], std=st["stds"]))
    config = dataclasses.replace(
        config, scale_factors=tuple(sorted(scales.items())), properties=tuple(props)
    )
    template = param_template(config)
    for path, (key, arr) in sorted(mapped.items()):
        if path not in template:
            errors.append(f"unused tensor {key!r}: the JAX model has no param {path!r}")
        elif tuple(arr.shape) != tuple(template[path].shape):
            errors.append(
                f"tensor {key!r} has shape {tuple(arr.shape)}; {path!r} needs "
                f"{tuple(template[path].shape)} (after the layout hook)"
            )
    for path in sorted(set(template) - set(mapped)):
        errors.append(f"missing tensor for param {path!r} {tuple(template[path].shape)}")
    if errors:
        raise ConversionError("MatterGen checkpoint rejected:\n  " + "\n  ".join(errors))

    flat = {path: np.asarray(arr, np.float32) for path, (_, arr) in mapped.items()}
    params = {"params": traverse_util.unflatten_dict(flat, sep="/")}
    report = ConversionReport(
        num_params=int(sum(a.size for a in flat.values())),
        num_tensors=len(flat),
        dropped=dropped,
        consumed=consumed,
    )
    return params, config, report


def convert_checkpoint(config_dict: dict, ckpt: Checkpoint):
    """(params, GemNetConfig, DiffusionConfig, report) of a read config + checkpoint."""
    translated: TranslatedConfig = translate_config(config_dict)
    params, gemnet, report = convert_state_dict(ckpt.tensors, translated.gemnet)
    dropped = {**ckpt.dropped, **report.dropped}
    dropped.update({f"config.yaml:{k}": v for k, v in translated.ignored.items()})
    report = dataclasses.replace(report, dropped=dropped)
    return params, gemnet, translated.diffusion, report


def to_model(params, gemnet: GemNetConfig, diffusion: DiffusionConfig,
             report: ConversionReport) -> CDOSGenModel:  # fmt: skip
    """The converted checkpoint as the same typed model as a jaxdos-trained CDOSGen.

    Atom counts: MatterGen's released models sample them from ALEX_MP_20 (their training set's
    distribution); the conversion report goes into `meta`.
    """
    meta = {"source": "mattergen", "conversion": dataclasses.asdict(report)}
    return CDOSGenModel(
        params=params, gemnet=gemnet, diffusion=diffusion, num_atoms=ALEX_MP_20, meta=meta
    )


def convert_model_dir(
    model_dir, out_dir=None, *, trust_pickle: bool = False
) -> tuple[CDOSGenModel, ConversionReport]:
    """Convert a MatterGen model folder; write it to `out_dir` as a "cdosgen" model directory
    (`jaxdos.modeldir`) when given, so that `jaxdos.pipeline.models.load(out_dir)` reads it.

    Returns:
        (the `CDOSGenModel`, the `ConversionReport`).
    """
    config_dict, ckpt = read_model_dir(model_dir, trust_pickle=trust_pickle)
    params, gemnet, diffusion, report = convert_checkpoint(config_dict, ckpt)
    model = to_model(params, gemnet, diffusion, report)
    if out_dir is not None:
        model.save(out_dir)
    return model, report
