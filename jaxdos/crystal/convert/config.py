"""Strict translation of a MatterGen hydra `config.yaml` into jaxdos configs.

Every field of the model and corruption sections is either translated, checked against the only
value the JAX port implements, or ignored with a stated reason; anything else is a
`ConversionError` naming its dotted path. Top-level training sections are listed as ignored.
"""

import dataclasses

from jaxdos.crystal.convert.reading import ConversionError
from jaxdos.crystal.diffusion import D3PMConfig, DiffusionConfig, LatticeConfig, WrappedNormalConfig
from jaxdos.crystal.gemnet import GemNetConfig, ScalarProperty
from jaxdos.crystal.graph import GraphConfig

__all__ = ["TranslatedConfig", "translate_config", "export_config", "IGNORED_SECTIONS"]

IGNORED_SECTIONS = {
    "data_module": "training data pipeline",
    "trainer": "Lightning trainer settings",
    "adapter": "fine-tuning recipe (the model it built is lightning_module...model)",
    "auto_resume": "training bookkeeping",
    "checkpoint_path": "training bookkeeping",
    "load_original": "training bookkeeping",
    "params": "training bookkeeping",
    "train": "training bookkeeping",
}
_IGNORED_LM = {
    "_target_": "Lightning module class",
    "optimizer_partial": "optimizer: training only",
    "scheduler_partials": "LR scheduler: training only",
}
_IGNORED_DM = {
    "_target_": "diffusion module class",
    "loss_fn": "training loss (jaxdos.crystal.diffusion.losses implements MaterialsLoss)",
    "pre_corruption_fn": "CFG dropout during training",
}

_DENOISERS = {"mattergen.denoiser.GemNetTDenoiser", "mattergen.adapter.GemNetTAdapter"}
_GEMNETS = {
    "mattergen.common.gemnet.gemnet.GemNetT",
    "mattergen.common.gemnet.gemnet_ctrl.GemNetTCtrl",
}
# GemNetT arguments copied to GemNetConfig under the same name (code defaults where absent).
_SIZES = (
    "num_blocks", "emb_size_atom", "emb_size_edge", "emb_size_trip", "emb_size_rbf",
    "emb_size_cbf", "emb_size_bil_trip", "num_spherical", "num_radial", "num_before_skip",
    "num_after_skip", "num_atom", "latent_dim",
)  # fmt: skip
_GEMNET_DEFAULTS = dict(
    num_blocks=3, emb_size_atom=512, emb_size_edge=512, emb_size_trip=64, emb_size_rbf=16,
    emb_size_cbf=16, emb_size_bil_trip=64, num_spherical=7, num_radial=128, num_before_skip=1,
    num_after_skip=2, num_atom=3, cutoff=6.0, max_neighbors=50, max_cell_images_per_dim=5,
)  # fmt: skip
# Fields whose only implemented value is fixed.
_FIXED = {
    "num_targets": 1,
    "num_concat": 1,
    "otf_graph": True,
    "regress_stress": True,
    "encoder_mode": False,
    "activation": "swish",
    "rbf": {"name": "gaussian"},
    "cbf": {"name": "spherical_harmonics"},
}
_GEMNET_IGNORED = {
    "_target_",
    "scale_file",  # MatterGen ignores it; scales come from the state_dict
    "output_init",  # initialisation only
    "condition_on_adapt",  # read with property_embeddings_adapt
    "atom_embedding",
    "envelope",
}
_NOISE_ENC = "mattergen.diffusion.model_utils.NoiseLevelEncoding"
_SCALERS = {"mattergen.common.utils.data_utils.StandardScalerTorch"}


@dataclasses.dataclass(frozen=True)
class TranslatedConfig:
    """What a MatterGen config becomes.

    Attributes:
        gemnet: the score-network config (scale factors and scaler statistics still default; the
            converter fills them from the state_dict).
        diffusion: the corruption processes.
        ignored: dotted config path -> why it is not translated.
    """

    gemnet: GemNetConfig
    diffusion: DiffusionConfig
    ignored: dict


def _get(d: dict, key: str, path: str):
    if not isinstance(d, dict) or key not in d:
        raise ConversionError(f"config: missing {path}.{key}")
    return d[key]


def _check_keys(d: dict, allowed: set, path: str) -> None:
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        raise ConversionError(f"config: unknown field(s) {[f'{path}.{k}' for k in unknown]}")


