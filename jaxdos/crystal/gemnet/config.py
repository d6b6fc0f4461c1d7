"""GemNetConfig: sizes, graph budgets, scale constants and conditioning of the score network."""

import dataclasses

from jaxdos.crystal.gemnet.scaling import GEMNET_DT_JSON, scales_from_json
from jaxdos.crystal.graph import GraphConfig

__all__ = ["GemNetConfig", "ScalarProperty"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScalarProperty:
    """A MatterGen scalar adapter property (NoiseLevelEncoding of the standardised value).

    Attributes:
        name: property name (e.g. "dft_band_gap"); names the adapter params.
        mean, std: the fitted StandardScalerTorch buffers (`scaler.means`, `scaler.stds`).
        log10: apply log10 before scaling (MatterGen: bulk moduli).
    """

    name: str
    mean: float = 0.0
    std: float = 1.0
    log10: bool = False

    def __post_init__(self):
        if not self.name.isidentifier() or self.name == "dos":
            raise ValueError(
                f"ScalarProperty.name must be an identifier other than 'dos': {self.name}"
            )
        if not self.std > 0:
            raise ValueError(f"ScalarProperty.std must be > 0, got {self.std}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class GemNetConfig:
    """Score-network hyperparameters (MatterGen names, docs/spec/mattergen.md §2.2).

    Attributes:
        num_blocks .. num_atom: GemNet-dT sizes (`num_concat` is fixed at 1 as in MatterGen).
        latent_dim: width of the time encoding z concatenated to the atom embedding.
        envelope_exponent: polynomial envelope p.
        graph: cutoff / neighbour semantics and static budgets of the periodic graph.
        scale_factors: (flax path, value) ScalingFactor constants; absent = 1.0.
        dos_dim: DOS bins for the DOS adapter (None = unconditional: no DOS params).
        dos_emb_size: width of the DOS embedding g (paper: 512, eq. 2).
        properties: MatterGen scalar adapter properties (GemNetTCtrl style).
        num_type_classes: fc_atom outputs (100 elements + mask).
        time_scale: t is multiplied by this before the sinusoidal encoding. MatterGen: 1.0, so
            every frequency (<= 1) stays below one period on t in [0, 1] and the encoding is
            nearly linear in t; 1000 spreads it like DDPM's integer steps.
        pos_sigma_ref: output preconditioning of the coordinates (None = MatterGen). With a value
            s0 the fractional output is multiplied by sqrt(1 + (s0 / sigma)^2), sigma the
            coordinate noise of the atom: at small noise the network then outputs the
            displacement towards the clean crystal in units of s0 (independent of t) instead of
            a gain of 1 / sigma that must be learned from t.
        frac_fourier: K > 0 adds sin / cos(2 pi k df), k = 1..K, of each edge's fractional
            offset df to the edge embedding through a zero-initialised linear layer (0 =
            MatterGen). The noisy lattice hides the fractional structure from Cartesian
            features at mid noise (docs/results.md, "looking for the fault"); these features
            are independent of the lattice and the same for every periodic image. Zero-init keeps
            a converted MatterGen model's outputs unchanged until training moves it.
        frac_head: L > 0 adds `jaxdos.crystal.frac_head.FractionalHead`, L rounds of all-pairs
            message passing on fractional offsets, types, time and conditions (no lattice), its
            fractional score added to GemNet's through a zero-initialised layer (0 = MatterGen).
            A fine-tune may add it to an init without one: the model starts with the init's
            scores.
    """

    num_blocks: int = 4
    emb_size_atom: int = 512
    emb_size_edge: int = 512
    emb_size_trip: int = 64
    emb_size_rbf: int = 16
    emb_size_cbf: int = 16
    emb_size_bil_trip: int = 64
    num_spherical: int = 7
    num_radial: int = 128
    num_before_skip: int = 1
    num_after_skip: int = 2
    num_atom: int = 3
    latent_dim: int = 512
    envelope_exponent: int = 5
    graph: GraphConfig = GraphConfig()
    scale_factors: tuple[tuple[str, float], ...] = ()
    dos_dim: int | None = None
    dos_emb_size: int = 512
    properties: tuple[ScalarProperty, ...] = ()
    num_type_classes: int = 101
    time_scale: float = 1.0
    pos_sigma_ref: float | None = None
    frac_fourier: int = 0
    frac_head: int = 0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if type(v) is int and f.name not in ("dos_dim", "frac_fourier", "frac_head") and v < 1:
                raise ValueError(f"GemNetConfig.{f.name} must be >= 1, got {v}")
        if self.num_spherical < 2 or self.num_radial < 2:
            raise ValueError("GemNetConfig.num_spherical and num_radial must be >= 2")
        if self.latent_dim % 2:
            raise ValueError(f"GemNetConfig.latent_dim must be even, got {self.latent_dim}")
        if self.dos_dim is not None and self.dos_dim < 1:
            raise ValueError(f"GemNetConfig.dos_dim must be None or >= 1, got {self.dos_dim}")
        if self.emb_size_atom % 2:
            raise ValueError("GemNetConfig.emb_size_atom must be even (property encodings)")
        if not self.time_scale > 0:
            raise ValueError(f"GemNetConfig.time_scale must be > 0, got {self.time_scale}")
        if self.pos_sigma_ref is not None and not self.pos_sigma_ref > 0:
            raise ValueError(
                f"GemNetConfig.pos_sigma_ref must be None or > 0, got {self.pos_sigma_ref}"
            )
        if not 0 <= self.frac_fourier <= 16:
            raise ValueError(f"GemNetConfig.frac_fourier must be 0..16, got {self.frac_fourier}")
        if not 0 <= self.frac_head <= 8:
            raise ValueError(f"GemNetConfig.frac_head must be 0..8, got {self.frac_head}")
        names = [p.name for p in self.properties]
        if len(set(names)) != len(names):
            raise ValueError(f"GemNetConfig.properties has duplicate names: {names}")

    @property
    def adapter_names(self) -> tuple[str, ...]:
        """Adapted properties in injection order: DOS first, then scalars sorted by name."""
        dos = ("dos",) if self.dos_dim is not None else ()
        return dos + tuple(sorted(p.name for p in self.properties))

    def conditional(self, dos_dim: int = 256, **kw) -> "GemNetConfig":
        """The same network with the DOS adapter (256 = jaxdos.kernels.grid.N_BINS)."""
        return dataclasses.replace(self, dos_dim=dos_dim, **kw)

    @classmethod
    def tiny(cls, **kw) -> "GemNetConfig":
        """A CPU-trainable GemNet-T: 2 blocks, 64-wide, cutoff 7 A, 20 neighbours."""
        base = dict(
            num_blocks=2,
            emb_size_atom=64,
            emb_size_edge=64,
            emb_size_trip=16,
            emb_size_rbf=8,
            emb_size_cbf=8,
            emb_size_bil_trip=16,
            num_spherical=7,
            num_radial=32,
            num_atom=2,
            latent_dim=64,
            dos_emb_size=64,
            graph=GraphConfig(
                cutoff=7.0,
                max_neighbors=20,
                max_cell_images_per_dim=5,
                max_atoms_per_crystal=20,
                candidates_per_atom=4096,
                edges_per_atom=32,
                max_in_degree=32,
            ),
        )
        base.update(kw)
        return cls(**base)

    @classmethod
    def mattergen_base(cls, **kw) -> "GemNetConfig":
        """MatterGen's released sizes with the gemnet-dT json scale constants.

        See docs/spec/mattergen.md §2.2.
        """
        base = dict(
            graph=GraphConfig(
                cutoff=7.0,
                max_neighbors=50,
                max_cell_images_per_dim=5,
                max_atoms_per_crystal=20,
                candidates_per_atom=8192,
                edges_per_atom=64,
                max_in_degree=64,
            ),
            scale_factors=scales_from_json(GEMNET_DT_JSON, 4),
        )
        base.update(kw)
        return cls(**base)
