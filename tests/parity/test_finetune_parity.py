"""Fine-tuning a converted MatterGen checkpoint (issue 14 item 5): a seeded random MatterGen model
-> convert -> `train_crystal --stage finetune --init` -> generate -> CIF files.

At step 0 the fine-tune's network (the init's architecture plus the DOS embedding and the
zero-initialised adapters, paper eqs. 2-4) must score a DOS-conditioned batch exactly as the base
model scores it unconditionally, and both as the PyTorch model does (same edge list, precision
"highest", the tolerance of test_gemnet_parity).
"""

import dataclasses

import numpy as np
import pytest
from parity_helpers import require_mattergen

require_mattergen()
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
from mg_reference import (  # noqa: E402
    TINY,
    chem_batch,
    graph_from_torch,
    jax_batch,
    random_crystals,
    write_model_folder,
)

from experiments import train_crystal  # noqa: E402
from jaxdos.crystal.batch import DosCondition  # noqa: E402
from jaxdos.crystal.checkpoint import CDOSGenModel  # noqa: E402
from jaxdos.crystal.convert import convert_model_dir  # noqa: E402
from jaxdos.crystal.denoiser import GemNetTDenoiser  # noqa: E402
from jaxdos.crystal.fit import CrystalFitConfig, initial_model  # noqa: E402
from jaxdos.crystal.train import adapters_only_labels  # noqa: E402
from jaxdos.data.budgets import CrystalBudgets  # noqa: E402
from jaxdos.data.records import load_records, save_records  # noqa: E402
from jaxdos.data.world import load_world  # noqa: E402

