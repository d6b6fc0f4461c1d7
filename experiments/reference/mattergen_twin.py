"""A MatterGen (PyTorch) training twin of a jaxdos CDOSGen: same weights, same crystals, its loss.

Used by `experiments.overfit_mattergen` (does MatterGen's own training memorise where jaxdos's
does not?) and `experiments.bench_crystal_train_vs_mattergen` (training-step speed). Needs the
parity extra; import it after `tests/parity` is on sys.path (`parity_helpers` first).
"""

import tempfile

import numpy as np

from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.convert import export_state_dict
from jaxdos.structures import CrystalBatch

__all__ = ["mattergen_module", "chem_batch_of"]


def mattergen_module(model: CDOSGenModel):
    """(MatterGen `DiffusionModule` in train mode holding `model`'s base network, its config dict).

    The DOS adapter, if any, is dropped (MatterGen has no module for it), so the twin trains the
    unconditional network; the corruption is built from `model.diffusion`'s lattice density.
    """
    from mg_reference import build_diffusion_module, denoiser_from_export, mattergen_scales

    config, tensors = export_state_dict(model, unconditional=model.gemnet.dos_dim is not None)
    with tempfile.TemporaryDirectory() as root, mattergen_scales(root):
        denoiser = denoiser_from_export(config, tensors)
    module = build_diffusion_module(denoiser, model.diffusion.cell.limit_density)
    return module.train(), config


def chem_batch_of(crystals: CrystalBatch):
    """The real crystals of a padded jaxdos batch as a batched mattergen ChemGraph."""
    from mg_reference import chem_batch

    nm, gm = np.asarray(crystals.node_mask), np.asarray(crystals.graph_mask)
    return chem_batch(
        np.asarray(crystals.lattice)[gm],
        np.asarray(crystals.frac_coords)[nm],
        [int(n) for n in np.asarray(crystals.num_atoms)[gm]],
        np.asarray(crystals.atomic_numbers)[nm],
    )
