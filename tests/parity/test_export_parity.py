"""Exporter vs mattergen: the embedded trained CDOSGen exported to a MatterGen state_dict gives a
torch denoiser with the same score as jaxdos, and a MatterGen state_dict survives
convert -> export bit for bit.

The embedded CDOSGen is a DOS model; MatterGen has no module for its DOS adapter, so its base
network is exported (`export_state_dict(..., unconditional=True)`) and compared with the jaxdos
score of the full model with the DOS dropped (every crystal unconditional). Same crystals, same
edge list (torch's graph copied into a `PeriodicGraph`), matmul precision highest; tolerance as
test_gemnet_parity (relative max-abs error <= 1e-4).
"""

import numpy as np
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from mg_reference import (  # noqa: E402
    TINY,
    build_denoiser,
    chem_batch,
    config_dict,
    denoiser_from_export,
    graph_from_torch,
    jax_batch,
    random_crystals,
    tie_free,
)
from test_gemnet_parity import TOL, _rel  # noqa: E402

from jaxdos.crystal.checkpoint import load_default  # noqa: E402
from jaxdos.crystal.convert import (  # noqa: E402
    Checkpoint,
    convert_checkpoint,
    export_state_dict,
    on_mattergen_clock,
    to_model,
)
from jaxdos.crystal.convert.name_map import match  # noqa: E402
from jaxdos.crystal.denoiser import GemNetTDenoiser  # noqa: E402


def _crystals(num_atoms, cutoff, max_neighbors):
    for seed in range(20):
        rng = np.random.default_rng(seed)
        cells, fracs = random_crystals(rng, num_atoms, 0.05)
        if tie_free(cells, fracs, num_atoms, cutoff, max_neighbors):
            return rng, cells, fracs
    raise AssertionError("no tie-free crystals in 20 seeds")


def test_default_cdosgen_exported_score_matches(gemnet_scale_file):
    model = on_mattergen_clock(load_default())  # the network is compared, not the cell clock
    config, sd = export_state_dict(model, unconditional=True)
    torch_model = denoiser_from_export(config, sd)
    graph_cfg = model.gemnet.graph
    num_atoms = [3, 5, 2]
    rng, cells, fracs = _crystals(num_atoms, graph_cfg.cutoff, graph_cfg.max_neighbors)
    types = rng.integers(1, 102, len(fracs))  # elements and the mask token 101
    t = np.array([0.13, 0.61, 0.97], np.float32)
    with torch.no_grad():
        ref = torch_model(chem_batch(cells, fracs, num_atoms, types), torch.tensor(t))
    graph = graph_from_torch(torch_model.gemnet, cells, fracs, num_atoms)
    # The full DOS model, cond=None: every crystal unconditional (m = 0).
    apply = jax.jit(lambda p, b, tt, gr: GemNetTDenoiser(model.gemnet).apply(p, b, tt, graph=gr))
    with jax.default_matmul_precision("highest"):
        out = apply(model.params, jax_batch(cells, fracs, num_atoms, types), jnp.asarray(t), graph)
    errs = {
        "frac": _rel(out.frac, ref.pos.numpy()),
        "lattice": _rel(out.lattice, ref.cell.numpy()),
        "type_logits": _rel(out.type_logits, ref.atomic_numbers.numpy()),
    }
    print(f"relative errors {errs}")
    assert max(errs.values()) <= TOL, errs


def test_mattergen_state_dict_survives_convert_then_export(gemnet_scale_file):
    adapt = ("dft_band_gap",)
    torch_model = build_denoiser(TINY, 4, adapt)
    original = {k: v.numpy() for k, v in torch_model.state_dict().items()}
    params, gemnet, diffusion, report = convert_checkpoint(
        config_dict(TINY, adapt), Checkpoint(original, {}, None, "memory")
    )
    config, sd = export_state_dict(to_model(params, gemnet, diffusion, report))
    for key, value in sd.items():
        np.testing.assert_array_equal(value, original[key], err_msg=key)
        assert value.dtype == original[key].dtype, key
    left = sorted(set(original) - set(sd))
    assert left and all(match(k)[0].kind in ("drop", "buffer") for k in left), left
    assert config["lightning_module"]["diffusion_module"]["model"]["gemnet"]["_target_"].endswith(
        "GemNetTCtrl"
    )
