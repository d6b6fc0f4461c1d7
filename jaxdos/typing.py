"""One dimension-letter legend for the whole project: one meaning per letter.

A capital letter in a docstring shape (`[B, L]`) or a lowercase one in an einsum string
(`"blv,vd->bld"`) stands for the dimension below and nothing else; a literal size (`[G, 3, 3]`,
`[E, 9, 9]`, `[M, 256]`) is written as the number. Physical quantities keep the paper's symbols in
prose and are never used as dimension letters: K is the DOS scale (max over bins, Section 4.1),
E_F the Fermi level, t the diffusion time. Counts that are not an array axis are named by their
config field (`corrector_steps`, `num_images`), not by a letter.

DOS and the DOSSampler (stage 1):
    B  batch: spectra (or crystals) processed together in one step
    L  DOS bins on the energy grid (256, `kernels.grid.N_BINS`)
    V  token vocabulary (1027: 1025 levels, [BG], [MASK])
    S  steps of a sampling trajectory
    H  attention heads
    D  hidden width (suffixed for a kind: Da atoms, De edges, Dr radial basis)
    P  DOS properties (3: band_gap, dos_at_fermi, integrated_dos)
    R  reference spectra a batch is compared with (metrics, audit)
    X  raw, ungridded energy samples of a DOS (input of `grid.resample_dos`)

Crystals (stage 2, the oracle, datasets):
    M  records: crystals or spectra in a host-side array (a dataset, an oracle call, a table)
    A  atom slots per crystal in the padded record layout (MAX_ATOMS; the graph's
       `max_atoms_per_crystal`)
    N  atoms of a flat batch of crystals (padded)
    G  graphs (crystals) of a flat batch (padded)
    E  directed edges of the periodic graph (padded); bonds in the oracle
    T  triplet slots per edge (`[E, T]`, T = `max_in_degree`)
    I  periodic images (lattice translations)
    J  neighbour candidates per centre-atom slot of the periodic graph (a neighbour atom of the
       same crystal at one image of that crystal's box; `GraphConfig.candidates_per_atom`)
    Y  spherical-basis functions (GemNet's `num_spherical`)
    C  GemNet feature channels (Ct triplet, Cc bilinear, as MatterGen names them)
    Z  atom-type classes of the D3PM (101)
    Q  k-points of the tight-binding oracle
    O  orbitals of the tight-binding oracle
    F  points of the oracle's fine smearing grid
"""

from typing import Any

import jax

__all__ = ["Array", "PRNGKey", "PyTree"]

Array = jax.Array
PRNGKey = jax.Array
PyTree = Any
