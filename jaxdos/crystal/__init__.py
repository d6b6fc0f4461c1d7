"""CDOSGen: MatterGen-style crystal diffusion (GemNet-T) with DOS adapters."""

from jaxdos.crystal.batch import (
    MASK_Z,
    MAX_Z,
    NUM_TYPE_CLASSES,
    CrystalBatch,
    DosCondition,
    ScoreOutput,
)

__all__ = ["CrystalBatch", "DosCondition", "ScoreOutput", "MASK_Z", "MAX_Z", "NUM_TYPE_CLASSES"]
