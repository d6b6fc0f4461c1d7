"""Target specifications: tolerances, validation before compute, prior placement, acceptance."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdos.kernels.filters import screen_tcm
from jaxdos.kernels.grid import BIN_WIDTH, FERMI_INDEX, N_BINS
from jaxdos.kernels.properties import band_gap
from jaxdos.sampler.guidance import ClassifierGuidance, NoGuidance
from jaxdos.sampler.targets import (
    PropertyTarget,
    Targets,
    TCMType1,
    TCMType2,
    Thermoelectric,
    acceptance,
    guidance_for,
    prior_mask,
)


def test_tolerances():
    assert PropertyTarget(name="band_gap", value=2.0).interval == pytest.approx((1.8, 2.2))
    assert PropertyTarget(name="dos_at_fermi", value=0.0).interval == (0.0, 0.1)
    t = PropertyTarget(name="integrated_dos", value=4.0, rel_tol=0.25)
    assert t.interval == pytest.approx((3.0, 5.0))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="band_gap", value=-1.0), "band_gap"),
        (dict(name="band_gap", value=math.nan), "band_gap"),
        (dict(name="band_gap", value=25.0), r"\[0, 20"),
        (dict(name="bandgap", value=1.0), "name"),
        (dict(name="band_gap", value=1.0, rel_tol=0.0), "rel_tol"),
        (dict(name="band_gap", value=1.0, rel_tol=-0.1), "rel_tol"),
        (dict(name="band_gap", value=0.0, abs_tol=0.0), "abs_tol"),
    ],
)
def test_bad_property_targets(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PropertyTarget(**kwargs)


def test_contradictory_combinations():
    with pytest.raises(ValueError, match="TCM type"):
        Targets(filters=(TCMType1(), TCMType2()))
    with pytest.raises(ValueError, match="band_gap"):
        Targets.of(band_gap=3.5, filters=(TCMType1(),))
    with pytest.raises(ValueError, match="band_gap, dos_at_fermi"):
        Targets.of(band_gap=2.0, dos_at_fermi=1.0)
    with pytest.raises(ValueError, match="each property"):
        Targets(properties=(PropertyTarget(name="band_gap", value=1.0),) * 2)
    ref = np.ones(N_BINS)
    with pytest.raises(ValueError, match="Thermoelectric"):
        Targets.of(band_gap=3.0, filters=(Thermoelectric(reference=ref),))
    with pytest.raises(ValueError, match="TCM needs"):
        Targets(filters=(TCMType1(), Thermoelectric(reference=ref)))
    with pytest.raises(ValueError, match="gap_offset"):
        TCMType1(gap_offset=-1.0)
    # Allowed: a metal with a TCM filter, two compatible numeric targets.
    Targets.of(band_gap=0.0, filters=(TCMType1(),))
    Targets.of(band_gap=2.0, integrated_dos=2.0)


def _spectrum_with_prior(mask):
    dos = np.where(mask, 0.0, 1.0)  # [BG] bins decode to 0, occupied elsewhere
    return dos[None].astype(np.float32)


@pytest.mark.parametrize("gap", [0.5, 2.0, 3.5])
def test_band_gap_prior_centred_and_measured(gap):
    t = Targets.of(band_gap=gap)
    mask = prior_mask(t)
    n = int(math.floor(0.9 * gap / BIN_WIDTH + 1e-9))
    assert mask.sum() == n
    idx = np.flatnonzero(mask)
    assert idx[0] == FERMI_INDEX - (n + 1) // 2 and np.all(np.diff(idx) == 1)
    # Algorithm 1 on the prior alone measures exactly n bins: the lower end of the interval.
    measured = float(band_gap(jnp.asarray(_spectrum_with_prior(mask)))[0])
    assert measured == pytest.approx(n * BIN_WIDTH, abs=1e-5)
    assert 0.9 * gap - BIN_WIDTH < measured <= 0.9 * gap + 1e-6


@pytest.mark.parametrize("kind", [TCMType1(), TCMType2()])
def test_tcm_prior_below_fermi_meets_gap(kind):
    mask = prior_mask(Targets(filters=(kind,)))
    idx = np.flatnonzero(mask)
    assert idx[-1] < FERMI_INDEX and mask.sum() * BIN_WIDTH >= 3.1
    assert (FERMI_INDEX - 1 - idx[-1]) * BIN_WIDTH == pytest.approx(kind.gap_offset, abs=BIN_WIDTH)
    res = screen_tcm(_spectrum_with_prior(mask))
    assert bool(res.gap_ok[0]) and bool(res.metallic[0])


def test_no_prior_without_gap_targets():
    assert not prior_mask(Targets()).any()
    assert not prior_mask(Targets.of(band_gap=0.0, integrated_dos=2.0)).any()


def test_acceptance_matches_numpy(rng):
    dos = rng.gamma(1.0, 1.0, size=(64, N_BINS)).astype(np.float32)
    dos[:, 100:150] *= rng.uniform(0, 1, size=(64, 1)) < 0.5  # some gapped rows
    t = Targets.of(
        integrated_dos=float(np.median(dos[:, :FERMI_INDEX].sum(1) * BIN_WIDTH)), tol=0.2
    )
    ok, props = jax.jit(lambda d: acceptance(t, d))(jnp.asarray(dos))
    n = dos[:, :FERMI_INDEX].sum(1) * BIN_WIDTH
    lo, hi = t.properties[0].interval
    expect = (n >= lo) & (n <= hi)
    np.testing.assert_array_equal(np.asarray(ok), expect)
    assert 0 < expect.sum() < 64
    np.testing.assert_allclose(np.asarray(props["integrated_dos"]), n, rtol=1e-5)
    # TCM acceptance is the filter's verdict of the chosen type.
    ok1, _ = acceptance(Targets(filters=(TCMType1(),)), jnp.asarray(dos))
    np.testing.assert_array_equal(np.asarray(ok1), screen_tcm(dos).type1)


def test_guidance_from_targets():
    assert isinstance(guidance_for(Targets()), NoGuidance)
    assert isinstance(guidance_for(Targets.of(band_gap=2.0)), NoGuidance)  # the prior sets it
    g = guidance_for(Targets.of(band_gap=2.0, integrated_dos=2.0), gamma=0.5)
    assert isinstance(g, ClassifierGuidance)
    assert g.targets == ((2, 2.0),) and g.gammas == (0.5,)
    assert isinstance(guidance_for(Targets.of(integrated_dos=2.0), gamma=0.0), NoGuidance)
    with pytest.raises(ValueError, match="gamma"):
        guidance_for(Targets(), gamma=-1.0)
