"""A learned crystal -> DOS predictor (the paper's DOSForge role, Appendix E / Table 7).

EquivariantConfig / CompositionConfig     the network (e3nn-jax) and the composition baseline
DOSPredictorModel                         a trained predictor in the one model format
predict_dos(crystals, model=None)         `[M, 256]` per-atom DOS on the paper's grid
fit.run(config, out)                      training on any Records, on the one training core
evaluate.table7(pred, true)               MAE, MSE, R^2, W1 and property MAEs with 95 % intervals
"""

from jaxdos.predictor.checkpoint import KIND, DOSPredictorModel, load_default
from jaxdos.predictor.config import CompositionConfig, EquivariantConfig
from jaxdos.predictor.predict import predict_dos

__all__ = [
    "KIND",
    "DOSPredictorModel",
    "load_default",
    "EquivariantConfig",
    "CompositionConfig",
    "predict_dos",
]