def _gemnet(section: dict, path: str, ignored: dict) -> dict:
    allowed = set(_GEMNET_DEFAULTS) | set(_FIXED) | _GEMNET_IGNORED | {"latent_dim"}
    allowed |= {"cutoff", "max_neighbors", "max_cell_images_per_dim"}
    _check_keys(section, allowed, path)
    if section.get("_target_") not in _GEMNETS:
        raise ConversionError(f"config: {path}._target_={section.get('_target_')!r} unsupported")
    for key, value in _FIXED.items():
        if key in section and section[key] != value:
            raise ConversionError(
                f"config: {path}.{key}={section[key]!r}; only {value!r} is ported"
            )
    env = section.get("envelope", {"name": "polynomial", "exponent": 5})
    if env.get("name") != "polynomial" or set(env) - {"name", "exponent"}:
        raise ConversionError(
            f"config: {path}.envelope={env!r}; only a polynomial envelope is ported"
        )
    emb = _get(section, "atom_embedding", path)
    _check_keys(emb, {"_target_", "emb_size", "with_mask_type"}, f"{path}.atom_embedding")
    if emb.get("with_mask_type") is not True:
        raise ConversionError(f"config: {path}.atom_embedding.with_mask_type must be true")
    out = {k: section.get(k, _GEMNET_DEFAULTS.get(k)) for k in _SIZES if k != "latent_dim"}
    out["latent_dim"] = _get(section, "latent_dim", path)
    if emb.get("emb_size") != out["emb_size_atom"]:
        raise ConversionError(f"config: {path}.atom_embedding.emb_size != emb_size_atom")
    out["envelope_exponent"] = int(env.get("exponent", 5))
    for key in ("scale_file", "output_init"):
        if key in section:
            ignored[f"{path}.{key}"] = "scale factors come from the state_dict; init only"
    return out


def _adapters(section: dict, condition_on: list, path: str) -> tuple[ScalarProperty, ...]:
    if sorted(section) != sorted(condition_on):
        raise ConversionError(
            f"config: {path} keys {sorted(section)} != gemnet.condition_on_adapt {condition_on}"
        )
    props = []
    for name, spec in section.items():
        p = f"{path}.{name}"
        _check_keys(
            spec,
            {"_target_", "conditional_embedding_module", "name", "scaler",
             "unconditional_embedding_module"},
            p,
        )  # fmt: skip
        cond = _get(spec, "conditional_embedding_module", p)
        if cond.get("_target_") != _NOISE_ENC:
            raise ConversionError(
                f"config: {p}.conditional_embedding_module={cond.get('_target_')!r}; only scalar "
                "properties (NoiseLevelEncoding) are ported"
            )
        _check_keys(cond, {"_target_", "d_model"}, f"{p}.conditional_embedding_module")
        scaler = _get(spec, "scaler", p)
        _check_keys(scaler, {"_target_", "log10_transform"}, f"{p}.scaler")
        if scaler.get("_target_") not in _SCALERS:
            raise ConversionError(f"config: {p}.scaler={scaler.get('_target_')!r} unsupported")
        # The unconditional module is replaced by zeros in every adapter (GemNetTAdapter).
        props.append(ScalarProperty(name=name, log10=bool(scaler.get("log10_transform", False))))
    return tuple(props)


def _diffusion(section: dict, path: str) -> DiffusionConfig:
    _check_keys(section, {"_target_", "sdes", "discrete_corruptions"}, path)
    sdes = _get(section, "sdes", path)
    _check_keys(sdes, {"pos", "cell"}, f"{path}.sdes")
    pos = _get(sdes, "pos", f"{path}.sdes")
    _check_keys(pos, {"_target_", "limit_info_key", "sigma_max", "sigma_min", "wrapping_boundary"},
                f"{path}.sdes.pos")  # fmt: skip
    if (
        pos.get("wrapping_boundary", 1.0) != 1.0
        or pos.get("limit_info_key", "num_atoms") != "num_atoms"
    ):
        raise ConversionError(
            f"config: {path}.sdes.pos: only wrapping_boundary=1, num_atoms scaling"
        )
    cell = _get(_get(sdes, "cell", f"{path}.sdes"), "vpsde_config", f"{path}.sdes.cell")
    _check_keys(_get(sdes, "cell", ""), {"_target_", "vpsde_config"}, f"{path}.sdes.cell")
    _check_keys(cell, {"beta_min", "beta_max", "limit_density", "limit_var_scaling_constant"},
                f"{path}.sdes.cell.vpsde_config")  # fmt: skip
    types = _get(_get(section, "discrete_corruptions", path), "atomic_numbers", path)
    _check_keys(
        types, {"_target_", "d3pm", "offset"}, f"{path}.discrete_corruptions.atomic_numbers"
    )
    d3pm = _get(types, "d3pm", path)
    _check_keys(d3pm, {"_target_", "dim", "schedule"}, f"{path}...d3pm")
    sched = _get(d3pm, "schedule", path)
    _check_keys(sched, {"_target_", "kind", "num_steps"}, f"{path}...d3pm.schedule")
    if d3pm.get("dim") != 101 or types.get("offset", 1) != 1 or sched.get("kind") != "standard":
        raise ConversionError(
            f"config: {path}: only the 101-class absorbing D3PM (offset 1) is ported"
        )
    try:
        return DiffusionConfig(
            pos=WrappedNormalConfig(
                sigma_min=float(pos.get("sigma_min", 0.01)), sigma_max=float(pos["sigma_max"])
            ),
            cell=LatticeConfig(**{k: float(v) for k, v in cell.items()}),
            types=D3PMConfig(num_steps=int(sched["num_steps"])),
        )
    except (KeyError, ValueError) as e:
        raise ConversionError(f"config: {path}: {e}") from e


