"""Train an item image encoder (ResNet-18, SSIM autoencoder or EfficientNet-Lite): `accelerate launch training_scripts/train_image_encoder.py --help`.

The flags and the work live in `umbert_hf.commands.train_image_encoder`, which the demo and the hyperparameter search reuse.
"""

import sys

from umbert_hf.commands.train_image_encoder import main, parse_args
from umbert_hf.utils.paths import run_command

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_command(main))
