"""Helpers shared by the parity tests (imported by conftest.py and the test modules)."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxdos.crystal.gemnet.scaling import GEMNET_DT_JSON

STANDINS = Path(__file__).parent / "standins"
INSTALL_HINT = "install the parity extra: scripts/install_parity.sh"

# mattergen's gemnet-dT.json values (the exact values do not matter for parity: the converter reads
# every scale factor from the state_dict). Blocks 4 stay 1.0.
GEMNET_DT_SCALES = GEMNET_DT_JSON


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


if not hasattr(np, "math"):
    np.math = math  # numpy>=2 removed it; mattergen.common.gemnet.layers.basis_utils uses it.

if _has("torch") and not (_has("torch_scatter") and _has("torch_sparse")):
    sys.path.insert(0, str(STANDINS))


def require_torch():
    """Import torch or skip the calling test with the install hint."""
    return pytest.importorskip("torch", reason=f"torch not importable; {INSTALL_HINT}")


def require_mattergen():
    """Import torch and mattergen or skip with the install hint."""
    require_torch()
    return pytest.importorskip("mattergen", reason=f"mattergen not importable; {INSTALL_HINT}")
