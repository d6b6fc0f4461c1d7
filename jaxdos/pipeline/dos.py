"""Stage 1 of the pipeline: property targets -> accepted DOS (guided sampling + rejection).

`sample_dos` is the library form of `python -m experiments.sample_dos`: it validates the targets
and the budget before any compute, builds the guided proposer (band-gap prior, classifier guidance
and K conditioned on the targets) from the embedded `tiny` checkpoint unless parameters are given,
and streams sharded batches until `accept` candidates pass (see `jaxdos.sampler.rejection`).
"""

from jaxdos import sharding
from jaxdos.pipeline.models import as_model
from jaxdos.sampler.checkpoint import KIND
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.proposal import guided_proposer
from jaxdos.sampler.rejection import AcceptedDOS, RejectionConfig, run_rejection
from jaxdos.sampler.targets import Targets

__all__ = ["sample_dos", "AcceptedDOS"]


def sample_dos(
    targets: Targets,
    *,
    accept: int,
    seed: int = 0,
    proposals: int | None = None,
    out=None,
    resume: bool = False,
    devices=None,
    batch_size: int = 256,
    gamma: float = 1.0,
    sampling_config: DOSSamplingConfig | None = None,
    sampler=None,
    progress: bool = True,
    chunk_rows: int = 4096,
    flush_seconds: float = 60.0,
) -> AcceptedDOS:
    """Sample DOS meeting `targets` until `accept` are accepted (or `proposals` are spent).

    Args:
        targets: a `Targets` (values with tolerances, TCM / thermoelectric filters).
        accept: accepted candidates wanted (>= 1).
        seed: the run's seed; the same seed gives the same candidates on any device count.
        proposals: proposal budget (>= accept); default 1000 * accept.
        out: folder for the chunked output and its index (None: a temporary folder).
        resume: continue the run in `out` after an interruption.
        devices: None (all devices), an int n (the first n) or a list of `jax.Device`.
        batch_size: proposals per jitted batch.
        gamma: classifier-guidance strength for the guided properties (0: none).
        sampling_config: Algorithm 2 settings (default `DOSSamplingConfig()`).
        sampler: a `DOSSamplerModel` or a "dossampler" model directory; default the embedded
            tiny sampler.
        progress: tqdm bar with proposals/s and acceptance rate.
        chunk_rows: accepted rows per output chunk.
        flush_seconds: write a chunk at least this often, so a kill loses at most this much work.

    Returns:
        `AcceptedDOS` with `.dos [M, 256]`, `.tokens`, `.scale`, `.properties[name]` (measured
        band_gap, dos_at_fermi, integrated_dos) and `.index`, in global-example order.

    Raises:
        ValueError: on bad targets or budget, before any compute.
    """
    if not isinstance(targets, Targets):
        raise ValueError(f"targets: expected a jaxdos.sampler.targets.Targets, got {targets!r}")
    config = RejectionConfig(
        accept=accept,
        proposals=proposals,
        batch_size=batch_size,
        seed=seed,
        chunk_rows=chunk_rows,
        flush_seconds=flush_seconds,
    )
    mesh = sharding.make_mesh(devices)
    model = as_model(sampler, KIND)
    proposer = guided_proposer(
        model.params,
        model.config,
        model.scale_distribution,
        targets,
        sampling_config=sampling_config,
        gamma=gamma,
    )
    return run_rejection(
        proposer, targets, config, out=out, resume=resume, mesh=mesh, progress=progress
    )
