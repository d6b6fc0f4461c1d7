"""bench_dos_smoothness plumbing: the roughness statistic and the setting parser (no sampling)."""

import numpy as np
import pytest

from experiments.bench_dos_smoothness import DEFAULT_CONFIGS, parse_config, roughness
from jaxdos.sampler.config import DOSSamplingConfig


def test_roughness_is_total_variation_over_l1():
    flat, zigzag, empty = np.ones(256), np.tile([0.0, 1.0], 128), np.zeros(256)
    r = roughness(np.stack([flat, zigzag, empty]))
    assert r[0] == 0.0 and r[1] == pytest.approx(255 / 128) and np.isnan(r[2])


def test_parse_config_types_each_field_and_defaults_to_algorithm_2():
    assert parse_config("", 16) == DOSSamplingConfig(steps=16)
    got = parse_config("unmask_order=confidence,temperature=0.7,final_argmax=1,noise_length=12", 8)
    assert got == DOSSamplingConfig(
        steps=8, unmask_order="confidence", temperature=0.7, final_argmax=True, noise_length=12.0
    )
    assert parse_config("final_argmax=false", 16).final_argmax is False
    for spec in DEFAULT_CONFIGS:
        parse_config(spec, 16)
    with pytest.raises(ValueError, match="unknown DOSSamplingConfig field"):
        parse_config("temprature=0.7", 16)
