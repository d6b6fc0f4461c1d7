import numpy as np

from jaxdos.data.families import generate_crystal, to_crystals
from jaxdos.kernels.oracle import oracle_dos
from jaxdos.pipeline.score import score
from jaxdos.structures import Crystals, from_structures, to_structures


def _crystals(n):
    return to_crystals([generate_crystal(0, i) for i in range(n)])


def test_score_matches_oracle_and_flags_degenerate_crystals():
    good = _crystals(3)
    bad = Crystals(*(np.array(x) for x in good))
    bad.frac_coords[1, 1] = bad.frac_coords[1, 0]  # two atoms on top of each other
    s = score(bad)
    assert s.valid.tolist() == score(to_structures(bad)).valid.tolist()  # Structures are scored too
    assert s.valid.tolist() == [True, False, True]
    assert "crystal" not in s.reason[1] and s.reason[1]  # the oracle's reason, re-indexed
    ref_dos, ref_ef = oracle_dos(*(np.asarray(x)[[0, 2]] for x in good))
    np.testing.assert_allclose(s.dos[[0, 2]], ref_dos, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.efermi[[0, 2]], ref_ef, rtol=1e-5, atol=1e-5)
    assert np.all(s.dos[1] == 0) and not s.tcm.is_tcm[1]
    assert np.isnan(s.properties["band_gap"][1]) and np.isfinite(s.properties["band_gap"][0])


def test_structure_round_trip():
    c = _crystals(2)
    back = from_structures(to_structures(c))
    np.testing.assert_array_equal(back.atomic_numbers, c.atomic_numbers)
    np.testing.assert_allclose(back.frac_coords, c.frac_coords, atol=1e-6)
    np.testing.assert_allclose(back.lattice, c.lattice, atol=1e-5)
