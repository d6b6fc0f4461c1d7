"""Strict MatterGen checkpoint conversion (PyTorch Lightning / state_dict -> a CDOSGenModel), and
its inverse (`export_state_dict`: a CDOSGenModel -> MatterGen config dict + state_dict).

torch is needed only to unpickle (imported lazily in `reading.read_checkpoint`).
"""

from jaxdos.crystal.convert.config import TranslatedConfig, export_config, translate_config
from jaxdos.crystal.convert.convert import (
    ConversionReport,
    convert_checkpoint,
    convert_model_dir,
    convert_state_dict,
    param_template,
    to_model,
)
from jaxdos.crystal.convert.export import export_state_dict, on_mattergen_clock, torch_key
from jaxdos.crystal.convert.name_map import RULES, Rule, dotted_to_flax
from jaxdos.crystal.convert.reading import (
    Checkpoint,
    ConversionError,
    read_checkpoint,
    read_model_dir,
)

__all__ = [
    "Checkpoint",
    "ConversionError",
    "ConversionReport",
    "RULES",
    "Rule",
    "TranslatedConfig",
    "convert_checkpoint",
    "convert_model_dir",
    "convert_state_dict",
    "export_config",
    "export_state_dict",
    "on_mattergen_clock",
    "dotted_to_flax",
    "param_template",
    "read_checkpoint",
    "read_model_dir",
    "to_model",
    "torch_key",
    "translate_config",
]
