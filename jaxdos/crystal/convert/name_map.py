"""Declarative MatterGen state_dict -> flax name map, with per-tensor layout hooks.

Layout conventions (shared with `jaxdos.crystal.gemnet.layers`):
    torch Linear `X.weight [out, in]` (or GemNet `X.linear.weight`) -> flax `X/kernel [in, out]`
        (hook `transpose`); `X.bias` -> `X/bias` (hook `identity`);
    torch `nn.Embedding.weight [n, d]` -> flax `embedding [n, d]` (identity);
    GemNet's raw 3-D weights (`mlp_cbf3.weight [Y, Dr, C]`, `trip_interaction.mlp_cbf.weight
        [Ct, Cc, D]`) keep the torch layout (identity);
    torch LayerNorm `weight` -> flax `scale` (identity);
    a ModuleList / Sequential index `.i` -> `_i`; GemNetTCtrl's ModuleDict adapters
        `cond_adapt_layers.<p>.<i>.<j>` -> `cond_adapt_layers_<p>_<i>_<j>`.
Tensors that are not params are consumed by other rules: ScalingFactors become
`GemNetConfig.scale_factors`, scaler buffers become `ScalarProperty.mean/std`, and fixed buffers
(GaussianSmearing offsets, sinusoid `div_term`s) are checked against their analytic values and
dropped. The energy head is dropped with its reason. A key that no rule matches is an error.
"""

import dataclasses
import re

import numpy as np

__all__ = ["Rule", "RULES", "dotted_to_flax", "match"]

ENERGY_HEAD = "GemNet energy head: computed by MatterGen but never used by the denoiser (no grad)"


def dotted_to_flax(path: str) -> str:
    """`a.b.0.c.1` -> `a/b_0/c_1` (numeric components join the module before them)."""
    out: list[str] = []
    for part in path.split("."):
        if part.isdigit() and out:
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return "/".join(out)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One line of the name map.

    Attributes:
        pattern: regex matched in full against the model-relative torch key.
        kind: "param" (becomes a flax leaf), "scale" (ScalingFactor -> config), "scaler"
            (property standardisation -> config), "buffer" (checked, dropped) or "drop".
        target: for "param", a function of the match returning the flax path; for "scale", the
            flax path of the scaled module; for "scaler", (property, field).
        hook: "transpose" or "identity" (params only).
        reason: why a dropped/consumed tensor is not a param.
    """

    pattern: str
    kind: str
    target: object = None
    hook: str = "identity"
    reason: str = ""


def _kernel(prefix: str):
    return lambda m: f"{prefix}{dotted_to_flax(m.group(1))}/kernel"


def _bias(prefix: str):
    return lambda m: f"{prefix}{dotted_to_flax(m.group(1))}/bias"


def _adapt(m):
    leaf = "kernel" if m.group(4) == "weight" else "bias"
    return f"gemnet/cond_adapt_layers_{m.group(1)}_{m.group(2)}_{m.group(3)}/{leaf}"


_DOS = "property_embeddings_adapt_dos_conditional_embedding_module"

RULES: tuple[Rule, ...] = (
    # Energy head of every output block (and its duplicate registration `layers` == `seq_energy`).
    Rule(r"gemnet\.out_blocks\.\d+\.(dense_rbf|out_energy)\.linear\.weight", "drop",
         reason=ENERGY_HEAD),
    Rule(r"gemnet\.out_blocks\.\d+\.(layers|seq_energy)\..+", "drop", reason=ENERGY_HEAD),
    Rule(r"gemnet\.out_blocks\.\d+\.scale_sum\.scale_factor", "drop", reason=ENERGY_HEAD),
    # Fixed buffers, recomputed analytically by the JAX model.
    Rule(r"gemnet\.(radial_basis|cbf_basis3\.radial_basis)\.rbf\.offset", "buffer", "offset",
         reason="GaussianSmearing centres linspace(0, 1, R): recomputed"),
    Rule(r"noise_level_encoding\.div_term", "buffer", "div_term",
         reason="time sinusoid frequencies: recomputed"),
    Rule(r"property_embeddings_adapt\.(\w+)\.conditional_embedding_module\.div_term", "buffer",
         "div_term", reason="property sinusoid frequencies: recomputed"),
    # Config-valued tensors.
    Rule(r"gemnet\.(.+)\.scale_factor", "scale", lambda m: dotted_to_flax(m.group(1))),
    Rule(r"property_embeddings_adapt\.(\w+)\.scaler\.(means|stds)", "scaler",
         lambda m: (m.group(1), m.group(2))),
    # Params with a non-generic name or layout.
    Rule(r"fc_atom\.weight", "param", lambda m: "fc_atom/kernel", "transpose"),
    Rule(r"fc_atom\.bias", "param", lambda m: "fc_atom/bias"),
    Rule(r"gemnet\.atom_emb\.embeddings\.weight", "param",
         lambda m: "gemnet/atom_emb/embeddings/embedding"),
    Rule(r"gemnet\.(mlp_cbf3|int_blocks\.\d+\.trip_interaction\.mlp_cbf)\.weight", "param",
         lambda m: f"gemnet/{dotted_to_flax(m.group(1))}/weight"),
    Rule(r"gemnet\.cond_adapt_layers\.(\w+)\.(\d+)\.(0|2)\.(weight)", "param", _adapt,
         "transpose"),
    Rule(r"gemnet\.cond_adapt_layers\.(\w+)\.(\d+)\.(0|2)\.(bias)", "param", _adapt),
    Rule(r"gemnet\.cond_mixin_layers\.(\w+)\.(\d+)\.weight", "param",
         lambda m: f"gemnet/cond_mixin_layers_{m.group(1)}_{m.group(2)}/kernel", "transpose"),
    # A PyTorch DOS adapter built as MatterGen's PropertyEmbedding around a Sequential
    # [Linear, LayerNorm, GELU, Linear, GELU] (jaxdos.crystal.conditioning.DosEmbedding).
    Rule(r"property_embeddings_adapt\.dos\.conditional_embedding_module\.layers\.(0|3)\.weight",
         "param", lambda m: f"{_DOS}/layers_{m.group(1)}/kernel", "transpose"),
    Rule(r"property_embeddings_adapt\.dos\.conditional_embedding_module\.layers\.(0|1|3)\.bias",
         "param", lambda m: f"{_DOS}/layers_{m.group(1)}/bias"),
    Rule(r"property_embeddings_adapt\.dos\.conditional_embedding_module\.layers\.1\.weight",
         "param", lambda m: f"{_DOS}/layers_1/scale"),
    # Everything else in the trunk: generic Linear weights and biases.
    Rule(r"gemnet\.(.+)\.weight", "param", _kernel("gemnet/"), "transpose"),
    Rule(r"gemnet\.(.+)\.bias", "param", _bias("gemnet/")),
)  # fmt: skip

_COMPILED = tuple((re.compile(r.pattern), r) for r in RULES)


def match(key: str) -> tuple[Rule, re.Match] | None:
    """The first rule whose pattern matches `key` in full, or None."""
    for rx, rule in _COMPILED:
        m = rx.fullmatch(key)
        if m:
            return rule, m
    return None


def apply_hook(hook: str, value: np.ndarray) -> np.ndarray:
    """The layout change of one tensor (`transpose` only for 2-D Linear weights)."""
    if hook == "identity":
        return value
    if hook == "transpose":
        if value.ndim != 2:
            raise ValueError(f"transpose hook expects a 2-D Linear weight, got {value.shape}")
        return np.ascontiguousarray(value.T)
    raise ValueError(f"unknown hook {hook!r}")
