"""MP-style loader: files written with pymatgen (Dos, CompleteDos, paired structures, malformed)."""

import gzip
import json
import math

import numpy as np
import pytest
from monty.json import MontyEncoder
from pymatgen.core import Lattice, Structure
from pymatgen.electronic_structure.core import Orbital, Spin
from pymatgen.electronic_structure.dos import CompleteDos, Dos

from jaxdos.data.mp import SKIP_REASONS, load_mp_dir, parse_mp_file
from jaxdos.data.records import load_records, save_records
from jaxdos.kernels.grid import BIN_WIDTH, bin_centres, bin_edges

EF = 3.7  # absolute Fermi level, off-grid on purpose (MP energies are not E_F-centred)
ENERGIES = np.linspace(EF - 15.0, EF + 15.0, 3001)  # 0.01 eV raw spacing, wider than the window


def _nacl():
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _linear(a, b, energies=ENERGIES):
    return a + b * (energies - EF)


def _gauss(energies=ENERGIES, mu=EF - 1.3, sigma=0.25, weight=4.0):
    return weight * np.exp(-0.5 * ((energies - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def _complete(structure, densities, energies=ENERGIES, efermi=EF):
    tdos = Dos(efermi, energies, densities)
    pdos = {site: {Orbital.s: densities} for site in structure}
    return CompleteDos(structure, tdos, pdos)


def _dump(path, obj):
    text = json.dumps(obj, cls=MontyEncoder)
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


@pytest.fixture(scope="module")
def mp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    spin_pol = {Spin.up: _linear(2.0, 0.05), Spin.down: _linear(1.0, -0.02)}
    # Accepted: a spin-polarised CompleteDos, a plain Dos + structure JSON, a gzipped Dos + CIF.
    _dump(d / "mp-1.json", _complete(_nacl(), spin_pol))
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    _dump(d / "mp-2.json", Dos(EF, ENERGIES, {Spin.up: _gauss()}))
    _dump(d / "mp-2.structure.json", si.as_dict())
    _dump(d / "mp-3.json.gz", Dos(EF, ENERGIES, {Spin.up: _linear(0.5, 0.0)}))
    Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]).to(filename=str(d / "mp-3.cif"))
    # Malformed DOS (structure fine: they still count in the atom and element filters).
    bad = _complete(_nacl(), spin_pol).as_dict()
    del bad["efermi"]
    _dump(d / "bad-efermi.json", bad)
    bad = _complete(_nacl(), spin_pol).as_dict()
    bad["energies"] = bad["energies"][::-1]
    _dump(d / "bad-order.json", bad)
    bad = _complete(_nacl(), spin_pol).as_dict()
    bad["densities"] = {}
    _dump(d / "bad-empty.json", bad)
    far = ENERGIES + 25.0  # states only 10-40 eV above E_F: nothing in the window
    _dump(d / "bad-window.json", _complete(_nacl(), {Spin.up: _linear(1.0, 0.0)}, energies=far))
    (d / "bad-garbage.json").write_text('{"@class": "Dos", "efermi": 1.0, "energ')
    # Filtered out by Table 6.
    big = _nacl()
    big.make_supercell([3, 2, 2])  # 24 atoms > 20
    _dump(d / "big-24.json", _complete(big, {Spin.up: _linear(1.0, 0.0)}))
    tc = Structure(Lattice.cubic(2.7), ["Tc"], [[0, 0, 0]])
    _dump(d / "tc.json", _complete(tc, {Spin.up: _linear(1.0, 0.0)}))
    po = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    _dump(d / "po.json", _complete(po, {Spin.up: _linear(1.0, 0.0)}))
    # A plain Dos with no paired structure.
    _dump(d / "mp-404.json", Dos(EF, ENERGIES, {Spin.up: _linear(1.0, 0.0)}))
    return d


@pytest.fixture(scope="module")
def loaded(mp_dir):
    return load_mp_dir(mp_dir, progress=False)


def test_accepts_good_files_in_path_order(loaded):
    records, _ = loaded
    assert list(records.ids) == ["mp-1", "mp-2", "mp-3"]
    np.testing.assert_array_equal(records.num_atoms, [2, 2, 1])
    np.testing.assert_array_equal(records.atomic_numbers[0, :3], [11, 17, 0])
    np.testing.assert_array_equal(records.atomic_numbers[2, :2], [26, 0])
    np.testing.assert_allclose(records.efermi, EF, rtol=1e-6)
    assert np.all((records.frac_coords >= 0) & (records.frac_coords < 1))
    np.testing.assert_allclose(records.lattice[1], np.eye(3) * 5.43, rtol=1e-6)


def test_linear_dos_resampled_per_atom_with_spins_summed(loaded):
    # The bin mean of a linear density is its value at the bin centre (independent of resample_dos).
    records, _ = loaded
    expected = (
        _linear(2.0, 0.05, bin_centres() + EF) + _linear(1.0, -0.02, bin_centres() + EF)
    ) / 2
    np.testing.assert_allclose(records.dos[0], expected, rtol=1e-5)
    np.testing.assert_allclose(records.dos[2], 0.5, rtol=1e-5)


def test_gaussian_dos_matches_exact_bin_integrals(loaded):
    records, _ = loaded
    edges = bin_edges() + EF
    cdf = np.array([0.5 * (1 + math.erf((x - (EF - 1.3)) / (0.25 * math.sqrt(2)))) for x in edges])
    expected = 4.0 * np.diff(cdf) / BIN_WIDTH / 2  # 4 states per cell, 2 atoms
    np.testing.assert_allclose(records.dos[1], expected, atol=2e-4 * expected.max())
    assert abs(records.integrated_dos[1] - 2.0) < 1e-3  # all 4 states lie below E_F: 2 per atom


def test_scale_and_properties_consistent(loaded):
    records, _ = loaded
    np.testing.assert_allclose(records.scale, records.dos.max(-1), rtol=1e-6)
    np.testing.assert_allclose(
        records.integrated_dos, BIN_WIDTH * records.dos[:, :128].sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(records.dos_at_fermi, records.dos[:, 127:129].mean(-1), rtol=1e-5)
    assert records.band_gap[0] < 0.1  # metallic linear DOS
    assert records.band_gap[1] > 1.0  # Gaussian band entirely 1.3 eV below E_F: gapped


def test_skip_reasons_and_filter_table(loaded):
    _, report = loaded
    assert report.total == 12
    expected = {r: 0 for r in SKIP_REASONS}
    expected.update(
        unreadable_json=1,
        missing_efermi=1,
        bad_energies=1,
        empty_densities=1,
        zero_dos_in_window=1,
        missing_structure=1,
        too_many_atoms=1,
        excluded_element=2,
    )
    assert report.skipped == expected
    # Independent per-filter pass counts, as in Table 6: 7 usable DOS; of the 10 readable
    # structures 9 have <= 20 atoms and 8 have allowed elements; 3 pass everything.
    assert report.stages == {"dos_efermi": 7, "max_atoms": 9, "elements": 8, "all": 3}
    assert sum(report.skipped.values()) + report.stages["all"] == report.total
    table = report.table()
    assert "All filters combined" in table and "missing_efermi" in table
    reasons = {r for _, r, _ in report.examples}
    assert "excluded_element" in reasons and len(report.examples) == 9


def test_parse_single_file_reason_messages(mp_dir):
    entry, info = parse_mp_file(mp_dir / "bad-order.json")
    assert entry is None and info["reason"] == "bad_energies" and "increasing" in info["message"]
    entry, info = parse_mp_file(mp_dir / "mp-2.json", structure_dir=mp_dir / "nowhere")
    assert entry is None and info["reason"] == "missing_structure"


def test_records_save_with_mp_version(tmp_path, loaded):
    records, _ = loaded
    save_records(tmp_path / "mp.npz", records, oracle_version="mp")
    back, _ = load_records(tmp_path / "mp.npz", oracle_version="mp")
    np.testing.assert_array_equal(back.dos, records.dos)
    with pytest.raises(ValueError, match="oracle_version"):
        load_records(tmp_path / "mp.npz", oracle_version="tb-v1")


@pytest.mark.slow  # spawned workers each import JAX and pymatgen (~20 s on 2 cores)
def test_worker_processes_give_identical_output(mp_dir, loaded):
    records, report = loaded
    par_records, par_report = load_mp_dir(mp_dir, progress=False, workers=2)
    for a, b in zip(records, par_records, strict=True):
        np.testing.assert_array_equal(a, b)
    assert par_report == report


def test_edge_cases_dummy_species_and_float32_wrap(tmp_path):
    lin = {Spin.up: _linear(1.0, 0.0)}
    dummy = Structure(Lattice.cubic(3.0), ["Cu", "X0+"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    _dump(tmp_path / "dummy.json", _complete(dummy, lin))
    entry, info = parse_mp_file(tmp_path / "dummy.json")
    assert entry is None and info["reason"] == "excluded_element"
    near_one = Structure(Lattice.cubic(3.0), ["Cu"], [[1 - 1e-10, 0.25, 0.5]])
    _dump(tmp_path / "edge.json", _complete(near_one, lin))
    records, _ = load_mp_dir(tmp_path, progress=False)
    assert list(records.ids) == ["edge"]
    assert np.all(records.frac_coords < 1.0) and records.frac_coords[0, 0, 0] == 0.0


def test_src_must_be_a_directory(tmp_path):
    with pytest.raises(ValueError, match="src"):
        load_mp_dir(tmp_path / "missing", progress=False)


def test_empty_directory_gives_empty_records(tmp_path):
    records, report = load_mp_dir(tmp_path, progress=False)
    assert len(records) == 0 and records.dos.shape == (0, 256) and report.total == 0
