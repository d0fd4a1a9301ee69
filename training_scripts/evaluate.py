"""Evaluate an umBERT/WumBERT, or a baseline, with every outfit-completion metric and its chance level.

    python training_scripts/evaluate.py --model_name_or_path OUT --dataset DATA [--split test]
    python training_scripts/evaluate.py --baseline context_mean --dataset DATA --embeddings EMB.parquet

Prints one JSON object on the last line and writes it to --output_file.
"""

import argparse
import json
import os

from umbert_hf.configuration_umbert import DISTANCES
from umbert_hf.outfit_training import run_evaluation
from umbert_hf.training import write_json


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_name_or_path", type=str, help="Saved model folder or Hub id.")
    source.add_argument("--baseline", choices=["random", "context_mean"], help="Score a baseline instead of a model.")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--embeddings", type=str, default=None, help="Embeddings table (required for baselines).")
    parser.add_argument("--split", type=str, default="test")
    parser.add_argument("--distance", choices=DISTANCES, default="euclidean", help="Distance for baselines.")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=256)
    parser.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument("--output_file", type=str, default=None, help="Default: <model>/eval_<split>.json or ./")
    args = parser.parse_args(argv)
    if args.baseline and not args.embeddings:
        parser.error("--baseline needs --embeddings (the catalogue to rank).")
    if args.output_file is None:
        folder = args.model_name_or_path if args.model_name_or_path and os.path.isdir(args.model_name_or_path) else "."
        name = f"eval_{args.split}.json" if args.model_name_or_path else f"baseline_{args.baseline}_{args.split}.json"
        args.output_file = os.path.join(folder, name)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    metrics = run_evaluation(args)
    write_json(args.output_file, metrics)
    print(json.dumps(metrics, sort_keys=True))
    return metrics


if __name__ == "__main__":
    main()
