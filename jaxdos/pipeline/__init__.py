"""End-to-end pipeline: property targets -> DOS (stage 1) -> crystals (stage 2) -> scores.

sample_dos(targets, accept=...)      DOSSampler + prior + guidance + rejection
generate_crystals(dos, ...)          CDOSGen with classifier-free guidance
score(crystals)                      tight-binding oracle, properties, TCM verdicts
realism.evaluate(config)             does stage 2 make the world's crystals and follow its DOS?
"""

from jaxdos.pipeline.crystals import (
    CrystalModel,
    default_crystal_model,
    generate_crystals,
    load_crystal_model,
)
from jaxdos.pipeline.dos import AcceptedDOS, sample_dos
from jaxdos.pipeline.score import Scores, score, uniqueness_novelty

__all__ = [
    "sample_dos",
    "AcceptedDOS",
    "generate_crystals",
    "CrystalModel",
    "default_crystal_model",
    "load_crystal_model",
    "score",
    "Scores",
    "uniqueness_novelty",
]
