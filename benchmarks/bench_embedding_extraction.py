"""Benchmark: catalogue embedding extraction throughput against the bare model forward at the same batch size.

    python benchmarks/bench_embedding_extraction.py                      # ResNet-18 at 224 px, synthetic catalogue
    python benchmarks/bench_embedding_extraction.py --encoder autoencoder --image_size 128
    python benchmarks/bench_embedding_extraction.py --dataset DATA --image_encoder ENCODER --check

"Bare forward" embeds a ready tensor of random pixels, batch after batch, on the model's device; "extraction" is
`umbert_hf.data.extraction.extract_image_embeddings` on the catalogue: parquet image bytes decoded and resized in DataLoader
workers, normalised on the device, embedded in batches. Each is run `--repeats` times, interleaved, and the best
run counts (other load on the machine only ever slows a run down). The target is extraction >= 80% of bare forward:
loading and preprocessing must not be the bottleneck. `--check` exits with status 1 below the target. `main`
returns the figures as a dict.
"""

import argparse
import json
import math
import os
import tempfile
import time

import torch

from umbert_hf.data.extraction import default_num_workers, extract_image_embeddings, load_catalogue_dataset
from umbert_hf.data.image_processing import ImagePreprocessing, load_image_encoder
from umbert_hf.training.image import build_image_encoder

TARGET_RATIO = 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--dataset", default=None, help="Built dataset folder (default: a synthetic one in a temp dir)."
    )
    parser.add_argument("--image_encoder", default=None, help="Trained encoder folder (default: a random one).")
    parser.add_argument("--encoder", choices=("resnet", "autoencoder"), default="resnet")
    parser.add_argument("--image_size", type=int, default=None, help="Model input size (default 224 / 128).")
    parser.add_argument("--num_items", type=int, default=512, help="Catalogue items embedded per run.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument(
        "--num_workers", type=int, default=None, help="Default: umbert_hf.data.extraction.default_num_workers."
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--check", action="store_true", help=f"Exit 1 when extraction < {round(TARGET_RATIO * 100)}%% of bare."
    )
    return parser.parse_args(argv)


def synthetic_dataset(folder: str) -> str:
    from dataset_builder import build_dataset, synthesize_polyvore

    synthesize_polyvore(os.path.join(folder, "raw"), num_items=2000, num_outfits=3000, image_size=64, seed=0)
    build_dataset(os.path.join(folder, "raw"), os.path.join(folder, "dataset"))
    return os.path.join(folder, "dataset")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def bare_forward(model, preprocessing: ImagePreprocessing, num_items: int, batch_size: int, device) -> float:
    """Images per second of `get_image_embeddings` on ready, normalised tensors (plus the copy to the CPU)."""
    size = preprocessing.image_size
    pixels = torch.rand(batch_size, 3, size, size, device=device)
    model.get_image_embeddings(pixels)  # warm-up
    synchronize(device)
    began = time.perf_counter()
    for start in range(0, num_items, batch_size):
        count = min(batch_size, num_items - start)
        model.get_image_embeddings(pixels[:count]).float().cpu()
    synchronize(device)
    return num_items / (time.perf_counter() - began)


def extraction(model, catalogue, preprocessing, batch_size: int, num_workers: int) -> float:
    began = time.perf_counter()
    _, readable, _ = extract_image_embeddings(
        model, catalogue, preprocessing=preprocessing, batch_size=batch_size, num_workers=num_workers, progress=False
    )
    elapsed = time.perf_counter() - began
    if not readable.all():
        raise RuntimeError(f"{int((~readable).sum())} unreadable images in the benchmark catalogue.")
    return len(catalogue) / elapsed


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        dataset = args.dataset or synthetic_dataset(folder)
        catalogue = load_catalogue_dataset(dataset, cache_dir=os.path.join(folder, "cache"))
        repeats = math.ceil(args.num_items / len(catalogue))
        if repeats > 1:  # a small catalogue is cycled to reach --num_items
            from datasets import concatenate_datasets

            catalogue = concatenate_datasets([catalogue] * repeats)
        catalogue = catalogue.select(range(args.num_items))
        if args.image_encoder:
            model = load_image_encoder(args.image_encoder)
        else:
            kwargs = {"image_size": args.image_size} if args.image_size else {}
            model = build_image_encoder(args.encoder, **kwargs)
        model = model.to(device).eval()
        preprocessing = ImagePreprocessing.from_config(model.config)
        num_workers = default_num_workers(1, device) if args.num_workers is None else args.num_workers

        extraction(
            model,
            catalogue.select(range(min(len(catalogue), 2 * args.batch_size))),
            preprocessing,
            args.batch_size,
            num_workers,
        )  # warm-up: datasets cache, worker start, kernels
        bare, extracted = [], []
        for _ in range(args.repeats):
            bare.append(bare_forward(model, preprocessing, args.num_items, args.batch_size, device))
            extracted.append(extraction(model, catalogue, preprocessing, args.batch_size, num_workers))

    result = {
        "encoder": model.config.model_type,
        "image_size": preprocessing.image_size,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "num_workers": num_workers,
        "batch_size": args.batch_size,
        "num_items": args.num_items,
        "bare_forward_images_per_second": max(bare),
        "extraction_images_per_second": max(extracted),
        "ratio": max(extracted) / max(bare),
        "target_ratio": TARGET_RATIO,
        "runs": {"bare": bare, "extraction": extracted},
    }
    print(json.dumps(result, indent=2))
    print(
        f"{result['encoder']} {preprocessing.image_size}px batch {args.batch_size}: bare forward "
        f"{result['bare_forward_images_per_second']:.1f} img/s, extraction {result['extraction_images_per_second']:.1f} "
        f"img/s = {result['ratio']:.0%} (target >= {TARGET_RATIO:.0%})"
    )
    if args.check and result["ratio"] < TARGET_RATIO:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
