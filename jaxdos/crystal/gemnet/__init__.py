"""GemNet-T (MatterGen's GemNet-dT) in Flax linen: bases, blocks, trunk, config."""

from jaxdos.crystal.gemnet.basis import (
    noise_level_encoding,
    polynomial_envelope,
    radial_basis,
    spherical_basis,
)
from jaxdos.crystal.gemnet.config import GemNetConfig, ScalarProperty
from jaxdos.crystal.gemnet.model import GemNetT
from jaxdos.crystal.gemnet.scaling import GEMNET_DT_JSON, scale_paths, scales_from_json

__all__ = [
    "GemNetConfig",
    "ScalarProperty",
    "GemNetT",
    "GEMNET_DT_JSON",
    "scale_paths",
    "scales_from_json",
    "noise_level_encoding",
    "polynomial_envelope",
    "radial_basis",
    "spherical_basis",
]
