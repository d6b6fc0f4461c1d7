"""DOSSampler: RADD masked diffusion over DOS tokens with guided predictor-corrector sampling.

Data flow: world records -> tokens (jaxdos.kernels.tokenizer) -> `fit` (λ-DCE, `loss`) ->
score network (`model`) + property regressor (`regressor`) -> `sampling.sample` (Algorithm 2) with
a guidance variant (`guidance`) and K drawn from the training set (`scale`) -> tokens.
"""

from jaxdos.sampler.checkpoint import DOSSamplerModel, load_default, save_sampler
from jaxdos.sampler.config import DOSSamplingConfig, ModelConfig, RegressorConfig
from jaxdos.sampler.guidance import ClassifierGuidance, Guidance, NoGuidance
from jaxdos.sampler.sampling import SamplerParams, initial_tokens, sample, sample_from
from jaxdos.sampler.scale import ScaleDistribution

__all__ = [
    "ModelConfig",
    "RegressorConfig",
    "DOSSamplingConfig",
    "NoGuidance",
    "ClassifierGuidance",
    "Guidance",
    "SamplerParams",
    "initial_tokens",
    "sample",
    "sample_from",
    "ScaleDistribution",
    "DOSSamplerModel",
    "save_sampler",
    "load_default",
]