TOL = 1e-4  # as test_gemnet_parity
# Smaller than TINY (one block, 16 wide) so that the training compiles fast; every structural
# feature of the network is still there.
SMALL = dict(TINY, num_blocks=1, emb_size_atom=16, emb_size_edge=16, latent_dim=16, num_radial=16)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(converted model dir, torch model, a tiny records file) built once."""
    root = tmp_path_factory.mktemp("finetune")
    folder, torch_model = write_model_folder(root / "mattergen", SMALL, seed=3)
    convert_model_dir(folder, root / "converted")
    records = root / "records.npz"
    save_records(records, load_world("train").take(np.arange(10)), oracle_version="test")
    return root / "converted", torch_model, records


def test_step0_conditional_score_is_the_base_score(converted):
    out_dir, torch_model, records_path = converted
    base = CDOSGenModel.load(out_dir)
    config = CrystalFitConfig(stage="finetune", init=str(out_dir), records=str(records_path))
    config = config.resolved()
    assert config.model == base.gemnet and config.diffusion == base.diffusion
    records, _ = load_records(records_path, oracle_version=None)
    model, params = initial_model(config, CrystalBudgets(atoms=40, graphs=3), records)
    gemnet = model.config
    assert gemnet.dos_dim == 256 and gemnet.num_blocks == SMALL["num_blocks"]
    assert gemnet.emb_size_atom == SMALL["emb_size_atom"]
    assert dataclasses.replace(gemnet, dos_dim=None) == base.gemnet  # the init's architecture
    # Every base leaf is carried over; the mix-ins (eq. 4) start at zero.
    flat = dict(jax.tree_util.tree_leaves_with_path(params))
    for path, leaf in jax.tree_util.tree_leaves_with_path(base.params):
        np.testing.assert_array_equal(np.asarray(flat[path]), leaf)
    mixins = [v for p, v in flat.items() if "cond_mixin_layers" in jax.tree_util.keystr(p)]
    assert len(mixins) == SMALL["num_blocks"] and all(not np.any(np.asarray(m)) for m in mixins)

    rng = np.random.default_rng(5)
    num_atoms = [4, 3]
    cells, fracs = random_crystals(rng, num_atoms, 0.05)
    types = rng.integers(1, 102, len(fracs))
    t = np.array([0.21, 0.83], np.float32)
    with torch.no_grad():
        ref = torch_model(chem_batch(cells, fracs, num_atoms, types), torch.tensor(t))
    graph = graph_from_torch(torch_model.gemnet, cells, fracs, num_atoms)
    batch = jax_batch(cells, fracs, num_atoms, types)
    dos = DosCondition(jnp.asarray(rng.gamma(2.0, 0.5, (2, 256)), jnp.float32), jnp.ones(2, bool))
    with jax.default_matmul_precision("highest"):
        cond = model.apply(params, batch, jnp.asarray(t), dos, graph=graph)
        plain = GemNetTDenoiser(base.gemnet).apply(base.params, batch, jnp.asarray(t), graph=graph)
    for field, torch_out in (
        ("frac", ref.pos),
        ("lattice", ref.cell),
        ("type_logits", ref.atomic_numbers),
    ):
        np.testing.assert_allclose(getattr(cond, field), getattr(plain, field), rtol=0, atol=1e-6)
        assert _rel(getattr(cond, field), torch_out.numpy()) <= TOL, field


def test_contradicting_flags_are_errors_before_compute(converted, tmp_path, capsys):
    out_dir, _, records = converted
    base = ["--stage", "finetune", "--init", str(out_dir), "--workdir", str(tmp_path / "w")]
    for flag, value in (("--width", "64"), ("--blocks", "4"), ("--time-scale", "1000")):
        with pytest.raises(SystemExit):
            train_crystal.main([*base, flag, value])
        assert f"{flag}: {value}" in capsys.readouterr().err
    # A flag that agrees with the init is fine; --type-ce is a loss weight and may change.
    args = train_crystal.parse([*base, "--width", str(SMALL["emb_size_atom"]), "--type-ce", "0.1"])
    config = train_crystal.stage_config(args, "finetune", 2)
    assert config.model == CDOSGenModel.load(out_dir).gemnet
    assert config.diffusion.types.hybrid_coeff == 0.1
    with pytest.raises(SystemExit):
        train_crystal.main([*base[:3], str(records), *base[4:]])  # not a model folder
    assert "--init: " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_crystal.main([*base, "--records", str(tmp_path / "missing.npz")])
    assert "--records: " in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow  # ~3 min on 2 busy CPU cores: three GemNet compiles (train, validate, sample)
def test_finetune_adapters_only_then_generate_cifs(converted, tmp_path):
    from pymatgen.core import Structure

    from jaxdos.pipeline.crystals import generate_crystals
    from jaxdos.pipeline.writers import write_structure_files
    from jaxdos.structures import to_structures

    out_dir, _, records = converted
    argv = ["--stage", "finetune", "--init", str(out_dir), "--records", str(records),
            "--steps", "2", "--atoms", "40", "--graphs", "3", "--adapters-only",
            "--workdir", str(tmp_path / "ft")]  # fmt: skip
    model_dir = train_crystal.main(argv)
    tuned, base = CDOSGenModel.load(model_dir), CDOSGenModel.load(out_dir)
    assert tuned.gemnet.dos_dim == 256 and tuned.meta["init"] == str(out_dir.resolve())
    assert tuned.meta["data"]["sha256"] and tuned.meta["mode"] == "FinetuneAdapters"
    # Adapters-only: every base weight is the init's; the adapters moved.
    flat = dict(jax.tree_util.tree_leaves_with_path(tuned.params))
    for path, leaf in jax.tree_util.tree_leaves_with_path(base.params):
        np.testing.assert_array_equal(flat[path], leaf)
    labels = dict(jax.tree_util.tree_leaves_with_path(adapters_only_labels(tuned.params)))
    assert any(labels[p] == "train" for p in flat)
    # The mix-ins start at zero (eq. 4) and are the first adapter weights a gradient reaches.
    mixins = [v for p, v in flat.items() if "cond_mixin_layers" in jax.tree_util.keystr(p)]
    assert mixins and all(np.any(m != 0) for m in mixins)
    dos, _ = load_records(records, oracle_version=None)
    crystals, source = generate_crystals(
        dos.dos[:1], crystals_per_dos=2, steps=3, corrector_steps=0, batch_size=2, model=model_dir
    )
    assert list(source) == [0, 0]
    names = ["gen_0.cif", "gen_1.cif"]
    paths = write_structure_files(to_structures(crystals), tmp_path / "cif", names, "gen.extxyz")
    for path, n in zip(paths, crystals.num_atoms, strict=True):
        assert len(Structure.from_file(path)) == int(n)
