"""Seeded golden regression of the embedded models: sample statistics against tests/golden.json.

Fixed seeds and small sizes run the two embedded models through the public pipeline (stage 1:
`sample_dos` with no targets, so every proposal is kept and K is drawn as the pipeline draws it;
stage 2: `generate_crystals` unconditionally and conditioned on those spectra) and reduce the
samples to per-sample values; the test compares their means with the stored ones.

Tolerance: each stored mean carries `tol = 2 * sem + 1e-4`, sem the standard error of the mean of
its per-sample values at generation time. On one machine a rerun reproduces the means to float
noise (~1e-6). Across machines, matmul rounding can flip a token or type draw and send a few
samples down another path: if k of n samples are redrawn, a mean moves by about
sqrt(2 k) / n std = sqrt(2 k / n) sem, under 2 sem while k < 2 n. A change of the committed
parameters or of a sampler moves the distribution, and with 20 statistics one of them by more
than 2 sem (a retrained or perturbed model, a changed schedule, a dropped prior or guidance
term). `num_atoms` is drawn on the host from the model's atom-count distribution with a numpy
generator, so it is exact: its tolerance is the floor alone. `valid` is a 0/1 rate whose sem is 0
when every crystal passes, so it also tolerates one crystal changing its verdict (1 / n).

The embedded model files may change format (their parameters must not); the golden values then
stay valid. Regenerate after an intended change of a model or sampler, and say why in the commit:

    python tests/test_golden.py --update
"""

import json
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("golden.json")
_SIGMAS = 2.0
_FLOOR = 1e-4
_EXACT = ("uncond/num_atoms", "cond/num_atoms")  # host numpy draws: no float noise

# Sizes: stage 1 one batch of 32 spectra at 16 steps; stage 2 one batch of 16 unconditional and 8
# DOS-conditioned crystals at 10 steps. Few steps keep it near a minute on 2 CPU cores; the
# statistics still see every parameter and every term of both samplers' updates.
N_DOS, DOS_STEPS = 32, 16
N_UNCOND, N_COND, CRYSTAL_STEPS = 16, 8, 10


def _dos_values(acc) -> dict:
    """Per-spectrum values of the accepted DOS (`[M]` each)."""
    from jaxdos.kernels.tokenizer import BG_ID

    level = np.where(acc.tokens >= BG_ID, 0, acc.tokens) / 1024.0
    return {
        "scale": acc.scale,
        "roughness": np.abs(np.diff(level, axis=-1)).mean(-1),  # mean |step| of DOS / K
        "bg_fraction": (acc.tokens == BG_ID).mean(-1),
        "zero_fraction": (acc.tokens == 0).mean(-1),
        "level_mean": level.mean(-1),
        **{name: acc.properties[name] for name in acc.properties},
    }


def _crystal_values(crystals) -> dict:
    """Per-crystal values: size, cell volume per atom, type moments, oracle validity."""
    from jaxdos.kernels.oracle import OracleConfig
    from jaxdos.kernels.oracle_prep import prepare_crystals

    n = np.asarray(crystals.num_atoms)
    z = np.asarray(crystals.atomic_numbers, np.float64)
    mask = np.arange(z.shape[1]) < n[:, None]
    zmean = np.where(mask, z, 0).sum(-1) / n
    zvar = np.where(mask, (z - zmean[:, None]) ** 2, 0).sum(-1) / n
    volume = np.abs(np.linalg.det(np.asarray(crystals.lattice, np.float64)))
    cfg = OracleConfig.default()
    valid = []
    for i in range(n.size):
        try:  # the scoring oracle's own validity rule (distances, cell, elements)
            prepare_crystals(*(np.asarray(f)[i : i + 1] for f in crystals), cfg)
            valid.append(1.0)
        except ValueError:
            valid.append(0.0)
    return {
        "num_atoms": n.astype(np.float64),
        "log_volume_per_atom": np.log(volume / n),  # log: a blown-up cell is a tail, not a mean
        "z_mean": zmean,
        "z_std": np.sqrt(zvar),
        "distinct_elements": np.array([len(set(z[i, : n[i]])) for i in range(n.size)], float),
        "valid": np.asarray(valid),
    }


def measure() -> dict:
    """{stat: per-sample values} for every golden statistic, from fixed seeds."""
    from jaxdos.pipeline import generate_crystals, sample_dos
    from jaxdos.sampler.config import DOSSamplingConfig
    from jaxdos.sampler.targets import Targets

    acc = sample_dos(
        Targets(),
        accept=N_DOS,
        proposals=N_DOS,
        batch_size=N_DOS,
        seed=0,
        sampling_config=DOSSamplingConfig(steps=DOS_STEPS),
        progress=False,
    )
    out = {f"dos/{k}": np.asarray(v, np.float64) for k, v in _dos_values(acc).items()}
    uncond, _ = generate_crystals(
        None, num_samples=N_UNCOND, steps=CRYSTAL_STEPS, batch_size=N_UNCOND, seed=0
    )
    cond, _ = generate_crystals(
        acc.dos[:N_COND], cfg_scale=2.0, steps=CRYSTAL_STEPS, batch_size=N_COND, seed=0
    )
    for mode, crystals in (("uncond", uncond), ("cond", cond)):
        out.update({f"{mode}/{k}": v for k, v in _crystal_values(crystals).items()})
    return out


def summarise(values: dict) -> dict:
    """{stat: {"mean", "tol", "n"}} with tol = 2 sem + floor (module docstring)."""
    out = {}
    for k, v in sorted(values.items()):
        v = np.asarray(v, np.float64)
        sem = v.std(ddof=1) / np.sqrt(v.size) if v.size > 1 and k not in _EXACT else 0.0
        tol = _SIGMAS * sem + _FLOOR + (1.0 / v.size if k.endswith("/valid") else 0.0)
        out[k] = {"mean": float(v.mean()), "tol": float(tol), "n": int(v.size)}
    return out


def test_embedded_models_match_golden_statistics():
    golden = json.loads(GOLDEN.read_text())["statistics"]
    now = summarise(measure())
    assert sorted(now) == sorted(golden), "statistics changed: regenerate tests/golden.json"
    off = {
        k: (round(now[k]["mean"], 6), g["mean"], g["tol"])
        for k, g in golden.items()
        if now[k]["n"] != g["n"] or abs(now[k]["mean"] - g["mean"]) > g["tol"]
    }
    assert not off, f"outside tolerance (now, golden, tol): {off}"


def main(argv) -> None:
    if argv != ["--update"]:
        raise SystemExit("usage: python tests/test_golden.py --update")
    stats = summarise(measure())
    doc = {
        "about": "tests/test_golden.py: means of per-sample statistics of the embedded models "
        "(fixed seeds), each with tol = 2 * sem + 1e-4; regenerate with --update",
        "statistics": stats,
    }
    GOLDEN.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN} ({len(stats)} statistics)")


if __name__ == "__main__":
    # Import this checkout's jaxdos (the repository root), not whichever one is installed.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main(sys.argv[1:])
