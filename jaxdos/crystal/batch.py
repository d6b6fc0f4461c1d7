"""What CDOSGen's network takes besides the crystals, and what it predicts; the D3PM type classes.

The crystals themselves are a `jaxdos.structures.CrystalBatch` (the flat layout: N atom slots,
G graph slots, masks). Stage-2 conventions on top of it (MatterGen's, see
docs/spec/mattergen.md §1):
    atomic_numbers  Z in 1..MAX_Z (= 100); the D3PM mask state is MASK_Z = 101 (class index 100
                    zero-based); 0 on padding atoms.
    frac_coords     fractional, wrapped to [0, 1).
    lattice         rows are lattice vectors (cart = frac @ lattice), Angstrom.
"""

from typing import NamedTuple

from jaxdos.structures import MAX_Z
from jaxdos.typing import Array

__all__ = ["DosCondition", "ScoreOutput", "MASK_Z", "NUM_TYPE_CLASSES"]

MASK_Z = MAX_Z + 1  # the absorbing D3PM state, stored as a pseudo atomic number
NUM_TYPE_CLASSES = MAX_Z + 1  # 100 elements + mask, zero-based class k <-> Z = k + 1


class DosCondition(NamedTuple):
    """Per-crystal DOS conditioning for CDOSGen.

    Fields:
        dos: `[G, 256]` per-atom DOS on the paper's grid (states / eV / atom, >= 0).
        use_cond: `[G]` bool, the classifier-free-guidance mask m of eq. 4 (False = unconditional).
    """

    dos: Array
    use_cond: Array


class ScoreOutput(NamedTuple):
    """What the score network predicts (MatterGen's "score x std" convention).

    See docs/spec/mattergen.md §4.

    Fields:
        frac: `[N, 3]` fractional-coordinate score.
        lattice: `[G, 3, 3]` symmetric lattice score.
        type_logits: `[N, NUM_TYPE_CLASSES]` atom-type logits (class k <-> Z = k + 1, 100 = mask).
    """

    frac: Array
    lattice: Array
    type_logits: Array
