"""`sample_dos` and the CLI reject bad targets and budgets before loading or compiling anything."""

import pytest

from experiments import sample_dos as cli
from jaxdos.pipeline import sample_dos
from jaxdos.sampler.targets import Targets


def _boom(*_):
    raise AssertionError("the model must not be touched before validation")


@pytest.fixture
def no_model(monkeypatch):
    """Loading or resolving a model fails loudly: reaching it means validation came too late."""
    import jaxdos.pipeline.dos as dos

    monkeypatch.setattr(dos, "as_model", _boom)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(accept=10, proposals=5), "proposals"),
        (dict(accept=0), "accept"),
        (dict(accept=5, batch_size=0), "batch_size"),
        (dict(accept=5, devices=10_000), "devices"),
    ],
)
def test_budget_errors_before_compute(kwargs, match, no_model):
    with pytest.raises(ValueError, match=match):
        sample_dos(Targets.of(band_gap=2.0), **kwargs)


def test_job_config_checks_targets_and_budget_before_compute():
    from jaxdos.pipeline.jobs.sample_dos import SampleDOSConfig

    with pytest.raises(ValueError, match="targets"):
        SampleDOSConfig(targets={"band_gap": 2.0})
    with pytest.raises(ValueError, match="proposals"):
        SampleDOSConfig(targets=Targets.of(band_gap=2.0), accept=10, proposals=5)
    with pytest.raises(ValueError, match="flush_seconds"):
        SampleDOSConfig(targets=Targets.of(band_gap=2.0), flush_seconds=0)


def test_targets_type_checked():
    with pytest.raises(ValueError, match="targets"):
        sample_dos({"band_gap": 2.0}, accept=1)


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--band-gap", "-1"], "band_gap"),
        (["--band-gap", "nan"], "band_gap"),
        (["--band-gap", "2", "--tol", "0"], "rel_tol"),
        (["--band-gap", "3.5", "--tcm", "type1"], "band_gap"),
        (["--band-gap", "2", "--accept", "10", "--proposals", "3"], "proposals"),
        (["--band-gap", "2", "--num-processes", "2"], "coordinator"),
        (["--band-gap", "2", "--temperature", "-1"], "temperature"),
        (["--band-gap", "2", "--top-p", "0"], "top_p"),
        (["--band-gap", "2", "--noise-length", "-2"], "noise_length"),
    ],
)
def test_cli_errors_before_compute(argv, match, tmp_path, no_model):
    with pytest.raises(ValueError, match=match):
        cli.main([*argv, "--out", str(tmp_path / "run"), "--quiet"])


def test_cli_sampling_flags_build_the_config():
    from experiments.cli import sampling_config
    from jaxdos.sampler.config import DOSSamplingConfig

    parse = cli._parser().parse_args
    assert sampling_config(parse(["--band-gap", "2"])) is None  # the library default stays
    args = parse(
        ["--steps", "16", "--unmask-order", "confidence", "--temperature", "0.7"]
        + ["--final-argmax", "--top-p", "0.9", "--noise-length", "16"]
    )
    assert sampling_config(args) == DOSSamplingConfig(
        steps=16,
        unmask_order="confidence",
        temperature=0.7,
        final_argmax=True,
        top_p=0.9,
        noise_length=16.0,
    )
