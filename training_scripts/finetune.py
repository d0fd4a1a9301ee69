"""Fill-in-the-blank fine-tuning of a pre-trained umBERT or WumBERT (each outfit repeated once per slot, masked).

    accelerate launch training_scripts/finetune.py --model_name_or_path PRETRAINED --dataset DATA --output_dir OUT

PRETRAINED is a pre-training output folder or a Hub id; its catalogue is the retrieval catalogue. WumBERT trains on
the dataset's `outfits_augmented` config when it exists (see `python -m umbert_hf.augment`).
"""

import argparse

from umbert_hf.outfit_training import add_data_args, train_outfit_model
from umbert_hf.training import add_training_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model_name_or_path", type=str, required=True, help="Pre-trained umBERT/WumBERT folder or Hub id."
    )
    add_data_args(parser, embeddings_required=False)
    add_training_args(parser, num_train_epochs=20, per_device_train_batch_size=128, learning_rate=1e-3, patience=4)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    return train_outfit_model(parse_args(argv), objective="fill_in_the_blank")


if __name__ == "__main__":
    main()
