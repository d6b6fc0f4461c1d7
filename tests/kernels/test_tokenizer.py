"""Tokeniser: ids, [BG] placement, round trip within half a level, checked entry points."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxdos.kernels import tokenizer as tok

# Jitted once per shape: eager dispatch of every jnp op is slow on a shared 2-core CPU.
encode = jax.jit(tok.encode)
decode = jax.jit(tok.decode)


def test_ids():
    assert (tok.N_LEVELS, tok.BG_ID, tok.MASK_ID, tok.VOCAB_SIZE) == (1025, 1025, 1026, 1027)


def test_bg_marks_internal_gaps_only():
    d = np.ones(256, np.float32)
    d[:5] = 0  # leading zeros: window edge, not a gap
    d[100:140] = 0  # internal gap
    d[200] = 0  # single zero bin: not a gap
    t = np.asarray(encode(jnp.asarray(d)))
    assert np.all(t[100:140] == tok.BG_ID)
    assert np.all(t[:5] == 0) and t[200] == 0
    assert np.sum(t == tok.BG_ID) == 40
    assert np.all(t[~np.isin(np.arange(256), [*range(5), *range(100, 140), 200])] == 1024)


def test_decode_bg_and_mask_are_zero():
    t = jnp.zeros((1, 256), jnp.int32).at[0, :4].set(jnp.array([tok.BG_ID, tok.MASK_ID, 1024, 512]))
    np.testing.assert_allclose(
        decode(t, jnp.array([2.0]))[:, :4], [[0, 0, 2.0, 1.0 * 512 / 1024 * 2]]
    )


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float32, (3, 256), elements=st.floats(0, 50, width=32)),
    st.lists(st.tuples(st.integers(0, 255), st.integers(1, 60)), max_size=3),
)
def test_round_trip_within_half_level(dos, gaps):
    for start, length in gaps:
        dos[:, start : start + length] = 0.0
    scale = tok.scale_of(jnp.asarray(dos))
    t = encode(jnp.asarray(dos))
    back = np.asarray(decode(t, scale))
    half = np.asarray(scale)[:, None] / (2 * (tok.N_LEVELS - 1))
    assert np.all(np.abs(back - dos) <= half * (1 + 1e-5) + 1e-7)
    assert np.all(back[np.asarray(t) == tok.BG_ID] == 0)
    assert np.all((np.asarray(t) >= 0) & (np.asarray(t) <= tok.BG_ID))


def test_encode_checked_errors():
    with pytest.raises(ValueError, match="scale"):
        tok.encode_checked(np.ones((2, 256)), scale=np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="scale"):
        tok.encode_checked(np.ones((2, 256)), scale=np.array([1.0]))
    with pytest.raises(ValueError, match="dos"):
        tok.encode_checked(np.full((2, 256), np.nan))
    np.testing.assert_array_equal(
        tok.encode_checked(np.ones((2, 256)), scale=np.array([1.0, 2.0]))[:, 0], [1024, 512]
    )
