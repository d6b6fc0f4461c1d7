"""Command-line experiments; thin entry points over jaxdos.pipeline."""
