"""DOS tokeniser: DOS / K -> 1025 value levels of [0, 1], plus [BG] and [MASK] (Section 4.1).

Token ids (the only place they are defined):
    0 .. 1024  value level v, meaning DOS / K = v / 1024
    1025       [BG]   band-gap bin (decodes to 0)
    1026       [MASK] absorbing state of the masked diffusion

K is the per-spectrum scale, max over bins of the per-atom DOS, so DOS / K lies in [0, 1].
[BG] marks every internal gap: a run of at least two zero-level bins with occupied (non-zero-level)
bins on both sides, i.e. the region between a valence and a conduction band, wherever it lies
relative to E_F (a TCM's gap sits below E_F). Zero-level bins at the window's edges are not gaps.
Because [BG] only replaces zero-level bins, encode/decode round-trips within half a level.
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.kernels.grid import check_dos, check_grid

__all__ = [
    "N_LEVELS",
    "BG_ID",
    "MASK_ID",
    "VOCAB_SIZE",
    "N_OUTPUT",
    "scale_of",
    "gap_bins",
    "encode",
    "decode",
    "encode_checked",
]

N_LEVELS = 1025
BG_ID = N_LEVELS  # 1025
MASK_ID = N_LEVELS + 1  # 1026
VOCAB_SIZE = N_LEVELS + 2  # 1027 input tokens
N_OUTPUT = N_LEVELS + 1  # 1026 predictable tokens: values and [BG], never [MASK]
_MIN_SCALE = 1e-6


def scale_of(dos):
    """The scale K = max over bins, `[..., L] -> [...]`, floored at 1e-6 so an empty DOS is safe."""
    return jnp.maximum(jnp.max(check_grid(dos), axis=-1), _MIN_SCALE)


def _levels(dos, scale):
    x = jnp.clip(dos / scale[..., None], 0.0, 1.0)
    return jnp.round(x * (N_LEVELS - 1)).astype(jnp.int32)


def gap_bins(levels):
    """Boolean `[..., L]`: internal runs (length >= 2) of zero-level bins, from integer levels."""
    zero = check_grid(levels, "levels") == 0
    filled = ~zero
    left = jnp.cumsum(filled, axis=-1) > 0
    right = jnp.flip(jnp.cumsum(jnp.flip(filled, -1), axis=-1), -1) > 0
    pad = jnp.zeros_like(zero[..., :1])
    zero_left = jnp.concatenate([pad, zero[..., :-1]], axis=-1)
    zero_right = jnp.concatenate([zero[..., 1:], pad], axis=-1)
    return zero & left & right & (zero_left | zero_right)


def encode(dos, scale=None):
    """Tokens `[..., L]` int32 from per-atom DOS `[..., L]` and scale K `[...]` (default: max)."""
    check_grid(dos)
    scale = scale_of(dos) if scale is None else jnp.asarray(scale, dos.dtype)
    levels = _levels(dos, scale)
    return jnp.where(gap_bins(levels), BG_ID, levels)


def decode(tokens, scale):
    """DOS `[..., L]` from tokens `[..., L]` and K `[...]`; [BG] -> 0. [MASK] also decodes to 0."""
    value = check_grid(tokens, "tokens").astype(jnp.float32) / (N_LEVELS - 1)
    value = jnp.where(tokens >= N_LEVELS, 0.0, value)
    return value * jnp.asarray(scale, jnp.float32)[..., None]


def encode_checked(dos, scale=None):
    """Host-side `encode` with input validation (shape, finiteness, sign of K)."""
    arr = check_dos(dos)
    if scale is not None:
        s = np.asarray(scale, dtype=np.float64)
        if s.shape != arr.shape[:-1]:
            raise ValueError(f"scale: expected shape {arr.shape[:-1]}, got {s.shape}")
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise ValueError("scale: expected finite values > 0 (K is the max of the DOS)")
    dos32 = jnp.asarray(arr, jnp.float32)
    return _encode_jit(dos32, scale_of(dos32) if scale is None else jnp.asarray(scale, jnp.float32))


_encode_jit = jax.jit(encode)
