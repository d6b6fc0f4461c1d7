"""`jaxdos.pipeline.generate_crystals`: argument checks, batching, seeds, source index."""

import numpy as np
import pytest
from untrained import untrained_model

from jaxdos import modeldir
from jaxdos.crystal.diffusion.sampler import SELECTED_ATOMIC_NUMBERS
from jaxdos.pipeline.crystals import generate_crystals

DOS = np.abs(np.random.default_rng(0).normal(size=(2, 256))).astype(np.float32)


@pytest.fixture(scope="module")
def model():
    return untrained_model(32, [2, 3, 3])


def _gen(model, **kw):
    args = dict(crystals_per_dos=2, steps=2, corrector_steps=0, seed=3, batch_size=3, model=model)
    return generate_crystals(DOS, **{**args, **kw})


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(crystals_per_dos=0), "crystals_per_dos"),
        (dict(steps=1), "steps"),
        (dict(batch_size=0), "batch_size"),
        (dict(corrector_steps=11), "corrector_steps"),
        (dict(cfg_scale=float("nan")), "cfg_scale"),
        (dict(cfg_scale=-1.0), "cfg_scale"),
    ],
)
def test_bad_arguments_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        generate_crystals(DOS, **kw)


def test_unconditional_needs_num_samples():
    with pytest.raises(ValueError, match="num_samples"):
        generate_crystals(None)


def test_batches_seeds_and_source(model):
    crystals, source = _gen(model)  # 4 crystals in batches of 3: the last batch is padded
    np.testing.assert_array_equal(source, [0, 0, 1, 1])
    assert set(crystals.num_atoms.tolist()) <= {2, 3}
    allowed = set(SELECTED_ATOMIC_NUMBERS)  # MatterGen's whitelist, inside ALLOWED_Z
    for z, n in zip(crystals.atomic_numbers, crystals.num_atoms, strict=True):
        assert set(z[:n].tolist()) <= allowed and not z[n:].any()
    assert np.all((crystals.frac_coords >= 0) & (crystals.frac_coords < 1))
    again, _ = _gen(model)
    for a, b in zip(crystals, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other, _ = _gen(model, seed=4)
    assert not np.array_equal(other.lattice, crystals.lattice)


def test_a_model_directory_generates_what_its_object_does(model, tmp_path):
    # `model=` takes the saved directory too; loading it gives the same crystals.
    crystals, _ = _gen(model)
    from_dir, _ = _gen(str(model.save(tmp_path / "m")))
    for a, b in zip(crystals, from_dir, strict=True):
        np.testing.assert_array_equal(a, b)
    modeldir.save(tmp_path / "s", "dossampler", {}, {"w": np.zeros(1)})
    with pytest.raises(ValueError, match="a 'dossampler' model, expected a 'cdosgen' model"):
        generate_crystals(DOS, model=tmp_path / "s", steps=2)
