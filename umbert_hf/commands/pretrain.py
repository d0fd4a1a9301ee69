"""Reconstruction pre-training of umBERT or WumBERT on outfits of item embeddings.

    accelerate launch training_scripts/pretrain.py --dataset DATA --embeddings EMB.parquet --output_dir OUT
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 training_scripts/pretrain.py ...

Writes OUT/{config.json, model.safetensors (with the catalogue), README.md, metrics.json, history.json,
training_curves.png} and, with --checkpointing_steps, OUT/step_N or OUT/epoch_N checkpoints.
"""

import argparse
import sys

from ..training.arguments import add_training_args
from ..training.outfit import PRETRAIN_DEFAULTS, add_data_args, add_model_args, train_outfit_model
from ..utils.paths import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(parser, embeddings_required=True)
    add_model_args(parser)
    add_training_args(parser, **PRETRAIN_DEFAULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    return train_outfit_model(parse_args(argv), objective="reconstruction")


if __name__ == "__main__":
    sys.exit(run_command(main))
