"""experiments.overfit_mattergen end to end at toy size: MatterGen trains, jaxdos bisects.

The converted-back model must be the torch network's weights after training (they moved from the
exported init), and the exact-score row must regenerate every target, as with jaxdos's own
training (tests/crystal/test_overfit.py).
"""

import json

import numpy as np
import pytest
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402


@pytest.mark.slow
def test_mattergen_trained_weights_come_back_and_bisect(tmp_path):
    from experiments.overfit_mattergen import main
    from jaxdos.crystal.checkpoint import CDOSGenModel

    main(["--out", str(tmp_path), "--crystals", "2", "--steps", "3", "--sampling-steps", "4"])
    init, trained = (CDOSGenModel.load(tmp_path / d) for d in ("init", "model"))
    flat = lambda m: np.concatenate([np.ravel(x) for x in jax.tree.leaves(m.params)])
    a, b = flat(init), flat(trained)
    assert a.shape == b.shape and not np.allclose(a, b)
    assert trained.meta["trained_by"].startswith("mattergen")
    rows = json.loads((tmp_path / "bisection.json").read_text())["rows"]
    exact = next(r for r in rows if not r["network"])
    assert exact["own"] == exact["n"] == 2
