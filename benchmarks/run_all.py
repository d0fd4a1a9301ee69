"""Run every benchmark and print one table (`make bench`).

    python benchmarks/run_all.py [--quick]

Rows: retrieval queries/s against the original per-query `cdist` loop and a bare matrix product; fine-tuning outfits/s
against a bare `nn.TransformerEncoder` of the same shape; dataset build time at full Polyvore size; embedding
extraction images/s against the bare model forward. Each benchmark runs in its own process; its full output is
printed first.
"""

import argparse
import json
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def run(script: str, *arguments: str) -> str:
    command = [sys.executable, str(HERE / script), *arguments]
    print(f"$ {' '.join(command[1:])}", flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    print(result.stdout, end="")
    if result.returncode != 0:
        print(result.stderr[-3000:])
        raise SystemExit(f"{script} failed with exit code {result.returncode}")
    return result.stdout


def figure(output: str, name: str) -> float:
    match = re.search(rf"^\s*{re.escape(name)}\s+([0-9.]+)\s*$", output, flags=re.MULTILINE)
    return float(match.group(1)) if match else float("nan")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (a smoke run, not the reported figures).")
    args = parser.parse_args(argv)
    build_size = ["--num_items", "25000", "--num_outfits", "6800"] if args.quick else []
    extraction_size = ["--num_items", "256", "--repeats", "1"] if args.quick else []

    retrieval = run("bench_retrieval.py", *(["--repeats", "3"] if args.quick else []))
    finetune = run("bench_finetune_step.py", *(["--steps", "3"] if args.quick else []))
    build = run("bench_dataset_build.py", *build_size)
    extraction = run("bench_embedding_extraction.py", *extraction_size)
    extraction_json = json.loads(extraction[: extraction.rindex("}") + 1])
    build_match = re.search(r"build:\s+([0-9.]+) s", build)
    size_match = re.search(r"raw folder: (\d+) items, (\d+) outfits", build)

    rows = [
        (
            "retrieval, top-10 FITB (queries/s)",
            figure(retrieval, "umbert_retrieve_queries_per_s"),
            f"cdist loop {figure(retrieval, 'cdist_loop_queries_per_s'):,.0f}; bare matmul+topk "
            f"{figure(retrieval, 'bare_matmul_topk_queries_per_s'):,.0f}",
        ),
        (
            "fine-tuning step fp32 (outfits/s)",
            figure(finetune, "umbert_contrastive_outfits_per_s"),
            f"bare encoder fwd+bwd {figure(finetune, 'bare_encoder_outfits_per_s'):,.0f}",
        ),
        (
            "fine-tuning step bf16 autocast (outfits/s)",
            figure(finetune, "umbert_contrastive_bf16_outfits_per_s"),
            f"bare encoder bf16 {figure(finetune, 'bare_encoder_bf16_outfits_per_s'):,.0f}",
        ),
        (
            f"dataset build, {size_match.group(1)} items / {size_match.group(2)} outfits (s)",
            float(build_match.group(1)),
            "no images",
        ),
        (
            f"embedding extraction, {extraction_json['encoder']} {extraction_json['image_size']}px (images/s)",
            extraction_json["extraction_images_per_second"],
            f"bare forward {extraction_json['bare_forward_images_per_second']:,.1f} ({extraction_json['ratio']:.0%})",
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
