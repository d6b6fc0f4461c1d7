"""`jaxdos.pipeline.models`: load by kind, the embedded defaults, and migration of old folders."""

import hashlib
import json

import flax.serialization
import jax
import numpy as np
import pytest

from jaxdos import modeldir
from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.diffusion import D3PMConfig, DiffusionConfig, WrappedNormalConfig
from jaxdos.crystal.diffusion.num_atoms import ALEX_MP_20, NumAtomsDistribution
from jaxdos.crystal.gemnet.config import GemNetConfig
from jaxdos.pipeline import migrate as migrate_cli
from jaxdos.pipeline import models
from jaxdos.sampler.checkpoint import DOSSamplerModel
from jaxdos.sampler.config import ModelConfig
from jaxdos.sampler.sampling import SamplerParams
from jaxdos.sampler.scale import ScaleDistribution

# sha256 over (path, dtype, shape, bytes) of every array that the loaders before issue 13 gave for
# the embedded models (orbax for the sampler, msgpack for CDOSGen), computed before their files
# were rewritten in the one format: the new files must give exactly these arrays.
# The sampler's digest is that of its 2026-12-03 continued training (8 400 steps; a new model on
# purpose).
SAMPLER_PARAMS_SHA = "e06f1554448c75c831ec76aee0ea6f074c66c687b15b082a9115ec2e0a155a48"
SAMPLER_SCALE_SHA = "d74782915254090dad01d3332102518127af11ba147e8b0bb538d9ec1860ddf6"
CDOSGEN_PARAMS_SHA = "e1e813a04b965fdbbc2293e744003a9394a2a6dbb3b882e869c216c5e79c7843"


def _digest(tree) -> str:
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    for path, leaf in sorted(leaves, key=lambda x: jax.tree_util.keystr(x[0])):
        a = np.asarray(leaf)
        for part in (jax.tree_util.keystr(path), str(a.dtype), str(a.shape)):
            h.update(part.encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(x, y)
        for x, y in zip(la, lb, strict=True)
    )


def _sampler_params() -> SamplerParams:
    return SamplerParams(
        diffusion={"dense": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}},
        regressor={"head": {"bias": np.ones(3, np.float32)}},
        prop_mean=np.zeros(3, np.float32),
        prop_std=np.ones(3, np.float32),
    )


def _sampler() -> DOSSamplerModel:
    dist = ScaleDistribution.from_arrays([0.5, 1.0, 2.0], [0.0, 1.0, 2.0])
    return DOSSamplerModel(
        params=_sampler_params(), config=ModelConfig.tiny(width=64), scale_distribution=dist
    )


def _cdosgen() -> CDOSGenModel:
    params = {"params": {"fc_atom": {"kernel": np.arange(6.0, dtype=np.float32).reshape(2, 3)}}}
    return CDOSGenModel(
        params=params,
        gemnet=GemNetConfig.tiny().conditional(),
        num_atoms=NumAtomsDistribution(probs=(0.5, 0.5)),
        meta={"steps": 3},
    )


def test_load_dispatches_on_kind(tmp_path):
    s = models.load(_sampler().save(tmp_path / "s"))
    c = models.load(_cdosgen().save(tmp_path / "c"))
    assert isinstance(s, DOSSamplerModel) and s.config == ModelConfig.tiny(width=64)
    assert isinstance(c, CDOSGenModel) and c.meta == {"steps": 3}
    modeldir.save(tmp_path / "x", "predictor", {}, {"w": np.zeros(1)})
    with pytest.raises(ValueError, match=r"model\.json: unknown model kind 'predictor'"):
        models.load(tmp_path / "x")


def test_as_model(tmp_path):
    c = _cdosgen()
    assert models.as_model(c, "cdosgen") is c
    assert isinstance(models.as_model(str(c.save(tmp_path / "c")), "cdosgen"), CDOSGenModel)
    with pytest.raises(ValueError, match="model: expected a DOSSamplerModel"):
        models.as_model(c, "dossampler")
    with pytest.raises(ValueError, match=r"a 'cdosgen' model, expected a 'dossampler' model"):
        models.as_model(tmp_path / "c", "dossampler")
    with pytest.raises(ValueError, match="kind"):
        models.as_model(None, "sampler")


