"""MatterGen's three corruption processes, its losses and its predictor-corrector sampler."""

from jaxdos.crystal.diffusion.corruption import Corrupted, DiffusionConfig, corrupt, sample_time
from jaxdos.crystal.diffusion.d3pm import MASK_CLASS, D3PMConfig
from jaxdos.crystal.diffusion.guidance import ClassifierFree, Guidance, NoGuidance, guided_score
from jaxdos.crystal.diffusion.lattice import LatticeConfig, polar_symmetrize
from jaxdos.crystal.diffusion.losses import (
    FieldLosses,
    LossWeights,
    ScoreFn,
    diffusion_loss,
    loss_given_corruption,
    sample_corruption,
)
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20, NumAtomsDistribution, prior_batch
from jaxdos.crystal.diffusion.sampler import (
    SELECTED_ATOMIC_NUMBERS,
    CrystalSamplingConfig,
    SamplerState,
    init_state,
    make_sampler,
)
from jaxdos.crystal.diffusion.wrapped_normal import WrappedNormalConfig

__all__ = [
    "ALEX_MP_20",
    "ClassifierFree",
    "Corrupted",
    "D3PMConfig",
    "DiffusionConfig",
    "FieldLosses",
    "Guidance",
    "LatticeConfig",
    "LossWeights",
    "MASK_CLASS",
    "NoGuidance",
    "NumAtomsDistribution",
    "SELECTED_ATOMIC_NUMBERS",
    "CrystalSamplingConfig",
    "SamplerState",
    "ScoreFn",
    "WrappedNormalConfig",
    "corrupt",
    "diffusion_loss",
    "guided_score",
    "init_state",
    "loss_given_corruption",
    "make_sampler",
    "polar_symmetrize",
    "prior_batch",
    "sample_corruption",
    "sample_time",
]
