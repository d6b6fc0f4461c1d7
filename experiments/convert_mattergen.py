"""Convert a MatterGen model folder to a jaxdos GemNetTDenoiser checkpoint.

    python -m experiments.convert_mattergen <model_dir> <out_dir> [--trust-pickle]

<model_dir> holds `config.yaml` and `checkpoints/last.ckpt` (as released on the HF hub
`microsoft/mattergen`, e.g. checkpoints/mattergen_base) or a bare `state_dict.pt`. Needs torch to
unpickle (scripts/install_parity.sh). Writes <out_dir> as a "cdosgen" model directory (model.json +
params.msgpack, the conversion report in its meta; `jaxdos.pipeline.models.load` reads it) and
prints a summary; exits with status 2 and the list of offending keys if the checkpoint is
rejected.
"""

import argparse
import sys

from jaxdos.crystal.convert import ConversionError, convert_model_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow arbitrary pickled objects (released Lightning checkpoints need this, and "
        "pytorch_lightning/omegaconf importable); only for files you trust",
    )
    args = parser.parse_args(argv)
    try:
        model, report = convert_model_dir(
            args.model_dir, args.out_dir, trust_pickle=args.trust_pickle
        )
        gemnet = model.gemnet
    except ConversionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    adapters = ", ".join(gemnet.adapter_names) or "none"
    print(f"model: {gemnet.num_blocks} blocks, width {gemnet.emb_size_atom}, adapters: {adapters}")
    print(f"wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
