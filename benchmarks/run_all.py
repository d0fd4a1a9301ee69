"""Run every benchmark and print one table (`make bench`).

    python benchmarks/run_all.py [--quick]

Rows: retrieval queries/s against the original per-query `cdist` loop and a bare matrix product; fine-tuning outfits/s
against a bare `nn.TransformerEncoder` of the same shape; the step time of the catalogue-wide contrastive negatives
against the batch's; dataset build time at full Polyvore size; embedding
extraction images/s against the bare model forward. Each benchmark's `main` runs in this process, one after the other;
its own output is printed first, and the table is built from the figures it returns.
"""

import argparse
import importlib
import platform
import sys
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def run(name: str, *arguments: str) -> dict[str, Any]:
    """Import `benchmarks/<name>.py` and return the figures of its `main(arguments)`."""
    print(f"$ {name}.py {' '.join(arguments)}".rstrip(), flush=True)
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    figures = importlib.import_module(name).main(list(arguments))
    print(flush=True)
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (a smoke run, not the reported figures).")
    args = parser.parse_args(argv)
    build_size = ["--num_items", "25000", "--num_outfits", "6800"] if args.quick else []
    extraction_size = ["--num_items", "256", "--repeats", "1"] if args.quick else []

    retrieval = run("bench_retrieval", *(["--repeats", "3"] if args.quick else []))
    finetune = run("bench_finetune_step", *(["--steps", "3"] if args.quick else []))
    negatives = run("bench_contrastive_negatives", *(["--steps", "2", "--repeats", "1"] if args.quick else []))
    build = run("bench_dataset_build", *build_size)
    extraction = run("bench_embedding_extraction", *extraction_size)

    rows = [
        (
            "retrieval, top-10 FITB (queries/s)",
            retrieval["umbert_retrieve_queries_per_s"],
            f"cdist loop {retrieval['cdist_loop_queries_per_s']:,.0f}; bare matmul+topk "
            f"{retrieval['bare_matmul_topk_queries_per_s']:,.0f}",
        ),
        (
            "fine-tuning step fp32 (outfits/s)",
            finetune["umbert_contrastive_outfits_per_s"],
            f"bare encoder fwd+bwd {finetune['bare_encoder_outfits_per_s']:,.0f}",
        ),
        (
            "fine-tuning step bf16 autocast (outfits/s)",
            finetune["umbert_contrastive_bf16_outfits_per_s"],
            f"bare encoder bf16 {finetune['bare_encoder_bf16_outfits_per_s']:,.0f}",
        ),
        (
            "fine-tuning step, catalogue-wide negatives, MANGO shapes (ms)",
            negatives["catalogue_negatives_ms_per_step"],
            f"batch negatives {negatives['batch_negatives_ms_per_step']:,.0f} ms "
            f"({negatives['catalogue_vs_batch_cost']:.2f}x)",
        ),
        (
            f"dataset build, {build['num_items']} items / {build['num_outfits']} outfits (s)",
            build["build_seconds"],
            "no images",
        ),
        (
            f"embedding extraction, {extraction['encoder']} {extraction['image_size']}px (images/s)",
            extraction["extraction_images_per_second"],
            f"bare forward {extraction['bare_forward_images_per_second']:,.1f} ({extraction['ratio']:.0%})",
        ),
    ]
    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )
    print(f"| {'benchmark':58s} | {'umbert-hf':>12s} | reference |")
    print(f"|{'-' * 60}|{'-' * 14}|-----------|")
    for name, value, reference in rows:
        print(f"| {name:58s} | {value:12,.1f} | {reference} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
