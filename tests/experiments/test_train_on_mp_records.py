"""train-sampler / train-crystal on what load-mp writes (issue 14 item 6): MP-style files written
here with pymatgen -> records -> a few training steps each -> the exported model loads and its
meta names the records file it was trained on (path, oracle version "mp", count, sha256)."""

import hashlib

import pytest
from mp_files import write_mp_dir

from experiments.main import main as jaxdos
from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.data.records import load_records
from jaxdos.pipeline.models import load
from jaxdos.sampler.checkpoint import DOSSamplerModel


@pytest.fixture(scope="module")
def mp_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("mp")
    write_mp_dir(root / "mp_dos", 12, seed=1)
    jaxdos(["load-mp", str(root / "mp_dos"), str(root / "mp.npz"), "--no-progress"])
    return root / "mp.npz"


def _check_data(meta, path, num_records):
    data = meta["data"]
    assert data["records"] == str(path.resolve()) and data["oracle_version"] == "mp"
    assert data["num_records"] == num_records
    assert data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_mp_keeps_every_file(mp_records):
    records, header = load_records(mp_records, oracle_version="mp")
    assert len(records) == 12 and header["meta"]["stages"]["all"] == 12


@pytest.mark.slow  # ~70 s on 2 busy CPU cores (diffusion, regressor and eval compiles)
def test_train_sampler_on_mp_records(mp_records, tmp_path):
    argv = ["train-sampler", "--records", str(mp_records), "--steps", "2",
            "--regressor-steps", "2", "--batch-size", "4", "--warmup", "1", "--eval-every", "100",
            "--ckpt-every", "100", "--workdir", str(tmp_path / "s")]  # fmt: skip
    jaxdos(argv)
    sampler = load(tmp_path / "s" / "sampler")
    assert isinstance(sampler, DOSSamplerModel)
    _check_data(sampler.meta, mp_records, 12)
    assert sampler.meta["train_records"] == 11  # 10 % (one record) held out


@pytest.mark.slow  # ~2 min on 2 busy CPU cores: GemNet train and validation compiles
def test_train_crystal_on_mp_records(mp_records, tmp_path):
    argv = ["train-crystal", "--records", str(mp_records), "--steps", "2", "--width", "16",
            "--blocks", "1", "--atoms", "40", "--graphs", "3",
            "--workdir", str(tmp_path / "c")]  # fmt: skip
    jaxdos(argv)
    model = load(tmp_path / "c" / "model")
    assert isinstance(model, CDOSGenModel) and model.gemnet.emb_size_atom == 16
    _check_data(model.meta, mp_records, 12)
    assert model.meta["steps"] == 2 and model.meta["train_records"] == 11
