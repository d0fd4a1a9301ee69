"""Compute the embeddings table of every catalogue item of a built dataset, from an image encoder (ours, trained
with train_image_encoder.py, or any `transformers` image model: CLIP/SigLIP image tower, ViT, DINOv2), a text encoder
over the item titles (mean pooling, or a CLIP/SigLIP text tower), or both (L2-normalised parts concatenated, image
first). One CLIP can be both encoders.

    python training_scripts/compute_embeddings.py --dataset DATA --output emb.parquet   # the default recipe
    python training_scripts/compute_embeddings.py --dataset DATA --image_encoder ENCODER --output emb.parquet
    python training_scripts/compute_embeddings.py --dataset DATA --text_encoder all-MiniLM-L6-v2/ --output emb.parquet
    python training_scripts/compute_embeddings.py --dataset DATA --image_encoder patrickjohncyh/fashion-clip \
        --text_encoder patrickjohncyh/fashion-clip --output emb.parquet
    accelerate launch --num_processes 2 training_scripts/compute_embeddings.py --dataset DATA \\
        --image_encoder ENCODER --text_encoder TEXT_ENCODER --output emb.parquet

Without --image_encoder and --text_encoder, the default recipe (chosen on real outfits, see the README): the photos
through the frozen ImageNet EfficientNet-Lite0 (`efficientnet_lite0`, 1,280 pooled features; needs
`pip install 'umbert-hf[pretrained]'`) and the titles through all-MiniLM-L6-v2 (`pip install 'umbert-hf[text]'`),
each L2-normalised, concatenated; either part is left out, with a note, when its data or its extra is missing.
`--image_encoder efficientnet_lite1` / `efficientnet_lite2` name the larger wheel-shipped backbones.

Each process embeds a contiguous share of the catalogue; the table is written once, complete and in catalogue order,
with parquet metadata recording the encoders (path or Hub id) and the preprocessing. Missing or corrupt images are
counted and reported (and imputed, dropped or fatal, see --missing_images); the run fails if none can be read.
"""

import argparse
import json
import os
import sys

from accelerate import Accelerator
from accelerate.utils import set_seed

from ..data.extraction import (
    MISSING_IMAGE_POLICIES,
    compute_catalogue_embeddings,
    default_encoders,
    load_catalogue_dataset,
)
from ..data.projection import project_table
from ..utils.paths import check_output, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="Built dataset folder or Hub id (its `catalogue` config).")
    parser.add_argument(
        "--image_encoder",
        default=None,
        help="Folder or Hub id of an image encoder: ours (train_image_encoder.py), `efficientnet_lite0/1/2` (frozen "
        "ImageNet features from the `pretrained` extra), or any `transformers` image model saved with its processor "
        "(CLIP/SigLIP: image tower; ViT/DINOv2: pooled output). Default: see the recipe above.",
    )
    parser.add_argument(
        "--text_encoder",
        default=None,
        help="Folder or Hub id of a `transformers` text encoder (mean-pooled), or of an image-text model (its text "
        "tower); may be the same id as --image_encoder.",
    )
    parser.add_argument("--output", required=True, help="Parquet file to write.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output file.")
    parser.add_argument("--batch_size", type=int, default=64, help="Items per forward pass and process.")
    parser.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="Image loading workers per process (default: umbert_hf.data.extraction.default_num_workers).",
    )
    parser.add_argument("--text_max_length", type=int, default=128, help="Token limit of a title.")
    parser.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="L2-normalise each part (default: only when both encoders are given).",
    )
    parser.add_argument(
        "--missing_images",
        choices=MISSING_IMAGE_POLICIES,
        default="impute",
        help="Items whose image is missing or corrupt: impute their category's mean image embedding (default), "
        "drop them from the table, or fail.",
    )
    parser.add_argument(
        "--output_dim",
        type=int,
        default=None,
        help="Project the table on its top principal components (PCA), e.g. 128 for image + text parts.",
    )
    parser.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--no_progress", action="store_true", help="Hide the progress bars.")
    parser.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Load encoders that ship their own modeling code (e.g. Marqo/marqo-fashionSigLIP).",
    )
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be at least 1, got {args.batch_size}.")
    inputs = {"dataset": args.dataset, "image_encoder": args.image_encoder, "text_encoder": args.text_encoder}
    check_output(args.output, inputs, flag="--output", kind="file", overwrite=args.overwrite)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    with accelerator.main_process_first():
        # The first process prepares the `datasets` cache; the others then read it.
        catalogue = load_catalogue_dataset(args.dataset)
    if args.image_encoder is None and args.text_encoder is None:
        args.image_encoder, args.text_encoder, notes = default_encoders(catalogue)
        if args.image_encoder is None and args.text_encoder is None:
            raise ValueError(
                "no default encoder applies (" + "; ".join(notes) + "): give --image_encoder or --text_encoder."
            )
        if accelerator.is_main_process:
            chosen = " + ".join(name for name in (args.image_encoder, args.text_encoder and "all-MiniLM-L6-v2") if name)
            print(f"compute_embeddings: the default recipe, {chosen}" + "".join(f"; {note}" for note in notes))
    table, report = compute_catalogue_embeddings(
        catalogue,
        image_encoder=args.image_encoder,
        text_encoder=args.text_encoder,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        text_max_length=args.text_max_length,
        normalize=args.normalize,
        missing_images=args.missing_images,
        accelerator=accelerator,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
    table.metadata["dataset"] = os.path.abspath(args.dataset) if os.path.exists(args.dataset) else args.dataset
    if args.output_dim:
        table = project_table(table, args.output_dim)
    if accelerator.is_main_process:
        table.save(args.output)
        report["output"] = os.path.abspath(args.output)
        report["embedding_dim"] = table.embedding_dim
        print(json.dumps(report, indent=2))
    accelerator.wait_for_everyone()
    return report


if __name__ == "__main__":
    sys.exit(run_command(main))
