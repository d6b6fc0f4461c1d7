"""Design targets: the three spellings, their intervals, and every bad input named by its flag
before a folder is made or a model is read."""

import numpy as np
import pytest

from experiments import design as design_cli
from experiments import generate as generate_cli
from jaxdos.kernels.properties import within_tolerance
from jaxdos.pipeline.jobs.design import DesignConfig
from jaxdos.sampler.targets import acceptance, parse_target


@pytest.mark.parametrize(
    "text, lo, hi",
    [
        ("2", 1.8, 2.2),  # the paper's +-10 %
        ("0", 0.0, 0.1),  # absolute 0.1 for a zero target
        ("2+-0.5", 1.5, 2.5),
        ("0+-0.3", 0.0, 0.3),
        ("0.2+-0.5", 0.0, 0.7),  # clipped at 0: the properties are >= 0
        ("1.5:2.5", 1.5, 2.5),
        ("0:1", 0.0, 1.0),
    ],
)
def test_parse_target_intervals(text, lo, hi):
    t = parse_target("band_gap", text)
    assert t.interval == pytest.approx((lo, hi), abs=1e-12)


def test_plain_value_is_the_paper_tolerance():
    t = parse_target("integrated_dos", "2")
    x = np.linspace(1.5, 2.5, 101)
    inside = (x >= t.interval[0] - 1e-9) & (x <= t.interval[1] + 1e-9)
    np.testing.assert_array_equal(
        inside, within_tolerance(x, 2.0) | np.isclose(x, 1.8) | np.isclose(x, 2.2)
    )


def test_range_target_accepts_exactly_its_interval():
    """The range is the acceptance rule of stage 1: a flat DOS of height h has N(E_F) = 10 h."""
    t = parse_target("integrated_dos", "1.5:2.5")
    from jaxdos.sampler.targets import Targets

    heights = np.array([0.14, 0.16, 0.2, 0.24, 0.26], np.float32)
    dos = np.repeat(heights[:, None], 256, axis=1)
    ok, props = acceptance(Targets(properties=(t,)), dos)
    n_ef = np.asarray(props["integrated_dos"])
    np.testing.assert_array_equal(np.asarray(ok), (n_ef >= 1.5) & (n_ef <= 2.5))
    assert np.asarray(ok).tolist() == [False, True, True, True, False]


@pytest.mark.parametrize(
    "text, match",
    [
        ("abc", "VALUE, VALUE\\+-TOL or LO:HI"),
        ("3:1", "LO < HI"),
        ("1:1", "LO < HI"),
        ("-1", r"\[0, 20"),
        ("1:25", r"\[0, 20"),
        ("nan", "band_gap"),
        ("2+-0", "tolerance > 0"),
        ("2+-x", "VALUE"),
    ],
)
def test_parse_target_errors(text, match):
    with pytest.raises(ValueError, match=match) as err:
        parse_target("band_gap", text)
    assert str(err.value).startswith("band_gap:")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "at least one target"),
        (dict(band_gap="3:1"), "^band_gap: expected LO < HI"),
        (dict(dos_ef="-2"), "^dos_ef:"),
        (dict(n_ef="1:2000"), "^n_ef:"),
        (dict(band_gap="3", filter="tcm1"), "^band_gap:"),
        (dict(band_gap="2", dos_ef="1.5"), "^band_gap, dos_ef:"),
        (dict(filter="te"), "^te_reference:"),
        (dict(filter="te", te_reference="x.cif", dos_ef="1"), "^dos_ef:"),
        (dict(band_gap="2", crystals=0), "^crystals:"),
        (dict(band_gap="2", crystals=8, crystals_per_dos=2, proposals=3), "^proposals:"),
    ],
)
def test_design_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DesignConfig(**kwargs)


def test_accept_is_enough_dos_for_the_crystals():
    assert DesignConfig(band_gap="2", crystals=9, crystals_per_dos=4).accept == 3
    assert DesignConfig(band_gap="2", crystals=8, crystals_per_dos=4).accept == 2


