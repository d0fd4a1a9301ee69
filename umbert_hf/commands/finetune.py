"""Fill-in-the-blank fine-tuning of umBERT or WumBERT (each outfit repeated once per slot, with that slot masked).

    accelerate launch training_scripts/finetune.py --model_name_or_path PRETRAINED --dataset DATA --output_dir OUT
    accelerate launch training_scripts/finetune.py --embeddings EMB.parquet --dataset DATA --output_dir OUT

PRETRAINED is a pre-training output folder or a Hub id; its catalogue is the retrieval catalogue. Without it, a new
model is built on --embeddings (the model flags apply) and trained from scratch. WumBERT trains on the dataset's
`outfits_augmented` config when it exists (see `umbert-hf augment`).
"""

import argparse
import sys

from ..training.arguments import add_training_args
from ..training.outfit import FINETUNE_DEFAULTS, add_data_args, add_model_args, train_outfit_model
from ..utils.paths import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_name_or_path",
        type=str,
        default=None,
        help="Pre-trained umBERT/WumBERT folder or Hub id (default: a new model on --embeddings).",
    )
    add_data_args(parser, embeddings_required=False)
    model_flags = add_model_args(parser)
    add_training_args(parser, **FINETUNE_DEFAULTS)
    args = parser.parse_args(argv)
    if (args.model_name_or_path is None) == (args.embeddings is None):
        parser.error(
            "give exactly one of --model_name_or_path (fine-tune that model and its catalogue) and --embeddings "
            "(a new model on that embeddings table)."
        )
    ignored = [name for name in model_flags if getattr(args, name) != parser.get_default(name)]
    if args.model_name_or_path and ignored:
        parser.error(f"--{ignored[0]} shapes a new model; it cannot change the model of --model_name_or_path.")
    return args


def main(argv: list[str] | None = None) -> dict:
    return train_outfit_model(parse_args(argv), objective="fill_in_the_blank")


if __name__ == "__main__":
    sys.exit(run_command(main))
