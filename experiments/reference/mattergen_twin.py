"""A MatterGen (PyTorch) training twin of a jaxdos CDOSGen: same weights, same crystals, its loss.

Used by `experiments.overfit_mattergen` (does MatterGen's own training memorise where jaxdos's
does not?) and the two MatterGen benchmarks. `missing_parity()` names a parity-extra package that
is not importable; `use_parity_helpers()` puts `tests/parity` on sys.path (mg_reference, and the
torch_scatter stand-ins) before anything imports mattergen.
"""

import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.convert import export_state_dict
from jaxdos.structures import CrystalBatch

__all__ = ["missing_parity", "use_parity_helpers", "mattergen_module", "chem_batch_of"]

PARITY = Path(__file__).resolve().parents[2] / "tests" / "parity"


def missing_parity() -> str | None:
    """The first of torch, mattergen, torch_geometric that is not importable, or None."""
    names = ("torch", "mattergen", "torch_geometric")
    return next((m for m in names if importlib.util.find_spec(m) is None), None)


def use_parity_helpers() -> None:
    """tests/parity on sys.path and its `parity_helpers` imported (stand-ins, numpy.math)."""
    if str(PARITY) not in sys.path:
        sys.path.insert(0, str(PARITY))
    import parity_helpers  # noqa: F401


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
