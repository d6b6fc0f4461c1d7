"""End-to-end pipeline: property targets -> DOS (stage 1) -> crystals (stage 2) -> scores.

sample_dos(targets, accept=...)      DOSSampler + prior + guidance + rejection
generate_crystals(dos, ...)          CDOSGen with classifier-free guidance
score(crystals)                      tight-binding oracle, properties, TCM verdicts
models.load(dir)                     DOSSamplerModel | CDOSGenModel of a model directory
realism.evaluate(config)             does stage 2 make the world's crystals and follow its DOS?
rundir / screening / writers         run folders, the chunked generate-and-score stage, outputs
jobs.<job>.run(config, out)          the commands' jobs (experiments/ only parses their flags)
"""

from jaxdos.pipeline.crystals import generate_crystals
from jaxdos.pipeline.dos import AcceptedDOS, sample_dos
from jaxdos.pipeline.models import CDOSGenModel, DOSSamplerModel, load, load_default
from jaxdos.pipeline.score import Scores, score, uniqueness_novelty

__all__ = [
    "sample_dos",
    "AcceptedDOS",
    "generate_crystals",
    "load",
    "load_default",
    "DOSSamplerModel",
    "CDOSGenModel",
    "score",
    "Scores",
    "uniqueness_novelty",
]