def translate_config(config: dict) -> TranslatedConfig:
    """Translate a MatterGen config dict (hydra yaml) strictly.

    Raises:
        ConversionError: naming the dotted path of any unknown or unsupported field.
    """
    ignored = {}
    known = set(IGNORED_SECTIONS) | {"lightning_module"}
    _check_keys(config, known, "<root>")
    for key in config:
        if key in IGNORED_SECTIONS:
            ignored[key] = IGNORED_SECTIONS[key]
    lm = _get(config, "lightning_module", "<root>")
    _check_keys(lm, set(_IGNORED_LM) | {"diffusion_module"}, "lightning_module")
    ignored.update({f"lightning_module.{k}": v for k, v in _IGNORED_LM.items() if k in lm})
    dm = _get(lm, "diffusion_module", "lightning_module")
    p = "lightning_module.diffusion_module"
    _check_keys(dm, set(_IGNORED_DM) | {"model", "corruption"}, p)
    ignored.update({f"{p}.{k}": v for k, v in _IGNORED_DM.items() if k in dm})
    model = _get(dm, "model", p)
    mp = f"{p}.model"
    _check_keys(
        model,
        {"_target_", "gemnet", "hidden_dim", "denoise_atom_types", "atom_type_diffusion",
         "property_embeddings", "property_embeddings_adapt"},
        mp,
    )  # fmt: skip
    if model.get("_target_") not in _DENOISERS:
        raise ConversionError(f"config: {mp}._target_={model.get('_target_')!r} unsupported")
    if (
        model.get("denoise_atom_types", True) is not True
        or model.get("atom_type_diffusion", "mask") != "mask"
    ):
        raise ConversionError(
            f"config: {mp}: only mask (D3PM absorbing) atom-type diffusion is ported"
        )
    if model.get("property_embeddings"):
        raise ConversionError(
            f"config: {mp}.property_embeddings must be empty (base-model "
            "property embeddings are not ported; adapters are)"
        )
    gem = _get(model, "gemnet", mp)
    sizes = _gemnet(gem, f"{mp}.gemnet", ignored)
    if model.get("hidden_dim", 512) != sizes["emb_size_atom"]:
        raise ConversionError(f"config: {mp}.hidden_dim must equal gemnet.emb_size_atom")
    props = _adapters(
        model.get("property_embeddings_adapt") or {},
        list(gem.get("condition_on_adapt", [])),
        f"{mp}.property_embeddings_adapt",
    )
    graph = GraphConfig(
        cutoff=float(gem.get("cutoff", _GEMNET_DEFAULTS["cutoff"])),
        max_neighbors=int(gem.get("max_neighbors", 50)),
        max_cell_images_per_dim=int(gem.get("max_cell_images_per_dim", 5)),
    )
    try:
        gemnet = GemNetConfig(**sizes, graph=graph, properties=props)
    except ValueError as e:
        raise ConversionError(f"config: {mp}.gemnet: {e}") from e
    diffusion = _diffusion(_get(dm, "corruption", p), f"{p}.corruption")
    return TranslatedConfig(gemnet, diffusion, ignored)


_MG = "mattergen.diffusion."


