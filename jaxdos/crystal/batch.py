"""The padded crystal batch every CDOSGen function takes (static shapes, masks).

Atoms of all crystals are flattened into N slots (atoms of one crystal contiguous), G graph slots.

Conventions (MatterGen's, see ../shared/spec/mattergen.md section 1):
    atomic_numbers  Z in 1..100; the D3PM mask state is MASK_Z = 101 (class index 100 zero-based);
                    0 on padding atoms.
    frac_coords     fractional, wrapped to [0, 1).
    lattice         rows are lattice vectors (cart = frac @ lattice), Angstrom.
"""

from typing import NamedTuple

import jax.numpy as jnp

from jaxdos.typing import Array

__all__ = ["CrystalBatch", "DosCondition", "ScoreOutput", "MAX_Z", "MASK_Z", "NUM_TYPE_CLASSES"]

MAX_Z = 100
MASK_Z = MAX_Z + 1
NUM_TYPE_CLASSES = MAX_Z + 1  # 100 elements + mask, zero-based class k <-> Z = k + 1


class CrystalBatch(NamedTuple):
    """Padded batch of crystals.

    Fields:
        atomic_numbers: `[N]` int32.
        frac_coords: `[N, 3]` float32.
        lattice: `[G, 3, 3]` float32.
        num_atoms: `[G]` int32 (0 for padding graphs).
        batch: `[N]` int32 graph index of each atom (padding atoms: a padding graph or any index
            with node_mask False; every consumer must apply `node_mask`).
        node_mask: `[N]` bool.
        graph_mask: `[G]` bool.
    """

    atomic_numbers: Array
    frac_coords: Array
    lattice: Array
    num_atoms: Array
    batch: Array
    node_mask: Array
    graph_mask: Array

    @property
    def num_nodes(self) -> int:
        return self.atomic_numbers.shape[0]

    @property
    def num_graphs(self) -> int:
        return self.lattice.shape[0]

    def cartesian(self) -> Array:
        """Cartesian positions `[N, 3]` = frac @ lattice[batch]."""
        return jnp.einsum("ni,nij->nj", self.frac_coords, self.lattice[self.batch])


class DosCondition(NamedTuple):
    """Per-crystal DOS conditioning for CDOSGen.

    Fields:
        dos: `[G, 256]` per-atom DOS on the paper's grid (states / eV / atom, >= 0).
        use_cond: `[G]` bool, the classifier-free-guidance mask m of eq. 4 (False = unconditional).
    """

    dos: Array
    use_cond: Array


class ScoreOutput(NamedTuple):
    """What the score network predicts (MatterGen's "score x std" convention, spec section 4).

    Fields:
        frac: `[N, 3]` fractional-coordinate score.
        lattice: `[G, 3, 3]` symmetric lattice score.
        type_logits: `[N, NUM_TYPE_CLASSES]` atom-type logits (class k <-> Z = k + 1, 100 = mask).
    """

    frac: Array
    lattice: Array
    type_logits: Array
