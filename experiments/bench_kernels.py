"""Throughput of the DOS kernels: properties (Algorithm 1, DOS(E_F), N(E_F)) + TCM filter, DOS/s.

JAX (one jitted function over a `[chunk, 256]` batch) against a vectorised numpy baseline of the
same computation, in the same run on the same random spectra; the numpy outputs are checked
against JAX on the first chunk so the two sides compute the same thing. The batch of N spectra
(default 1M; `--quick` 64k) is streamed in chunks through a pool of `chunk` random spectra
generated once, so host memory stays ~chunk * 1 KiB whatever N is.

    python -m experiments.bench_kernels --quick --out /tmp/bench_kernels.json
    python -m experiments.bench_kernels --append docs/benchmarks.md   # full 1M run, adds a row
"""

import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments import benchio
from jaxdos.kernels import filters, properties
from jaxdos.kernels.grid import BIN_WIDTH, E_WINDOW, FERMI_INDEX

DATE = "2026-11-26"


def random_spectra(n: int, seed: int = 0) -> np.ndarray:
    """`[n, 256]` float32 spectra: gamma noise with a random empty block near E_F in most rows."""
    rng = np.random.default_rng(seed)
    d = rng.gamma(0.5, 1.0, (n, 256)).astype(np.float32)
    lo = rng.integers(40, 128, n)[:, None]
    hi = lo + rng.integers(0, 90, n)[:, None]
    idx = np.arange(256)
    return np.where((idx >= lo) & (idx < hi), 0.0, d).astype(np.float32)


def jax_kernels(d):
    """The benchmarked computation: the three properties and the TCM verdicts/measurements."""
    return properties.all_properties(d), filters.tcm_filter(d)


_CRIT = filters.TCMCriteria()


def numpy_kernels(d, crit=_CRIT):
    """Vectorised numpy port of `jax_kernels` (the baseline)."""
    r = np.maximum(d, 0.0)
    below = np.cumsum(r[:, :FERMI_INDEX][:, ::-1], axis=1)
    above = np.cumsum(r[:, FERMI_INDEX:], axis=1)
    gap = (np.maximum(1 - 10 * below, 0).sum(1) + np.maximum(1 - 10 * above, 0).sum(1)) * BIN_WIDTH
    dos_f = 0.5 * (d[:, FERMI_INDEX - 1] + d[:, FERMI_INDEX])
    n_ef = BIN_WIDTH * d[:, :FERMI_INDEX].sum(1)
    n = d.shape[1]
    idx = np.arange(n)
    scale = np.maximum(d.max(1, keepdims=True), 0.0)
    empty = d <= crit.zero_tol * scale
    last = np.maximum.accumulate(np.where(empty, -1, idx), axis=1)
    fwd = np.where(empty, idx - last, 0)
    rev = empty[:, ::-1]
    last_r = np.maximum.accumulate(np.where(rev, -1, idx), axis=1)
    bwd = np.where(rev, idx - last_r, 0)[:, ::-1]
    hole = empty & (fwd + bwd - 1 >= crit.min_gap_bins)
    in_hole = hole[:, FERMI_INDEX]
    bottom = np.where(hole & (idx < FERMI_INDEX), idx, -1).max(1) + 1
    top = np.where(hole & (idx > FERMI_INDEX), idx, n).min(1) - 1
    width = np.where(in_hole, 0, top - bottom + 1) * BIN_WIDTH
    below_i = np.clip(bottom - 1, 0, n - 1)
    glen = fwd[np.arange(d.shape[0]), below_i]
    glen = np.where((bottom >= 1) & (bottom - glen >= 1) & ~in_hole, glen, 0)
    gap_below = glen * BIN_WIDTH
    gap_ok = gap_below >= crit.min_gap - 1e-6
    metallic = dos_f > crit.zero_tol * scale[:, 0]
    type1 = gap_ok & metallic & (width > crit.type1_min_width)
    type2 = gap_ok & metallic & (width > 0) & (width < crit.type2_max_width)
    band_bottom = np.where(in_hole, 0.0, bottom * BIN_WIDTH - E_WINDOW)
    return (gap, dos_f, n_ef), (gap_below, width, band_bottom, type1, type2)


