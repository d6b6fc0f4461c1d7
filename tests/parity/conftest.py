"""Parity-test set-up: skip without the `parity` extra, stand-ins, numpy.math alias, scale file.

Everything here applies to tests/parity/ only (pytest loads this conftest for this folder):
* tests needing torch / mattergen skip with a reason naming `scripts/install_parity.sh`;
* `standins/` (pure-torch torch_scatter / torch_sparse) go on sys.path only when the compiled
  packages are not importable;
* `numpy.math` is aliased to `math` (removed in numpy 2, read by mattergen's basis_utils);
* `gemnet_scale_file` writes the scale-factor json the 1.0.3 wheel lacks and points
  `MODELS_PROJECT_ROOT` at it.
"""

import json
from pathlib import Path

import pytest
from parity_helpers import GEMNET_DT_SCALES, require_mattergen


@pytest.fixture
def gemnet_scale_file(tmp_path, monkeypatch):
    """Write `<tmp>/common/gemnet/gemnet-dT.json` and point mattergen's GemNetT at it."""
    require_mattergen()
    import mattergen.common.gemnet.gemnet as mg_gemnet

    path = tmp_path / "common" / "gemnet" / "gemnet-dT.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(GEMNET_DT_SCALES))
    monkeypatch.setattr(mg_gemnet, "MODELS_PROJECT_ROOT", str(tmp_path))
    return path


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.parity)