def _mattergen_cell(cell) -> dict:
    # MatterGen's LatticeVPSDE has no warped clock, so a model trained with one has no
    # faithful MatterGen config; refuse rather than export a different process.
    if cell.time_power != 1.0:
        raise ConversionError(
            f"export: cell time_power={cell.time_power} has no MatterGen equivalent (only 1.0)"
        )
    fields = dataclasses.asdict(cell)
    fields.pop("time_power")
    return fields


def export_config(gemnet: GemNetConfig, diffusion: DiffusionConfig) -> dict:
    """The inverse of `translate_config`: a MatterGen config dict for `gemnet` + `diffusion`.

    Scale factors and scaler statistics travel in the state_dict (`export.export_state_dict`).
    jaxdos-only settings with no MatterGen field are not written: the graph's static budgets
    (`max_atoms_per_crystal`, `candidates_per_atom`, `edges_per_atom`, `max_in_degree`), the
    number of wrapped-normal images, the D3PM hybrid loss weight and t_min (training / sampling
    settings, not part of the network or the corruption's definition).
    """
    if gemnet.dos_dim is not None:
        raise ConversionError("export: MatterGen has no DOS adapter module (export_state_dict)")
    adapt = [p.name for p in gemnet.properties]
    gem = {k: getattr(gemnet, k) for k in _SIZES}
    gem.update(
        _target_="mattergen.common.gemnet."
        + ("gemnet_ctrl.GemNetTCtrl" if adapt else "gemnet.GemNetT"),
        num_targets=1, otf_graph=True, regress_stress=True,
        cutoff=float(gemnet.graph.cutoff), max_neighbors=int(gemnet.graph.max_neighbors),
        max_cell_images_per_dim=int(gemnet.graph.max_cell_images_per_dim),
        envelope={"name": "polynomial", "exponent": int(gemnet.envelope_exponent)},
        atom_embedding={"_target_": "mattergen.common.gemnet.layers.embedding_block.AtomEmbedding",
                        "emb_size": gemnet.emb_size_atom, "with_mask_type": True},
    )  # fmt: skip
    if adapt:
        gem["condition_on_adapt"] = adapt
    scaler = "mattergen.common.utils.data_utils.StandardScalerTorch"
    props = {
        p.name: {
            "_target_": "mattergen.property_embeddings.PropertyEmbedding",
            "name": p.name,
            "conditional_embedding_module": {"_target_": _NOISE_ENC,
                                             "d_model": gemnet.emb_size_atom},
            "unconditional_embedding_module": {
                "_target_": "mattergen.property_embeddings.EmbeddingVector",
                "hidden_dim": gemnet.emb_size_atom},
            "scaler": {"_target_": scaler, "log10_transform": p.log10},
        }
        for p in gemnet.properties
    }  # fmt: skip
    model = {
        "_target_": "mattergen.adapter.GemNetTAdapter"
        if adapt
        else "mattergen.denoiser.GemNetTDenoiser",
        "atom_type_diffusion": "mask",
        "denoise_atom_types": True,
        "gemnet": gem,
        "hidden_dim": gemnet.emb_size_atom,
        "property_embeddings": {},
        "property_embeddings_adapt": props,
    }
    corruption = {
        "_target_": _MG + "corruption.multi_corruption.MultiCorruption",
        "discrete_corruptions": {"atomic_numbers": {
            "_target_": _MG + "corruption.d3pm_corruption.D3PMCorruption",
            "d3pm": {"_target_": _MG + "d3pm.d3pm.MaskDiffusion", "dim": 101,
                     "schedule": {"_target_": _MG + "d3pm.d3pm.create_discrete_diffusion_schedule",
                                  "kind": "standard", "num_steps": diffusion.types.num_steps}},
            "offset": 1}},
        "sdes": {
            "cell": {"_target_": "mattergen.common.diffusion.corruption.LatticeVPSDE"
                                 ".from_vpsde_config",
                     "vpsde_config": _mattergen_cell(diffusion.cell)},
            "pos": {"_target_": "mattergen.common.diffusion.corruption."
                                "NumAtomsVarianceAdjustedWrappedVESDE",
                    "limit_info_key": "num_atoms", "sigma_min": diffusion.pos.sigma_min,
                    "sigma_max": diffusion.pos.sigma_max, "wrapping_boundary": 1.0},
        },
    }  # fmt: skip
    dm = {"_target_": _MG + "diffusion_module.DiffusionModule", "model": model,
          "corruption": corruption}  # fmt: skip
    return {"lightning_module": {"diffusion_module": dm}}
