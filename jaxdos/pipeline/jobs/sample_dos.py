"""Property-conditional DOS sampling with rejection at scale (stage 1) as a library job.

`run(SampleDOSConfig(targets=..., accept=...), out)` streams guided proposals until `accept` pass
the targets and leaves `out/shard-NNN/` (chunks + manifest per process) and `out/index.json`
(`jaxdos.sampler.rejection`); `python -m experiments.sample_dos` is its command line.
"""

import dataclasses

from jaxdos.pipeline.dos import AcceptedDOS, sample_dos
from jaxdos.pipeline.models import load_checked
from jaxdos.sampler.checkpoint import KIND
from jaxdos.sampler.config import DOSSamplingConfig
from jaxdos.sampler.rejection import RejectionConfig, merge
from jaxdos.sampler.targets import Targets

# `merge` rebuilds `index.json` from the shards (after a multi-host run whose process 0 died).
__all__ = ["SampleDOSConfig", "run", "merge"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SampleDOSConfig:
    """One stage-1 run.

    Attributes:
        targets: the validated `Targets`.
        accept: accepted candidates wanted (>= 1).
        proposals: proposal budget (>= accept; None: 1000 * accept).
        batch_size: proposals per jitted batch (>= 1).
        gamma: classifier-guidance strength for the guided properties (0: none).
        sampling: Algorithm 2 settings (None: `DOSSamplingConfig()`).
        checkpoint: a sampler checkpoint folder (None: the embedded tiny model).
        devices: the first N local devices (None: all).
        flush_seconds: write a chunk at least this often (> 0), so a kill loses at most this much.
        progress: show the tqdm bar.
        seed: the run's seed.
    """

    targets: Targets
    accept: int = 1024
    proposals: int | None = None
    batch_size: int = 256
    gamma: float = 1.0
    sampling: DOSSamplingConfig | None = None
    checkpoint: str | None = None
    devices: int | None = None
    flush_seconds: float = 60.0
    progress: bool = True
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.targets, Targets):
            raise ValueError(f"targets: expected a Targets, got {type(self.targets).__name__}")
        # The budget is checked here, before a checkpoint is read.
        RejectionConfig(
            accept=self.accept,
            proposals=self.proposals,
            batch_size=self.batch_size,
            flush_seconds=self.flush_seconds,
        )


def run(cfg: SampleDOSConfig, out, *, resume: bool = False) -> AcceptedDOS:
    """Sample into `out` (resume: continue the run there); returns the accepted candidates."""
    # A wrong kind or a missing / corrupt file fails here, named by its flag, before compute.
    sampler = load_checked("checkpoint", cfg.checkpoint, KIND)
    return sample_dos(
        cfg.targets,
        accept=cfg.accept,
        seed=cfg.seed,
        proposals=cfg.proposals,
        out=out,
        resume=resume,
        devices=cfg.devices,
        batch_size=cfg.batch_size,
        gamma=cfg.gamma,
        sampling_config=cfg.sampling,
        progress=cfg.progress,
        sampler=sampler,
        flush_seconds=cfg.flush_seconds,
    )
