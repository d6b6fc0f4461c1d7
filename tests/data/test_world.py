"""The offline world: prototype generation, the committed subset and its realism statistics."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxdos.data.families import FAMILY_WEIGHTS, generate_crystal, to_crystals
from jaxdos.data.prototypes import TEMPLATES, build, template
from jaxdos.data.records import save_records
from jaxdos.data.world import (
    SUBSET_FILE,
    load_world,
    load_world_file,
    realism_stats,
    split_of,
    train_val_records,
)
from jaxdos.kernels.oracle import ORACLE_VERSION

SUBSET = Path(__file__).resolve().parents[2] / "jaxdos" / "assets" / SUBSET_FILE
needs_subset = pytest.mark.skipif(not SUBSET.exists(), reason="world subset not committed yet")
EXCLUDED = {43, 61, 2, 10, 18, 36, 54}  # Tc, Pm (paper's filter) and noble gases


def test_generation_is_deterministic_and_chunk_independent():
    a = [generate_crystal(3, i) for i in range(40)]
    b = [generate_crystal(3, i) for i in reversed(range(40))][::-1]
    for x, y in zip(a, b, strict=True):
        assert x.symbols == y.symbols and x.family == y.family
        np.testing.assert_array_equal(x.lattice, y.lattice)
        np.testing.assert_array_equal(x.frac, y.frac)
    assert [c.symbols for c in a] != [
        c.symbols for c in (generate_crystal(4, i) for i in range(40))
    ]


def test_generated_crystals_obey_filters_and_are_diverse():
    crystals = [generate_crystal(0, i) for i in range(300)]
    z, frac, lat, n = to_crystals(crystals)
    assert n.min() >= 1 and n.max() <= 20
    zs = set(z[z > 0].tolist())
    assert max(zs) <= 83 and not zs & EXCLUDED
    assert len(zs) >= 45  # many elements
    families = {c.family.split("+")[0] for c in crystals}
    assert len(families) >= 14 and families <= set(FAMILY_WEIGHTS)
    for c in crystals:  # no overlapping atoms; positive volume
        cart = c.frac @ c.lattice
        d = np.linalg.norm(cart[:, None] - cart[None], axis=-1) + 9 * np.eye(len(cart))
        assert d.min() > 0.9 and abs(np.linalg.det(c.lattice)) > 1.0


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_scale_to_the_requested_bond(name):
    from jaxdos.data.prototypes import min_pair_distance

    tpl = template(name)
    roles = sorted(set(tpl.roles))
    species = {r: "Na" for r in roles}
    lat, frac, symbols = build(tpl, species, (roles[0], roles[-1], 2.5))
    roles_arr = np.array(tpl.roles)
    d = min_pair_distance(lat, frac, roles_arr == roles[0], roles_arr == roles[-1])
    assert d == pytest.approx(2.5, rel=1e-9) and len(symbols) == len(tpl.roles) <= 20


def test_split_fractions():
    letters = [split_of(0, i) for i in range(4000)]
    frac = {s: letters.count(s) / len(letters) for s in "tvs"}
    assert frac["t"] == pytest.approx(0.90, abs=0.02)
    assert frac["v"] == pytest.approx(0.05, abs=0.015) and frac["s"] == pytest.approx(
        0.05, abs=0.015
    )


@needs_subset
def test_subset_loads_with_splits_and_versions(tmp_path):
    full = load_world("all")
    parts = [load_world(s) for s in ("train", "val", "test")]
    assert 1500 <= len(full) <= 5000 and sum(len(p) for p in parts) == len(full)
    assert len(parts[0]) > 10 * len(parts[1])
    assert len(set(full.ids.tolist())) == len(full)
    records, meta = load_world_file(SUBSET)
    bad = tmp_path / "other.npz"
    save_records(bad, records, oracle_version="tb-v0", meta=meta)
    with pytest.raises(ValueError, match="oracle_version"):
        load_world(path=bad)
    with pytest.raises(ValueError, match="split"):
        load_world("training")
    assert ORACLE_VERSION == "tb-v1"


def test_train_val_records_from_world_or_a_file(tmp_path):
    train, val = train_val_records()
    assert (len(train), len(val)) == (len(load_world("train")), len(load_world("val")))
    records = load_world("test")
    path = tmp_path / "user.npz"
    save_records(path, records, oracle_version=ORACLE_VERSION)
    train, val = train_val_records(path, seed=3)
    assert len(val) == max(1, len(records) // 10) and len(train) + len(val) == len(records)
    assert not set(train.ids.tolist()) & set(val.ids.tolist())
    again, _ = train_val_records(path, seed=3)
    np.testing.assert_array_equal(again.ids, train.ids)


@needs_subset
def test_subset_realism_statistics():
    stats = realism_stats(load_world("all"))
    assert 0.22 <= stats["metal_fraction"] <= 0.36  # metals : gapped ~ 1:2 .. 1:3
    assert 0.75 <= stats["gap_fraction_0_6_eV"]  # gaps spread over 0-6 eV
    q10, q50, q90 = stats["gap_quantiles_eV"]
    assert q10 < 1.5 and 2.0 < q50 < 4.5 and q90 > 4.5
    assert 1.0 <= stats["dos_max_quantiles"][1] <= 6.0  # typical K of order a few states/eV/atom
    assert 0 < stats["tcm_like_fraction"] < 0.03  # TCM-like spectra exist but are rare
    assert stats["n_elements"] >= 60


@needs_subset
def test_subset_records_are_consistent():
    from jaxdos.kernels.properties import all_properties

    w = load_world("val")
    assert np.all(np.isfinite(w.dos)) and np.all(w.dos >= 0)
    np.testing.assert_allclose(w.scale, w.dos.max(1), rtol=1e-6)
    props = all_properties(w.dos)
    np.testing.assert_allclose(w.band_gap, np.asarray(props["band_gap"]), atol=1e-4)
    np.testing.assert_allclose(w.integrated_dos, np.asarray(props["integrated_dos"]), atol=1e-4)
    assert np.all(w.atomic_numbers[np.arange(20)[None] >= w.num_atoms[:, None]] == 0)


@needs_subset
def test_subset_card_committed():
    card = Path(__file__).resolve().parents[2] / "docs" / "world"
    assert (card / "card.md").exists()
    stats = json.loads((card / "stats.json").read_text())
    assert stats["n"] == len(load_world("all"))