_jax_kernels_jit = jax.jit(jax_kernels)


def _check_agreement(d):
    props, tcm = _jax_kernels_jit(jnp.asarray(d))
    (gap, dos_f, n_ef), (gap_below, width, bottom, t1, t2) = numpy_kernels(d)
    for a, b in [
        (props["band_gap"], gap),
        (props["dos_at_fermi"], dos_f),
        (props["integrated_dos"], n_ef),
        (tcm.gap_below, gap_below),
        (tcm.bandwidth, width),
        (tcm.band_bottom, bottom),
    ]:
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(tcm.type1), t1)
    np.testing.assert_array_equal(np.asarray(tcm.type2), t2)


def run(n: int, chunk: int) -> dict:
    pool = random_spectra(chunk)
    _check_agreement(pool[: min(chunk, 4096)])
    steps = -(-n // chunk)  # ceil: at least n spectra
    total = steps * chunk
    fn = _jax_kernels_jit
    dev = jax.device_put(pool)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(dev))
    compile_s = time.perf_counter() - t0
    # Device-resident input: the figure is kernel throughput, as it is used inside a sampler.
    t0 = time.perf_counter()
    for _ in range(steps):
        out = fn(dev)
    jax.block_until_ready(out)
    jax_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        numpy_kernels(pool)
    np_s = time.perf_counter() - t0
    return {
        "n_spectra": total,
        "chunk": chunk,
        "jax_dos_per_s": total / jax_s,
        "numpy_dos_per_s": total / np_s,
        "ratio": np_s / jax_s,
        "jax_s": jax_s,
        "numpy_s": np_s,
        "compile_s": compile_s,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
    }


def main(argv=None):
    p = benchio.parser(__doc__, quick="64k spectra instead of 1M", out=None)
    p.add_argument("--n", type=int, default=None, help="number of spectra (default 1M)")
    p.add_argument("--chunk", type=int, default=65536, help="spectra per jitted call")
    p.add_argument("--append", default=None, help="append a table row to this benchmarks.md")
    p.add_argument("--hardware", default="2-core CPU (CI-class VM)", help="label for the row")
    args = p.parse_args(argv)
    n = args.n or (65536 if args.quick else 1_000_000)
    if n < 1 or args.chunk < 1:
        raise ValueError(f"--n, --chunk: expected >= 1, got {n}, {args.chunk}")
    res = run(n, min(args.chunk, n))
    cmd = "python -m experiments.bench_kernels" + (" --quick" if args.quick else "")
    res["command"] = cmd
    benchio.summary(
        f"jax-jit   properties+tcm  n={res['n_spectra']}  {res['jax_dos_per_s']:.3e} DOS/s"
        f"  (compile {res['compile_s']:.2f} s, {res['device']})"
    )
    benchio.summary(
        f"numpy-vec properties+tcm  n={res['n_spectra']}  {res['numpy_dos_per_s']:.3e} DOS/s"
        f"  ratio jax/numpy = {res['ratio']:.2f}x"
    )
    if args.out:
        benchio.write_json(args.out, res)
    if args.append:
        row = (
            f"| {DATE} | {args.hardware} | `{cmd}` | properties+TCM filter, JAX jit: "
            f"{res['jax_dos_per_s']:.3g} DOS/s (n={res['n_spectra']}) | numpy vectorised: "
            f"{res['numpy_dos_per_s']:.3g} DOS/s | {res['ratio']:.2f}x |\n"
        )
        with open(args.append, "a") as f:
            f.write(row)
    return res


if __name__ == "__main__":
    main()
