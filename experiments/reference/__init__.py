"""Independent references of jaxdos code: PyTorch twins of its models (need the `parity` extra:
scripts/install_parity.sh) and the dense periodic graph builder the library replaced
(`dense_graph`, jax only)."""

__all__: list[str] = []
