"""A short, plain PyTorch reference of the DOSSampler network and one guided Algorithm-2 step.

The paper's code is not public; this reference is ours and mirrors `jaxdos.sampler` line by line
(model.py, regressor.py, guidance.py, sampling.py) so the JAX port can be checked against an
independent implementation and benchmarked against torch on identical weights:

* `DOSTransformer`: bidirectional DiT with AdaLN-Zero, learned positions, SUBS carry-over.
* `PropertyRegressor`: r_phi on the expected token embedding softmax(l) . E and log K.
* `guided_logits`: l' = l - grad_l sum_p gamma_p ((r(softmax(l) E, log K)_p - y*_p) / sigma_p)^2.
* `predictor_step`: unmask each masked bin with probability (t - s)/t (all at the last step), draw
  from softmax(l') by inverse CDF at one uniform per bin, classes in DOS order ([BG] first), as
  `sampling.ordinal_draw`; both uniforms are arguments, so the same noise gives the same tokens in
  both frameworks. (No corrector: K = 0 here.)

Weights: module names equal the flax paths (`block_0.qkv.weight` <-> `block_0/qkv/kernel`), so
`state_dict_from_flax` / `flax_from_state_dict` convert both ways with one rule each: Dense kernel
`[in, out]` <-> Linear weight `[out, in]`; Embed `embedding` <-> `weight`; LayerNorm `scale` <->
`weight`; `pos_embed` as is. Float32 only (the JAX `bf16` option has no counterpart here).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jaxdos.kernels.grid import N_BINS
from jaxdos.kernels.properties import PROPERTY_NAMES
from jaxdos.kernels.tokenizer import MASK_ID, N_OUTPUT, VOCAB_SIZE
from jaxdos.sampler.config import ModelConfig, RegressorConfig

__all__ = [
    "DOSTransformer",
    "PropertyRegressor",
    "guided_logits",
    "predictor_step",
    "state_dict_from_flax",
    "flax_from_state_dict",
    "CARRY_LOGIT",
]

CARRY_LOGIT = -1e6
_FLAX_LN_EPS = 1e-6  # flax.linen.LayerNorm's default epsilon


def fourier_features(x, dim: int = 256, max_period: float = 1e4):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class CondMLP(nn.Module):
    def __init__(self, cond_dim: int, input_scale: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(256, cond_dim), nn.Linear(cond_dim, cond_dim)
        self.input_scale = input_scale

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(fourier_features(x * self.input_scale))))


def _modulate(x, shift, scale):
    return x * (1.0 + scale[:, None, :]) + shift[:, None, :]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.heads = cfg.num_heads
        self.adaln = nn.Linear(cfg.cond_dim, 6 * d)
        self.ln1 = nn.LayerNorm(d, eps=_FLAX_LN_EPS, bias=False)
        self.ln2 = nn.LayerNorm(d, eps=_FLAX_LN_EPS, bias=False)
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.mlp_in = nn.Linear(d, cfg.mlp_ratio * d)
        self.mlp_out = nn.Linear(cfg.mlp_ratio * d, d)

    def forward(self, x, c):
        b, l, d = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(c).chunk(6, dim=-1)
        h = _modulate(self.ln1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(b, l, 3, self.heads, d // self.heads).unbind(2)
        attn = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        )
        x = x + gate1[:, None, :] * self.attn_out(attn.transpose(1, 2).reshape(b, l, d))
        h = _modulate(self.ln2(x), shift2, scale2)
        h = self.mlp_out(F.gelu(self.mlp_in(h), approximate="tanh"))
        return x + gate2[:, None, :] * h


class DOSTransformer(nn.Module):
    """q_theta: (tokens [B, L], log K [B], t [B]) -> log-probs [B, L, V'] with carry-over."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.cfg = cfg
        self.embed = nn.Embedding(VOCAB_SIZE, d)
        self.pos_embed = nn.Parameter(torch.randn(N_BINS, d))
        self.scale_embed = CondMLP(cfg.cond_dim, 100.0)
        self.time_embed = CondMLP(cfg.cond_dim, 1000.0)
        for i in range(cfg.num_layers):
            self.add_module(f"block_{i}", Block(cfg))
        self.final_adaln = nn.Linear(cfg.cond_dim, 2 * d)
        self.final_ln = nn.LayerNorm(d, eps=_FLAX_LN_EPS, bias=False)
        self.head = nn.Linear(d, N_OUTPUT)

    def forward(self, tokens, log_scale, t):
        x = self.embed(tokens) + self.pos_embed[None, : tokens.shape[1]]
        if not self.cfg.time_conditioning:
            t = torch.zeros_like(t)
        c = F.silu(self.scale_embed(log_scale)) + F.silu(self.time_embed(t))
        for i in range(self.cfg.num_layers):
            x = getattr(self, f"block_{i}")(x, c)
        shift, scale = self.final_adaln(c).chunk(2, dim=-1)
        logp = torch.log_softmax(self.head(_modulate(self.final_ln(x), shift, scale)), dim=-1)
        committed = (tokens != MASK_ID)[..., None]
        onehot = F.one_hot(tokens.clamp(max=N_OUTPUT - 1), N_OUTPUT).bool()
        carry = torch.where(onehot, 0.0, CARRY_LOGIT)
        return torch.where(committed, carry, logp)

    def embedding_matrix(self):
        return self.embed.weight[:N_OUTPUT]


class PropertyRegressor(nn.Module):
    """r_phi: (expected embedding [B, L, D], log K [B]) -> standardised properties [B, P]."""

    def __init__(self, cfg: RegressorConfig, width: int):
        super().__init__()
        self.ln = nn.LayerNorm(width, eps=_FLAX_LN_EPS)
        self.proj = nn.Linear(width, cfg.proj_dim)
        self.fc1 = nn.Linear(N_BINS * cfg.proj_dim + 16 + 1, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden)
        self.out = nn.Linear(cfg.hidden, len(PROPERTY_NAMES))

    def forward(self, pe, log_scale):
        h = self.proj(self.ln(pe)).reshape(pe.shape[0], -1)
        k = fourier_features(log_scale * 10.0, dim=16, max_period=1e3)
        h = torch.cat([h, k, log_scale[:, None]], dim=-1)
        h = F.gelu(self.fc1(h), approximate="tanh")
        h = F.gelu(self.fc2(h), approximate="tanh")
        return self.out(h)


def guided_logits(net, reg, logp, log_scale, prop_mean, prop_std, targets, gammas):
    """Eq. (1): logp - grad of sum_p gamma_p standardised squared residual; also the gradient.

    Args:
        targets: ((property index, y* in physical units), ...); gammas: one gamma per target.
    """
    idx = torch.tensor([i for i, _ in targets])
    target_std = (torch.tensor([v for _, v in targets]) - prop_mean[idx]) / prop_std[idx]
    gamma = torch.tensor(gammas, dtype=torch.float32)
    ell = logp.detach().requires_grad_(True)
    pe = torch.einsum("blv,vd->bld", torch.softmax(ell, -1), net.embedding_matrix())
    residual = reg(pe, log_scale)[:, idx] - target_std
    (grad,) = torch.autograd.grad(torch.sum(gamma * residual**2), ell)
    return logp - grad, grad


def inverse_cdf_draw(logits, v):
    """`[B, L]` classes of softmax(logits) `[B, L, V']` at uniforms v `[B, L]`, [BG] (the last
    class) first in the CDF, then levels 0..1024; a class of probability 0 is never drawn."""
    bg = logits.shape[-1] - 1
    e = torch.exp(logits - logits.max(dim=-1, keepdim=True).values)
    levels = torch.cumsum(e[..., :bg], dim=-1)
    p_bg = e[..., bg]
    x = v * (p_bg + levels[..., -1]) - p_bg
    idx = (levels <= x[..., None]).sum(-1).clamp_max(bg - 1)
    return torch.where(x < 0, bg, idx)


def predictor_step(net, reg, stats, tokens, log_scale, t, s, last, u, v, targets, gammas):
    """One Algorithm-2 predictor step with given noise: uniforms `u [B, L]` (which bins unmask)
    and `v [B, L]` (their values).

    Returns:
        (next tokens [B, L], guided logits [B, L, V'], guidance gradient [B, L, V']).
    """
    b = tokens.shape[0]
    with torch.no_grad():
        logp = net(tokens, log_scale, torch.full((b,), float(t)))
    if targets:
        logits, grad = guided_logits(net, reg, logp, log_scale, *stats, targets, gammas)
    else:
        logits, grad = logp, torch.zeros_like(logp)
    masked = tokens == MASK_ID
    unmask = masked & ((u < (t - s) / t) | last)
    draws = inverse_cdf_draw(logits, v)
    return torch.where(unmask, draws, tokens), logits.detach(), grad


def _torch_name(flax_path: str) -> tuple[str, str]:
    """flax path -> (torch name, hook): one rule per leaf kind (see module doc)."""
    *mods, leaf = flax_path.split("/")
    base = ".".join(mods)
    if leaf == "kernel":
        return f"{base}.weight", "transpose"
    if leaf in ("embedding", "scale"):
        return f"{base}.weight", "identity"
    return (f"{base}.{leaf}" if base else leaf), "identity"


def state_dict_from_flax(flat_params: dict) -> dict:
    """`{flax path: array}` (flax.traverse_util.flatten_dict(..., sep='/')) -> torch state_dict."""
    out = {}
    for path, value in flat_params.items():
        name, hook = _torch_name(path)
        arr = np.asarray(value, np.float32)
        out[name] = torch.from_numpy(np.array(arr.T if hook == "transpose" else arr))  # owned copy
    return out


def flax_from_state_dict(state_dict: dict, template: dict) -> dict:
    """torch state_dict -> `{flax path: array}` for every path of `template`; strict both ways."""
    out, used = {}, set()
    for path, ref in template.items():
        name, hook = _torch_name(path)
        if name not in state_dict:
            raise KeyError(f"state_dict has no {name!r} for flax param {path!r}")
        arr = state_dict[name].detach().cpu().numpy()
        arr = arr.T if hook == "transpose" else arr
        if arr.shape != tuple(ref.shape):
            raise ValueError(
                f"{name!r}: shape {arr.shape} after {hook}, {path!r} needs {ref.shape}"
            )
        out[path], _ = np.ascontiguousarray(arr), used.add(name)
    extra = sorted(set(state_dict) - used)
    if extra:
        raise KeyError(f"state_dict tensors with no flax param: {extra}")
    return out
