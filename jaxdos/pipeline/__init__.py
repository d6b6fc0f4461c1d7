"""End-to-end pipeline: property targets -> DOS (stage 1) -> crystals (stage 2) -> scores."""

from jaxdos.pipeline.dos import AcceptedDOS, sample_dos

__all__ = ["sample_dos", "AcceptedDOS"]
