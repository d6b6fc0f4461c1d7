"""An untrained conditional CDOSGen small enough to compile quickly (pipeline tests)."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdos.crystal.batch import DosCondition
from jaxdos.crystal.checkpoint import CDOSGenModel
from jaxdos.crystal.denoiser import GemNetConfig, GemNetTDenoiser
from jaxdos.crystal.diffusion.num_atoms import NumAtomsDistribution, prior_batch


def untrained_model(width: int, num_atoms) -> CDOSGenModel:
    """1 block of `width`; atom counts drawn from the empirical distribution of `num_atoms`."""
    config = GemNetConfig.tiny(
        num_blocks=1,
        num_atom=1,
        emb_size_atom=width,
        emb_size_edge=width,
        latent_dim=width,
        num_radial=width // 2,
    ).conditional()
    net = GemNetTDenoiser(config)
    b = jax.tree.map(jnp.asarray, prior_batch(np.full(2, 3)))
    b = b._replace(lattice=b.lattice * 4.0, atomic_numbers=jnp.where(b.node_mask, 8, 0))
    cond = DosCondition(jnp.ones((2, 256)), jnp.ones(2, bool))
    params = {"params": jax.jit(net.init)(jax.random.key(0), b, jnp.full(2, 0.5), cond)["params"]}
    dist = NumAtomsDistribution.from_counts(num_atoms)
    return CDOSGenModel(params=params, gemnet=config, num_atoms=dist)
