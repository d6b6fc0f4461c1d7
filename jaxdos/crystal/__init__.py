"""CDOSGen: MatterGen-style crystal diffusion (GemNet-T) with DOS adapters.

batch.py       DosCondition / ScoreOutput contracts (crystals: jaxdos.structures.CrystalBatch)
graph.py       periodic radius graph + triplets with static budgets
gemnet/        the GemNet-T score network; denoiser.py wraps it (time encoding, heads)
conditioning.py  DOS embedding (eq. 2) and adapters (eqs. 3-4)
diffusion/     D3PM types, wrapped-normal coordinates, VP lattice, losses, PC sampler, CFG
generate.py    host-side sampling entry point: the network as a score function, budget regrowth
               on overflow
train.py / fit.py        the training loss and job on the core jaxdos.training; checkpoint.py
               CDOSGenModel + the embedded default
convert/       MatterGen checkpoints
"""

from jaxdos.crystal.batch import MASK_Z, NUM_TYPE_CLASSES, DosCondition, ScoreOutput
from jaxdos.crystal.checkpoint import CDOSGenModel, load_default
from jaxdos.crystal.denoiser import GemNetTDenoiser
from jaxdos.crystal.diffusion.guidance import ClassifierFree, NoGuidance
from jaxdos.crystal.diffusion.sampler import CrystalSamplingConfig
from jaxdos.crystal.gemnet.config import GemNetConfig
from jaxdos.crystal.generate import generate, generate_with_model

__all__ = [
    "CDOSGenModel",
    "DosCondition",
    "ScoreOutput",
    "MASK_Z",
    "NUM_TYPE_CLASSES",
    "GemNetConfig",
    "GemNetTDenoiser",
    "CrystalSamplingConfig",
    "ClassifierFree",
    "NoGuidance",
    "generate",
    "generate_with_model",
    "load_default",
]