def _fails(main, argv, capsys, match, out):
    with pytest.raises(SystemExit) as err:
        main([*argv, "--out", str(out)])
    assert err.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error: " in line and match in line, line
    return line


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--band-gap", "3:1"], "--band-gap: expected LO < HI"),
        (["--band-gap", "2", "--dos-ef", "1.5"], "--band-gap, --dos-ef:"),
        (["--n-ef", "-1"], "--n-ef:"),
        (["--filter", "tcm2", "--band-gap", "2"], "--band-gap:"),
        (["--filter", "te"], "--te-reference:"),
        (["--band-gap", "2", "--steps", "1"], "--steps:"),
        (["--band-gap", "2", "--guidance", "-1"], "--guidance:"),
        (["--band-gap", "2", "--crystal-model", "nowhere"], "--crystal-model:"),
    ],
)
def test_design_cli_errors_before_any_folder(argv, match, capsys, tmp_path):
    _fails(design_cli.main, argv, capsys, match, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_model_of_the_wrong_kind_is_named_by_its_flag(capsys, tmp_path):
    from jaxdos.sampler.checkpoint import DEFAULT_DIR as SAMPLER_DIR

    line = _fails(
        design_cli.main,
        ["--band-gap", "2", "--crystal-model", str(SAMPLER_DIR)],
        capsys,
        "--crystal-model:",
        tmp_path / "run",
    )
    assert "'dossampler' model, expected a 'cdosgen'" in line
    assert not (tmp_path / "run").exists()


def test_corrupt_model_file_is_named_by_its_flag(capsys, tmp_path):
    import shutil

    from jaxdos.crystal.checkpoint import DEFAULT_DIR

    bad = tmp_path / "model"
    shutil.copytree(DEFAULT_DIR, bad)
    blob = bytearray((bad / "params.msgpack").read_bytes())
    blob[100] ^= 0xFF
    (bad / "params.msgpack").write_bytes(bytes(blob))
    line = _fails(
        design_cli.main,
        ["--band-gap", "2", "--dos-model", str(bad)],
        capsys,
        "--dos-model:",
        tmp_path / "run",
    )
    assert "a 'cdosgen' model, expected a 'dossampler'" in line
    _fails(
        generate_cli.main,
        [str(tmp_path), "--crystal-model", str(bad)],
        capsys,
        "corrupt",
        tmp_path / "r2",
    )


def _write_records(path, dos):
    from jaxdos.data.records import Records, save_records
    from jaxdos.data.world import load_world

    w = load_world("test").take(np.arange(len(dos)))
    rec = w._replace(dos=dos) if dos.shape[1] == 256 else Records(**{**w._asdict(), "dos": dos})
    save_records(path, rec, oracle_version="test")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: _write_records(p / "r.npz", np.full((2, 200), 0.1, np.float32)), "256"),
        (lambda p: _write_records(p / "r.npz", np.full((2, 256), np.nan, np.float32)), "finite"),
        (lambda p: _write_records(p / "r.npz", np.full((2, 256), -0.1, np.float32)), "negative"),
        (lambda p: (p / "c").mkdir() or (p / "c" / "a.cif").write_text("not a cif"), "a.cif"),
        (lambda p: (p / "e").mkdir(), "holds no"),
    ],
)
def test_generate_bad_sources_are_named(make, match, capsys, tmp_path):
    make(tmp_path)
    source = next(p for p in tmp_path.iterdir())
    line = _fails(generate_cli.main, [str(source)], capsys, match, tmp_path / "run")
    assert "source:" in line and str(source) in line
    assert not (tmp_path / "run").exists()


def test_generate_rejects_a_cif_of_more_than_20_atoms(capsys, tmp_path):
    from pymatgen.core import Lattice, Structure

    big = Structure(Lattice.cubic(8.0), ["Si"] * 21, np.random.default_rng(0).random((21, 3)))
    (tmp_path / "c").mkdir()
    big.to(filename=str(tmp_path / "c" / "big.cif"))
    line = _fails(generate_cli.main, [str(tmp_path / "c")], capsys, "21 atoms", tmp_path / "run")
    assert "big.cif" in line and "1..20" in line
