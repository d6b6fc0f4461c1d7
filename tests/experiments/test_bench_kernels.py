"""Smoke test of the kernel benchmark: its numpy baseline matches JAX and the JSON is written."""

import json

import numpy as np

from experiments import bench_kernels


def test_numpy_baseline_matches_jax_and_writes_json(tmp_path):
    d = bench_kernels.random_spectra(512, seed=1)
    assert np.mean(d[:, 100:128] == 0) > 0.2  # the empty blocks exercise the gap/band code
    bench_kernels._check_agreement(d)  # raises on any mismatch
    out = tmp_path / "bench.json"
    res = bench_kernels.main(["--n", "1024", "--chunk", "512", "--out", str(out)])
    assert res["n_spectra"] == 1024 and res["ratio"] > 0
    assert json.loads(out.read_text())["jax_dos_per_s"] > 0
