"""Evaluate an umBERT/WumBERT, or a baseline, with every outfit-completion metric and its chance level.

    python training_scripts/evaluate.py --model_name_or_path OUT --dataset DATA [--split test]
    python training_scripts/evaluate.py --baseline context_mean --dataset DATA --embeddings EMB.parquet

Prints one JSON object on the last line. Writes it only under a folder you name: to --output_file, or, for a saved
model folder, to <model>/eval_<split>.json; a baseline or a Hub id without --output_file writes no file. An existing
--output_file is replaced only with --overwrite, and never when it is or lies inside an input (the model). A bad input
(missing dataset, unknown split, unreadable embeddings) prints one `error: ...` line and exits with code 2.
"""

import argparse
import json
import os
import sys

from ..configuration_umbert import DISTANCES
from ..training.outfit import run_evaluation
from ..utils.files import write_json
from ..utils.paths import check_output, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model_name_or_path", type=str, help="Saved model folder or Hub id.")
    source.add_argument("--baseline", choices=["random", "context_mean"], help="Score a baseline instead of a model.")
    parser.add_argument("--dataset", type=str, required=True)
    parser.add_argument("--embeddings", type=str, default=None, help="Embeddings table (required for baselines).")
    parser.add_argument("--split", type=str, default="test", help="A split of the dataset's `outfits` config.")
    parser.add_argument("--distance", choices=DISTANCES, default="euclidean", help="Distance for baselines.")
    parser.add_argument("--per_device_eval_batch_size", type=int, default=256)
    parser.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trust_remote_code", action="store_true")
    parser.add_argument(
        "--index",
        default=None,
        help="Also search with this index (faiss, auto or a FAISS factory string; default: as the model was saved) "
        "and report index_recall@10, its share of the exact top 10; the other metrics stay exact.",
    )
    parser.add_argument("--index_parameters", default=None, help="FAISS settings, e.g. efSearch=256.")
    parser.add_argument(
        "--output_file",
        type=str,
        default=None,
        help="JSON file for the metrics. Default: <model>/eval_<split>.json for a saved model folder; for a baseline "
        "or a Hub id, no file (the JSON is only printed): nothing is written outside the folders you name.",
    )
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output_file.")
    args = parser.parse_args(argv)
    if args.baseline and not args.embeddings:
        parser.error("--baseline needs --embeddings (the catalogue to rank).")
    if args.output_file is not None:
        inputs = {"dataset": args.dataset, "embeddings": args.embeddings, "model_name_or_path": args.model_name_or_path}
        check_output(args.output_file, inputs, flag="--output_file", kind="file", overwrite=args.overwrite)
    if args.output_file is None and args.model_name_or_path and os.path.isdir(args.model_name_or_path):
        args.output_file = os.path.join(args.model_name_or_path, f"eval_{args.split}.json")
    return args


def main(argv: list[str] | None = None) -> dict:
    """Evaluate and print the metrics (run as a script, a bad input exits with code 2 after one `error: ...` line)."""
    args = parse_args(argv)
    metrics = run_evaluation(args)
    if args.output_file is not None:
        write_json(args.output_file, metrics)
    print(json.dumps(metrics, sort_keys=True))
    return metrics


if __name__ == "__main__":
    sys.exit(run_command(main))
