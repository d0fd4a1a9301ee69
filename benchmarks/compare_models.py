"""Quality comparison on one dataset: umBERT with the original MSE objective, umBERT with the contrastive objective,
WumBERT (fine-tuned on nearest-neighbour augmented outfits), and the random and context-mean baselines.

    python benchmarks/compare_models.py --dataset demo_output/dataset --embeddings demo_output/embeddings.parquet \
        --output_dir comparison [--pretrain_epochs 10] [--finetune_epochs 30] [--seed 0]

Every model is pre-trained then fine-tuned with the same scripts users run; the table prints the test metrics beside
the chance levels and is written to OUTPUT_DIR/comparison.json.
"""

import argparse
import importlib.util
import json
import sys
from pathlib import Path

from umbert_hf.augment import augment_dataset

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("fitb_accuracy", "hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "compatibility_auc")


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "training_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(label: str, args, dataset: str, pretrain_extra: list[str]) -> dict:
    out = Path(args.output_dir) / label
    common = ["--seed", str(args.seed)]
    pretrain_args = ["--dataset", dataset, "--embeddings", args.embeddings, "--output_dir", str(out / "pretrained")]
    pretrain_args += [
        "--num_train_epochs",
        str(args.pretrain_epochs),
        "--num_hidden_layers",
        str(args.num_hidden_layers),
    ]
    script("pretrain").main(pretrain_args + pretrain_extra + common)
    finetune_args = ["--model_name_or_path", str(out / "pretrained"), "--dataset", dataset]
    finetune_args += ["--output_dir", str(out / "finetuned"), "--num_train_epochs", str(args.finetune_epochs)]
    return script("finetune").main(finetune_args + common)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--embeddings", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--pretrain_epochs", type=int, default=10)
    parser.add_argument("--finetune_epochs", type=int, default=30)
    parser.add_argument("--num_hidden_layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    augmented = Path(args.output_dir) / "dataset_augmented"
    if not augmented.exists():
        augment_dataset(args.dataset, args.embeddings, augmented, k=5)
    runs = {
        "umBERT (MSE, original)": train("umbert_mse", args, args.dataset, ["--loss_type", "mse"]),
        "umBERT (contrastive)": train("umbert_contrastive", args, args.dataset, []),
        "WumBERT (contrastive, augmented)": train("wumbert", args, str(augmented), ["--model_type", "wumbert"]),
    }
    any_run = next(iter(runs.values()))
    columns = {label: {metric: metrics[f"test_{metric}"] for metric in METRICS} for label, metrics in runs.items()}
    for baseline, label in (("random", "random"), ("context_mean", "context mean")):
        columns[label] = {metric: any_run[f"test_{baseline}_{metric}"] for metric in METRICS}
    columns["chance"] = {metric: any_run[f"test_{metric}_chance"] for metric in METRICS}
    header = "| metric | " + " | ".join(columns) + " |"
    print("\n" + header + "\n|" + "---|" * (len(columns) + 1))
    for metric in METRICS:
        print(f"| {metric} | " + " | ".join(f"{column[metric]:.4f}" for column in columns.values()) + " |")
    Path(args.output_dir, "comparison.json").write_text(json.dumps(columns, indent=2))
    return columns


if __name__ == "__main__":
    sys.exit(main() and 0)
