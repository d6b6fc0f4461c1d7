"""DOSSampler: RADD masked diffusion over DOS tokens with guided predictor-corrector sampling."""

__all__: list[str] = []
