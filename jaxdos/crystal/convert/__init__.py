"""Strict MatterGen checkpoint conversion (PyTorch Lightning / state_dict -> a CDOSGenModel).

torch is needed only to unpickle (imported lazily in `reading.read_checkpoint`).
"""

from jaxdos.crystal.convert.config import TranslatedConfig, translate_config
from jaxdos.crystal.convert.convert import (
    ConversionReport,
    convert_checkpoint,
    convert_model_dir,
    convert_state_dict,
    param_template,
    to_model,
)
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
    "dotted_to_flax",
    "param_template",
    "read_checkpoint",
    "read_model_dir",
    "to_model",
    "translate_config",
]
