"""One dimension-letter legend for the whole project, used in docstrings and einsum strings.

B  batch (DOS spectra or crystals)      L  DOS bins (256)
V  token vocabulary (1027)              D  hidden width
H  attention heads                      S  steps of a sampling trajectory
N  atoms (padded, flattened over a batch of crystals)
E  edges (padded)                       T  triplets (padded)
G  graphs / crystals in a padded batch  K  k-points
O  orbitals                             P  properties
"""

from typing import Any

import jax

__all__ = ["Array", "PRNGKey", "PyTree"]

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
