"""PyTorch references of jaxdos models (need the `parity` extra: scripts/install_parity.sh)."""

__all__: list[str] = []
