"""Configs of the DOSSampler: network size (`ModelConfig`) and sampler (`DOSSamplingConfig`).

Both are frozen keyword-only dataclasses validated in `__post_init__`, with named presets. They are
static arguments of the jitted sampler and trainer, so they must stay hashable (no arrays).
"""

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["ModelConfig", "RegressorConfig", "DOSSamplingConfig", "UNMASK_ORDERS"]

UNMASK_ORDERS = ("random", "confidence")
# DOSSamplingConfig fields added beside Algorithm 2 (issue 12), shown by its repr only when set.
_OPTIONS = ("unmask_order", "temperature", "top_p", "noise_length")


def _positive(name: str, value, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: expected {bound}, got {value}")


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Score network q_θ(x_0 | x_t, K, t): a bidirectional DiT with AdaLN-Zero (Appendix C.1).

    Fields:
        num_layers: transformer blocks.
        width: hidden width D (a multiple of `num_heads`).
        num_heads: attention heads H.
        mlp_ratio: MLP hidden = mlp_ratio * D.
        cond_dim: width of the conditioning vector c built from log K and t.
        time_conditioning: feed t through AdaLN (the paper does; RADD shows it is optional). When
            False, t is zeroed before embedding, so c depends on K only.
        bf16: run matmuls and attention in bfloat16; params, LayerNorm, logits stay float32.
        regressor: the property regressor r_φ that reads this network's token embedding.
    """

    num_layers: int = 4
    width: int = 128
    num_heads: int = 4
    mlp_ratio: int = 4
    cond_dim: int = 64
    time_conditioning: bool = True
    bf16: bool = False
    regressor: "RegressorConfig" = dataclasses.field(default_factory=lambda: RegressorConfig())

    def __post_init__(self):
        for name in ("num_layers", "width", "num_heads", "mlp_ratio", "cond_dim"):
            _positive(name, getattr(self, name))
        if self.width % self.num_heads:
            raise ValueError(
                f"width: expected a multiple of num_heads={self.num_heads}, got {self.width}"
            )
        if not isinstance(self.regressor, RegressorConfig):
            raise ValueError(f"regressor: expected a RegressorConfig, got {type(self.regressor)}")

    @classmethod
    def tiny(cls, **overrides) -> "ModelConfig":
        """CPU default: ~1.4M parameters, trains in minutes on two cores."""
        return cls(**{"num_layers": 4, "width": 128, "num_heads": 4, "cond_dim": 64, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "ModelConfig":
        """DiT-small-sized (12 x 768, 12 heads, ~85M non-embedding params), bf16 compute."""
        base = {
            "num_layers": 12,
            "width": 768,
            "num_heads": 12,
            "cond_dim": 128,
            "bf16": True,
            "regressor": RegressorConfig(proj_dim=16, hidden=512),
        }
        return cls(**{**base, **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        d["regressor"] = RegressorConfig(**d.get("regressor", {}))
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class RegressorConfig:
    """Property regressor r_φ(softmax(ℓ)·E, log K) -> standardised (E_BG, DOS(E_F), N(E_F)).

    Fields:
        proj_dim: each position's expected embedding `[D]` is projected to `proj_dim` features
            before flattening over the 256 bins (positions matter: E_F sits at bin 128).
        hidden: width of the two hidden layers of the MLP head.
    """

    proj_dim: int = 4
    hidden: int = 128

    def __post_init__(self):
        _positive("proj_dim", self.proj_dim)
        _positive("hidden", self.hidden)


@dataclass(frozen=True, kw_only=True)
class DOSSamplingConfig:
    """Algorithm 2 settings, and few-step sampling options beside it (off by default).

    Fields:
        steps: N denoising steps on the uniform grid t_i = linspace(1, t_min, N + 1); step i
            runs the network at t_i and unmasks each masked bin with probability
            r_i = (t_i - t_{i+1}) / t_i (log-linear schedule); the last step unmasks all the rest.
        corrector_steps: re-mask/re-sample corrector iterations after every step but the last.
        remask_fraction: α, the fraction of committed (non-prior) bins re-masked per corrector step.
        t_min: the end of the time grid (> 0 so no step divides by zero).
        final_argmax: at the last step take the arg-max token instead of sampling.
        unmask_order: which masked bins a predictor step commits. "random" (Algorithm 2): each
            one independently with probability r_i. "confidence" (MaskGIT-style): the
            round(r_i * n) of the n masked bins whose guided distribution has the highest maximum
            probability (all of them at the last step), so the expected count per step is the same.
        temperature: draws use softmax(ℓ' / temperature) (predictor and corrector); 0 takes the
            arg-max everywhere. 1 is Algorithm 2.
        top_p: nucleus sampling: draw only from the smallest set of levels whose (tempered)
            probability reaches top_p. 1 is Algorithm 2 (costs a sort over V' per bin otherwise).
        noise_length: 0 (Algorithm 2): independent categorical draws. > 0: each draw is the
            inverse CDF of its bin's distribution (classes in DOS order, [BG] lowest) at a uniform
            from one smooth Gaussian noise field per example, of this correlation length in bins
            and shared by all steps: every draw keeps its own distribution, neighbours correlate.

    The defaults are the paper's Algorithm 2 exactly; `final_argmax`, `unmask_order`,
    `temperature`, `top_p` and `noise_length` are options for smoother spectra at few steps from
    an under-trained network (issue 12).
    """

    steps: int = 64
    corrector_steps: int = 0
    remask_fraction: float = 0.1
    t_min: float = 1e-5
    final_argmax: bool = False
    unmask_order: str = "random"
    temperature: float = 1.0
    top_p: float = 1.0
    noise_length: float = 0.0

    def __post_init__(self):
        _positive("steps", self.steps)
        _positive("corrector_steps", self.corrector_steps, allow_zero=True)
        if not 0.0 <= self.remask_fraction < 1.0:
            raise ValueError(f"remask_fraction: expected in [0, 1), got {self.remask_fraction}")
        if not 0.0 < self.t_min < 1.0:
            raise ValueError(f"t_min: expected in (0, 1), got {self.t_min}")
        if self.unmask_order not in UNMASK_ORDERS:
            raise ValueError(
                f"unmask_order: expected one of {UNMASK_ORDERS}, got {self.unmask_order!r}"
            )
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"temperature: expected finite >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p: expected in (0, 1], got {self.top_p}")
        if not (math.isfinite(self.noise_length) and self.noise_length >= 0):
            raise ValueError(f"noise_length: expected finite >= 0, got {self.noise_length}")

    def __repr__(self) -> str:
        # Run folders record this repr (`proposal.guided_proposer` names the sampler with it), so
        # the options are left out at their defaults: runs begun before they existed still resume.
        shown = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in _OPTIONS or getattr(self, f.name) != f.default
        ]
        return f"DOSSamplingConfig({', '.join(shown)})"

    @classmethod
    def fast(cls, **overrides) -> "DOSSamplingConfig":
        """32 steps, no corrector: tests and quick CPU runs."""
        return cls(**{"steps": 32, "corrector_steps": 0, **overrides})

    @classmethod
    def paper(cls, **overrides) -> "DOSSamplingConfig":
        """128 steps, one corrector step re-masking 10 % per step."""
        return cls(**{"steps": 128, "corrector_steps": 1, "remask_fraction": 0.1, **overrides})

    @classmethod
    def smooth(cls, **overrides) -> "DOSSamplingConfig":
        """Algorithm 2 with correlated-noise draws (`noise_length=12` bins): with the embedded
        `tiny` model at 16 steps, roughness 1.3-1.4x the world's and plausibility ~0.68x its
        rate, against 6.1x and 0.02x for Algorithm 2 (docs/results.md, issue 12 goal 2)."""
        return cls(**{"noise_length": 12.0, **overrides})
