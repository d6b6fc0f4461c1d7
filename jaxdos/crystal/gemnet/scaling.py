"""GemNet ScalingFactor constants, keyed by the flax path of the module they scale.

MatterGen stores each `ScalingFactor.scale_factor` (a frozen scalar) in its state_dict, initialised
from fairchem's gemnet-dT json.  Here they are static config values (never trained): the key is the
state_dict path without `gemnet.` / `.scale_factor` in flax form, e.g.
`int_blocks_0/trip_interaction/scale_rbf` <-
`gemnet.int_blocks.0.trip_interaction.scale_rbf.scale_factor`.
A missing key means 1.0: the untrained default, and MatterGen's own value for block 4 (the json
has no TripInteraction_4 / AtomUpdate_4 / OutBlock_4 entries, docs/spec/mattergen.md §2.6).
Fitting the scales (GemNet's AutomaticFit) is not implemented: the converter loads them, and the
tiny preset trains from 1.0.
"""

from collections.abc import Mapping

__all__ = ["GEMNET_DT_JSON", "scales_from_json", "scale_paths"]

# fairchem gemnet-dT "tri_gaussian128" values, as shipped with MatterGen
# (docs/spec/mattergen.md §2.6).
GEMNET_DT_JSON: dict[str, float] = {
    "TripInteraction_1_had_rbf": 18.8736,
    "TripInteraction_1_sum_cbf": 7.99685,
    "AtomUpdate_1_sum": 1.22046,
    "TripInteraction_2_had_rbf": 16.1082,
    "TripInteraction_2_sum_cbf": 7.61463,
    "AtomUpdate_2_sum": 0.96910,
    "TripInteraction_3_had_rbf": 15.0193,
    "TripInteraction_3_sum_cbf": 7.02518,
    "AtomUpdate_3_sum": 0.89032,
    "OutBlock_0_sum": 1.64378,
    "OutBlock_0_had": 16.1610,
    "OutBlock_1_sum": 1.10777,
    "OutBlock_1_had": 13.5468,
    "OutBlock_2_sum": 0.94779,
    "OutBlock_2_had": 12.7543,
    "OutBlock_3_sum": 0.90593,
    "OutBlock_3_had": 13.4850,
}


def scale_paths(num_blocks: int) -> dict[str, str]:
    """flax path -> MatterGen scale name, for every scale the force path uses."""
    out = {}
    for i in range(num_blocks):
        out[f"int_blocks_{i}/trip_interaction/scale_rbf"] = f"TripInteraction_{i + 1}_had_rbf"
        out[f"int_blocks_{i}/trip_interaction/scale_cbf_sum"] = f"TripInteraction_{i + 1}_sum_cbf"
        out[f"int_blocks_{i}/atom_update/scale_sum"] = f"AtomUpdate_{i + 1}_sum"
    for j in range(num_blocks + 1):
        out[f"out_blocks_{j}/scale_rbf_F"] = f"OutBlock_{j}_had"
    return out


def scales_from_json(values: Mapping[str, float], num_blocks: int) -> tuple[tuple[str, float], ...]:
    """GemNetConfig.scale_factors from a gemnet json dict (names absent from it stay 1.0)."""
    return tuple(
        (path, float(values[name]))
        for path, name in sorted(scale_paths(num_blocks).items())
        if name in values
    )