def test_embedded_defaults_are_the_arrays_of_the_old_files():
    s = models.load_default("dossampler")
    c = models.load_default("cdosgen")
    assert isinstance(s, DOSSamplerModel) and isinstance(c, CDOSGenModel)
    assert models.load_default("cdosgen") is c  # cached: loaded once per process
    assert _digest(s.params._asdict()) == SAMPLER_PARAMS_SHA
    assert _digest(s.scale_distribution._asdict()) == SAMPLER_SCALE_SHA
    assert _digest(c.params) == CDOSGEN_PARAMS_SHA
    assert s.config == ModelConfig.tiny()
    assert c.gemnet.dos_dim == 256 and c.meta["stage"] == "finetune"


# --- migration: folders written the way the code before issue 13 wrote them ---------------------


def _old_sampler(path, model: DOSSamplerModel):
    import orbax.checkpoint as ocp

    path.mkdir(parents=True)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save((path / "params").resolve(), model.params._asdict(), force=True)
    ckpt.wait_until_finished()
    np.savez(path / "scale_distribution.npz", **model.scale_distribution._asdict())
    header = {
        "format": "jaxdos-sampler-v1",
        "model_config": model.config.to_dict(),
        "meta": {"source": "toy"},
    }
    (path / "sampler.json").write_text(json.dumps(header))


def _old_crystal(path, model: CDOSGenModel, type_ce: float):
    import dataclasses

    path.mkdir(parents=True)
    blob = flax.serialization.msgpack_serialize(model.params)
    (path / "params.msgpack").write_bytes(blob)
    doc = {
        "format": "jaxdos-crystal-v1",
        "gemnet_config": dataclasses.asdict(model.gemnet),
        "num_atoms_probs": list(model.num_atoms.probs),
        "cpu_sampling_steps": 100,
        "loss": {"type_ce": type_ce},
    }
    (path / "config.json").write_text(json.dumps(doc))


def _old_converted(path, model: CDOSGenModel):
    import dataclasses

    import orbax.checkpoint as ocp

    path.mkdir(parents=True)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save((path / "params").resolve(), model.params, force=True)
    ckpt.wait_until_finished()
    doc = {
        "format": "jaxdos-mattergen-v1",
        "gemnet": dataclasses.asdict(model.gemnet),
        "diffusion": dataclasses.asdict(model.diffusion),
    }
    (path / "config.json").write_text(json.dumps(doc))
    (path / "conversion.json").write_text(json.dumps({"num_tensors": 1}))


def test_migrate_old_sampler(tmp_path):
    want = _sampler()
    _old_sampler(tmp_path / "old", want)
    with pytest.raises(FileNotFoundError, match="pipeline.migrate"):
        models.load(tmp_path / "old")
    got = models.migrate(tmp_path / "old", tmp_path / "new")
    assert isinstance(got, DOSSamplerModel) and got.config == want.config
    assert got.meta == {"source": "toy"}
    assert _leaves_equal(got.params, want.params)
    assert _leaves_equal(got.scale_distribution, want.scale_distribution)
    with pytest.raises(ValueError, match="exists"):
        models.migrate(tmp_path / "old", tmp_path / "new")


def test_migrate_old_crystal_and_converted(tmp_path):
    want = _cdosgen()
    _old_crystal(tmp_path / "old", want, type_ce=0.25)
    got = models.migrate(tmp_path / "old", tmp_path / "old")  # in place, beside the old files
    assert isinstance(models.load(tmp_path / "old"), CDOSGenModel)
    assert got.gemnet == want.gemnet and got.num_atoms == want.num_atoms
    assert got.diffusion == DiffusionConfig(types=D3PMConfig(hybrid_coeff=0.25))
    assert got.meta == {"cpu_sampling_steps": 100, "loss": {"type_ce": 0.25}}
    assert _leaves_equal(got.params, want.params)

    conv = CDOSGenModel(
        params=want.params,
        gemnet=want.gemnet,
        diffusion=DiffusionConfig(pos=WrappedNormalConfig(sigma_max=4.0)),
        num_atoms=ALEX_MP_20,
    )
    _old_converted(tmp_path / "conv", conv)
    got = models.migrate(tmp_path / "conv", tmp_path / "conv_new")
    assert got.diffusion == conv.diffusion and got.num_atoms == ALEX_MP_20
    assert got.meta == {"source": "mattergen", "conversion": {"num_tensors": 1}}
    assert _leaves_equal(got.params, want.params)


def test_migrate_cli(tmp_path, capsys):
    _old_crystal(tmp_path / "old", _cdosgen(), type_ce=0.01)
    assert migrate_cli.main([str(tmp_path / "old"), str(tmp_path / "new")]) == 0
    assert "CDOSGenModel" in capsys.readouterr().out
    assert migrate_cli.main([str(tmp_path / "new"), str(tmp_path / "again")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an old-format jaxdos model" in err
