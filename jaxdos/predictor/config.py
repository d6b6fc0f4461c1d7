"""The two predictor architectures as frozen configs (variants are types, not strings).

- `EquivariantConfig`: the NequIP/MACE-style e3nn-jax network of `model.EquivariantDOS`, with the
  static budgets of its periodic neighbour list (`jaxdos.neighbors.GraphConfig`).
- `CompositionConfig`: the composition-only MLP baseline of `model.CompositionDOS` (no geometry).

`ARCHITECTURES` maps the name stored in `model.json` to the config class.
"""

import dataclasses

from jaxdos.neighbors import GraphConfig

__all__ = ["EquivariantConfig", "CompositionConfig", "PredictorConfig", "ARCHITECTURES"]

# Cutoff 4.5 A: the world's atoms have 18 neighbours within it at the median, 43 at the 95th
# percentile (400 training crystals), so a kNN cut of 64 almost never binds and the graph is the
# plain radius graph: a kNN cut would make the DOS jump when rounding reorders tied neighbours.
# Budgets regrow on overflow (`neighbors.retry_on_overflow`).
_GRAPH = GraphConfig(cutoff=4.5, max_neighbors=64, edges_per_atom=64, max_in_degree=128)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EquivariantConfig:
    """Sizes of the equivariant crystal -> DOS network.

    Attributes:
        scalars: D, even scalar channels (0e) of the hidden features.
        vectors: channels of each l >= 1 irrep of the hidden features (1o, 2e, ...).
        lmax: highest spherical-harmonic order of the edge features and hidden irreps.
        layers: interaction (tensor-product message-passing) layers.
        num_basis: Dr, radial basis functions on [0, cutoff].
        radial_hidden: width of the radial MLP that weights each tensor-product path.
        readout_hidden: width of the per-atom invariant readout MLP.
        avg_neighbors: normalisation of the summed messages (typical in-degree).
        graph: the periodic neighbour list and its static budgets.
    """

    scalars: int = 32
    vectors: int = 8
    lmax: int = 2
    layers: int = 3
    num_basis: int = 8
    radial_hidden: int = 32
    readout_hidden: int = 128
    avg_neighbors: float = 20.0
    graph: GraphConfig = _GRAPH

    def __post_init__(self):
        for name in ("scalars", "layers", "num_basis", "radial_hidden", "readout_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.vectors < 0:
            raise ValueError(f"vectors: expected >= 0, got {self.vectors}")
        if not 0 <= self.lmax <= 3:
            raise ValueError(f"lmax: expected in [0, 3], got {self.lmax}")
        if not self.avg_neighbors > 0:
            raise ValueError(f"avg_neighbors: expected > 0, got {self.avg_neighbors}")
        if not isinstance(self.graph, GraphConfig):
            raise ValueError(f"graph: expected a GraphConfig, got {self.graph!r}")

    @classmethod
    def tiny(cls, **changes) -> "EquivariantConfig":
        """A few hundred parameters: tests and smoke runs."""
        base = dict(scalars=8, vectors=2, layers=1, num_basis=4, radial_hidden=8, readout_hidden=16)
        return cls(**{**base, **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class CompositionConfig:
    """The composition-only baseline: element fractions `[MAX_Z + 1]` -> MLP -> DOS.

    Attributes:
        hidden: widths of the hidden layers.
    """

    hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self):
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden: expected one or more widths >= 1, got {self.hidden}")

    @classmethod
    def tiny(cls, **changes) -> "CompositionConfig":
        return cls(**{"hidden": (16,), **changes})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


PredictorConfig = EquivariantConfig | CompositionConfig
ARCHITECTURES = {"equivariant": EquivariantConfig, "composition": CompositionConfig}
