"""Helpers shared by the parity tests (imported by conftest.py and the test modules)."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

STANDINS = Path(__file__).parent / "standins"
INSTALL_HINT = "install the parity extra: scripts/install_parity.sh"

# fairchem gemnet-dT "tri_gaussian128" values that mattergen's gemnet-dT.json holds
# (values as rounded in spec mattergen.md section 2.6; the exact values do not matter for
# parity because the converter reads every scale factor from the state_dict). Blocks 4 stay 1.0.
GEMNET_DT_SCALES = {
    "TripInteraction_1_had_rbf": 18.8736,
    "TripInteraction_1_sum_cbf": 7.99685,
    "AtomUpdate_1_sum": 1.22046,
    "TripInteraction_2_had_rbf": 16.1082,
    "TripInteraction_2_sum_cbf": 7.61463,
    "AtomUpdate_2_sum": 0.96910,
    "TripInteraction_3_had_rbf": 15.0193,
    "TripInteraction_3_sum_cbf": 7.02518,
    "AtomUpdate_3_sum": 0.89032,
    "OutBlock_0_sum": 1.64378,
    "OutBlock_0_had": 16.1610,
    "OutBlock_1_sum": 1.10777,
    "OutBlock_1_had": 13.5468,
    "OutBlock_2_sum": 0.94779,
    "OutBlock_2_had": 12.7543,
    "OutBlock_3_sum": 0.90593,
    "OutBlock_3_had": 13.4850,
}


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
