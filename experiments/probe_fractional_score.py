"""Can the mid-noise coordinate score of one memorised crystal be learned from fractional inputs?

    python -m experiments.probe_fractional_score [--batch 4] [--layers 2] [--width 64]
        [--steps 8000] [--mask-types] [--keep-common-mode]

Issue 12's bisection found that tiny CDOSGen (GemNet-T) learns the coordinate score of even one
crystal poorly at t ~ 0.3-0.5 (pos_rel 0.33 / 0.66 at t = 0.3 / 0.4, where an invariant network
could be exact). This probe trains `jaxdos.crystal.frac_head.FractionalHead` alone, with no GemNet
and no cell, on the same crystal (the first world training crystal with <= 8 atoms), the same
wrapped-normal process and the same target (`score x sigma`), with plain Adam (lr 1e-3). Each
step draws `--batch` noisy copies of the crystal, each with its own t ~ U(0, 1) and a random
translation. `--mask-types` hides each atom's type with probability t (the D3PM absorbing
state), as CDOSGen's inputs do. The table is pos_rel at fixed t (512 draws): the MSE of the score
with each crystal's common mode removed over the target's variance (0 = exact, 1 = as good as
predicting zero), as in `jaxdos.crystal.diagnostics.score_quality`. The loss removes the common
mode too, unless `--keep-common-mode` (MatterGen's loss).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdos.crystal.batch import MASK_Z
from jaxdos.crystal.diffusion import wrapped_normal as wn
from jaxdos.crystal.frac_head import FractionalHead
from jaxdos.crystal.gemnet.basis import noise_level_encoding
from jaxdos.data.world import train_val_records
from jaxdos.structures import CrystalBatch, Crystals, pack

TIMES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)


def copies(z: np.ndarray, b: int) -> CrystalBatch:
    """b copies of one crystal of types z as a flat batch (coordinates filled in per draw)."""
    n = len(z)
    cells = np.tile(np.eye(3, dtype=np.float32), (b, 1, 1))
    return pack(Crystals(np.tile(z, (b, 1)), np.zeros((b, n, 3), np.float32), cells, np.full(b, n)))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--mask-types", action="store_true")
    p.add_argument("--keep-common-mode", action="store_true")
    args = p.parse_args(argv)
    for flag in ("batch", "layers", "width", "steps"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag}: expected >= 1, got {getattr(args, flag)}")

    train, _ = train_val_records()
    i = int(np.flatnonzero(train.num_atoms <= 8)[0])
    n = int(train.num_atoms[i])
    z, x0 = train.atomic_numbers[i, :n], jnp.asarray(train.frac_coords[i, :n])
    print(f"crystal: {n} atoms, Z = {z.tolist()}")
    cfg = wn.WrappedNormalConfig()
    head = FractionalHead(args.width, args.layers, n)

    def draw(key, b, t=None):
        """(batch of noisy copies, t [b], target [b, n, 3])."""
        k_t, k_eps, k_shift, k_mask = jax.random.split(key, 4)
        t = jax.random.uniform(k_t, (b,)) if t is None else t
        sig = wn.sigma(t, jnp.full((b,), n), cfg)[:, None, None]
        clean = jnp.mod(x0 + jax.random.uniform(k_shift, (b, 1, 3)), 1.0)
        xt = jnp.mod(clean + sig * jax.random.normal(k_eps, (b, n, 3)), 1.0)
        batch = copies(z, b)
        types = batch.atomic_numbers
        if args.mask_types:
            hidden = jax.random.uniform(k_mask, (b, n)) < t[:, None]
            types = jnp.where(hidden.reshape(-1), MASK_Z, types)
        batch = batch._replace(frac_coords=xt.reshape(-1, 3), atomic_numbers=types)
        return batch, t, sig * wn.wrapped_normal_score(xt - clean, sig)

    def predict(params, batch, t):
        return head.apply(params, batch, noise_level_encoding(t, 64)).reshape(-1, n, 3)

    centre = lambda v: v - v.mean(1, keepdims=True)
    b0, t0, _ = draw(jax.random.key(0), 1)
    params = head.init(jax.random.key(0), b0, noise_level_encoding(t0, 64))
    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state, key):
        batch, t, target = draw(key, args.batch)

        def loss(prm):
            out = predict(prm, batch, t)
            if args.keep_common_mode:
                return jnp.mean((out - target) ** 2)
            return jnp.mean((centre(out) - centre(target)) ** 2)

        grad = jax.grad(loss)(params)
        upd, state = opt.update(grad, state, params)
        return optax.apply_updates(params, upd), state

    @jax.jit
    def pos_rel(params, t):
        batch, t, target = draw(jax.random.key(99), 512, jnp.full((512,), t))
        err = centre(predict(params, batch, t)) - centre(target)
        return jnp.sum(err**2) / jnp.sum(centre(target) ** 2)

    print("step    " + "  ".join(f"t={t:<4}" for t in TIMES))
    key = jax.random.key(1)
    for it in range(1, args.steps + 1):
        key, sub = jax.random.split(key)
        params, state = step(params, state, sub)
        if it % max(args.steps // 4, 1) == 0:
            print(f"{it:<7} " + "  ".join(f"{float(pos_rel(params, t)):.3f} " for t in TIMES))


if __name__ == "__main__":
    main()
