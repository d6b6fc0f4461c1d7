"""Issue 12's control: the overfit run of `experiments.overfit_crystal`, trained by MatterGen.

    python -m experiments.overfit_mattergen --out runs/overfit_mg [--crystals 4] [--steps 8000]
        [--lr 1e-3] [--cosine]

Same crystals, same initial weights (jaxdos's tiny init, exported with
`jaxdos.crystal.convert.export_state_dict` and loaded into mattergen's `GemNetTDenoiser`), same
optimiser (elementwise clip 0.5, Adam, the same lr schedule) as overfit_crystal; the loss is
mattergen's own `DiffusionModule.calc_loss` in train mode, drawing its own times and noise, on
mattergen's own graph. The trained torch weights are converted back (`convert_checkpoint`) to
OUT/model and sampled with the same field-by-field bisection (OUT/bisection.json). If MatterGen's
training regenerates the crystals where jaxdos's does not, the fault is in jaxdos's training; if
both fail alike, it is the recipe at this budget. Needs the parity extra (torch, mattergen).
"""

import argparse
import dataclasses
import time

import numpy as np

from experiments import overfit_crystal
from experiments.reference.mattergen_twin import missing_parity, use_parity_helpers


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    overfit_crystal.add_run_flags(p, crystals=4, steps=8000)
    args = p.parse_args(argv)
    overfit_crystal.check_run_flags(p, args)
    return args


def main(argv=None):
    args = parse(argv)
    missing = missing_parity()
    if missing:
        raise SystemExit(f"overfit_mattergen: {missing} is not importable; install the parity "
                         "extra with scripts/install_parity.sh")  # fmt: skip
    use_parity_helpers()
    import torch

    from experiments.reference.mattergen_twin import chem_batch_of, mattergen_module
    from jaxdos.crystal.checkpoint import CDOSGenModel, save_model
    from jaxdos.crystal.convert import Checkpoint, convert_checkpoint
    from jaxdos.crystal.denoiser import GemNetTDenoiser
    from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution
    from jaxdos.crystal.fit import crystal_train_config
    from jaxdos.training import lr_schedule

    torch.set_num_threads(2)
    targets = overfit_crystal.world_targets(args.crystals, repeat=args.repeat)
    # overfit_crystal's network and forward processes with every lever at MatterGen's default.
    lever_defaults = overfit_crystal.parse(["--out", str(args.out)])
    config, diffusion, _ = overfit_crystal.lever_configs(lever_defaults)
    init = overfit_crystal.initial_params(GemNetTDenoiser(config), targets)
    dist = NumAtomsDistribution.from_counts(np.asarray(targets.num_atoms))
    start = save_model(args.out / "init", init, config, dist, diffusion=diffusion)
    module, mg_config = mattergen_module(CDOSGenModel.load(start))
    denoiser = module.model
    clean = chem_batch_of(targets)
    tcfg = crystal_train_config(
        steps=args.steps, learning_rate=args.lr,
        decay_steps=args.steps if args.cosine else None, final_lr_fraction=0.01,
    )  # fmt: skip
    schedule = lr_schedule(tcfg)  # optax: a schedule, or a float when constant
    lr_at = schedule if callable(schedule) else (lambda _: schedule)
    opt = torch.optim.Adam(module.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    torch.manual_seed(1)
    t0 = time.time()
    for i in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = float(lr_at(i))
        opt.zero_grad()
        loss, means = module.calc_loss(clean)
        loss.backward()
        torch.nn.utils.clip_grad_value_(module.parameters(), tcfg.clip_value)
        opt.step()
        if (i + 1) % max(args.steps // 10, 1) == 0:
            parts = " ".join(f"{k} {v.item():.3f}" for k, v in means.items())
            print(f"step {i + 1}: loss {loss.item():.3f} ({parts}) {time.time() - t0:.0f} s",
                  flush=True)  # fmt: skip

    trained = {k: v.detach().numpy() for k, v in denoiser.state_dict().items()}
    params, gcfg, _, _ = convert_checkpoint(mg_config, Checkpoint(trained, {}, None, "memory"))
    gcfg = dataclasses.replace(gcfg, graph=config.graph)
    meta = {"steps": args.steps, "trained_by": "mattergen DiffusionModule.calc_loss (torch)"}
    save_model(args.out / "model", params, gcfg, dist, meta, diffusion=diffusion)
    print(f"trained in {time.time() - t0:.0f} s; bisection of the MatterGen-trained weights:")
    overfit_crystal.main(["--out", str(args.out), "--model", str(args.out / "model"),
                          "--crystals", str(args.crystals), "--repeat", str(args.repeat),
                          "--sampling-steps", str(args.sampling_steps)])  # fmt: skip


if __name__ == "__main__":
    main()
