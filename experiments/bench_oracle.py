"""Benchmark: crystals/s of the JAX tight-binding oracle vs the numpy reference, same crystals.

    python -m experiments.bench_oracle [--quick] [--n 200] [--out out.json]

The JAX oracle is timed after a warm-up call on the same crystals (compilation excluded and
reported separately); the numpy reference (`tests/kernels/oracle_reference.py`, dense per-bond
loops, full k-grid) runs on the first few of them. Crystals come from the world generator.
"""

import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments import benchio
from jaxdos.data.families import generate_crystal, to_crystals
from jaxdos.kernels.oracle import ORACLE_VERSION, oracle_dos


def run(n: int, n_ref: int, seed: int) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "kernels"))
    from oracle_reference import reference_dos

    crystals = [generate_crystal(seed, i) for i in range(n)]
    z, frac, lat, num = to_crystals(crystals)
    t0 = time.perf_counter()
    oracle_dos(z, frac, lat, num)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    dos, _ = oracle_dos(z, frac, lat, num)
    jax_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [reference_dos(z[i, : num[i]], frac[i, : num[i]], lat[i])[0] for i in range(n_ref)]
    ref_s = time.perf_counter() - t0
    err = max(float(np.abs(dos[i] - r).max() / r.max()) for i, r in enumerate(ref))
    return {
        "oracle_version": ORACLE_VERSION,
        "backend": jax.default_backend(),
        "n_crystals": n,
        "mean_atoms": float(num.mean()),
        "jax_crystals_per_s": n / jax_s,
        "jax_first_call_s": first,
        "numpy_ref_crystals": n_ref,
        "numpy_ref_crystals_per_s": n_ref / ref_s,
        "speedup": (n / jax_s) / (n_ref / ref_s),
        "max_rel_dos_diff_vs_ref": err,
    }


def main(argv=None):
    # --json: the flag's first name, still accepted
    ap = benchio.parser(
        __doc__,
        quick="< 1 minute on CPU (after compile)",
        out="bench_oracle.json",
        out_aliases=("--json",),
    )
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-ref", type=int, default=20)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    n, n_ref = (48, 6) if args.quick else (args.n, args.n_ref)
    res = run(n, n_ref, args.seed)
    benchio.summary(
        f"oracle {res['backend']}: jax {res['jax_crystals_per_s']:.1f} crystals/s "
        f"(first call {res['jax_first_call_s']:.0f} s incl. compile), numpy reference "
        f"{res['numpy_ref_crystals_per_s']:.2f} crystals/s, ratio {res['speedup']:.1f}x, "
        f"max rel diff {res['max_rel_dos_diff_vs_ref']:.1e}"
    )
    benchio.write_json(args.out, res)
    return res


if __name__ == "__main__":
    main()
