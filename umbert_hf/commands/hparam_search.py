"""Hyperparameter search for umBERT/WumBERT: each trial pre-trains then fine-tunes, scored on validation MRR.

    pip install 'umbert-hf[search]'   # Optuna, for the default TPE sampler
    python training_scripts/hparam_search.py --dataset DATA --embeddings EMB.parquet --output_dir OUT --n_trials 20
    python training_scripts/hparam_search.py --dataset DATA --embeddings EMB.parquet --output_dir OUT \
        --sampler random --n_trials 8 --num_train_epochs_pretrain 3 --num_train_epochs_finetune 3 \
        --space '{"num_hidden_layers": [1, 2], "num_attention_heads": [1, 2]}'
    python training_scripts/hparam_search.py ... --output_dir OUT --resume   # continue an interrupted search

The space is the original project's: learning rates {1e-5, 1e-4, 1e-3} for each phase, layers {3, 6, 9, 12},
heads {1, 2, 4, 8} (those that do not divide the embedding size are skipped), dropout [0, 0.2], weight decay
[0, 0.01], Adam or AdamW. Trials run one after the other in this process (on the GPU when there is one).

Writes OUT/trial_N/{pretrain,finetune} (the outputs of pretrain.py and finetune.py; with --keep_models best, only the
best trial keeps its weights), and, after every trial, OUT/hparam_results.csv, OUT/hparam_results.json (one row per
trial: params, objective, status, duration) and OUT/best_params.json.

Each trial pre-trains (reconstruction) into `<output_dir>/trial_<n>/pretrain`, fine-tunes that model (fill in the
blank) into `<output_dir>/trial_<n>/finetune`, and is scored by a validation metric of the fine-tuned model
(`val_mrr` by default). After every trial the results table (`hparam_results.csv`, `hparam_results.json`) and
`best_params.json` are rewritten atomically, so an interrupted search keeps what it has done and `--resume` continues it.
"""

import argparse
import csv
import io
import json
import math
import os
import random
import shutil
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from ..configuration_umbert import DISTANCES, LOSS_TYPES
from ..data.embeddings import read_embeddings_table
from ..evaluation.metrics import VALIDATION_PREFIX, greater_is_better, is_chance_level
from ..training.outfit import MODEL_DEFAULTS, dataset_slots, encoder_hidden_size
from ..utils.files import atomic_write, write_json
from ..utils.logging import get_logger
from ..utils.paths import check_output, run_command
from . import finetune, pretrain

logger = get_logger(__name__)

RESULTS_CSV = "hparam_results.csv"
RESULTS_JSON = "hparam_results.json"
BEST_PARAMS_JSON = "best_params.json"
PHASES = ("pretrain", "finetune")
# Written into --output_dir when a search starts: only a folder holding it is continued (`--resume`).
SEARCH_MARKER = ".umbert_hparam_search"
# Each phase of a trial runs as its script does: the same parser (its flags, defaults and checks), the same `main`.
PHASE_COMMANDS = {"pretrain": pretrain.main, "finetune": finetune.main}
SAMPLERS = ("tpe", "random")
KEEP_MODELS = ("best", "all")
# What `--keep_models best` removes from the other trials: weights and checkpoint folders (metrics and cards stay).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class Choice:
    """A categorical hyperparameter, passed as `--<flag> <value>` to the scripts of `phases`."""

    name: str
    choices: tuple
    flag: str
    phases: tuple[str, ...]

    def suggest(self, trial: "Suggester") -> Any:
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class FloatRange:
    """A float hyperparameter drawn uniformly from [low, high]."""

    name: str
    low: float
    high: float
    flag: str
    phases: tuple[str, ...]

    def suggest(self, trial: "Suggester") -> float:
        return trial.suggest_float(self.name, self.low, self.high)


Hyperparameter = Choice | FloatRange

# The original umBERT search (a learning rate per phase, depth, heads, dropout, weight decay and Adam vs AdamW), plus
# what matters for the contrastive objective on real outfits: its temperature and the batch size (the negatives).
SEARCH_SPACE: tuple[Hyperparameter, ...] = (
    Choice("pretrain_learning_rate", (1e-5, 1e-4, 1e-3), flag="learning_rate", phases=("pretrain",)),
    Choice("finetune_learning_rate", (1e-5, 1e-4, 1e-3), flag="learning_rate", phases=("finetune",)),
    Choice("num_hidden_layers", (3, 6, 9, 12), flag="num_hidden_layers", phases=("pretrain",)),
    Choice("num_attention_heads", (1, 2, 4, 8), flag="num_attention_heads", phases=("pretrain",)),
    FloatRange("hidden_dropout_prob", 0.0, 0.2, flag="hidden_dropout_prob", phases=("pretrain",)),
    FloatRange("weight_decay", 0.0, 0.01, flag="weight_decay", phases=PHASES),
    Choice("optimizer", ("adam", "adamw"), flag="optimizer", phases=PHASES),
    Choice("contrastive_temperature", (0.05, 0.1), flag="contrastive_temperature", phases=("pretrain",)),
    Choice("finetune_batch_size", (64, 128, 256), flag="per_device_train_batch_size", phases=("finetune",)),
)


class Suggester(Protocol):
    """What a trial offers to draw values: `optuna.Trial` or `RandomSuggester`."""

    def suggest_categorical(self, name: str, choices: list) -> Any: ...

    def suggest_float(self, name: str, low: float, high: float) -> float: ...


class RandomSuggester:
    """Uniform draws seeded by (seed, trial number): trial n gets the same values whatever ran before it."""

    def __init__(self, seed: int, number: int):
        self.rng = random.Random(seed * 1_000_003 + number)

    def suggest_categorical(self, name: str, choices: list) -> Any:
        return self.rng.choice(choices)

    def suggest_float(self, name: str, low: float, high: float) -> float:
        return self.rng.uniform(low, high)


def override_space(space: Sequence[Hyperparameter], overrides: dict[str, list]) -> tuple[Hyperparameter, ...]:
    """Replace the choices of `Choice`s (`{"num_hidden_layers": [1, 2]}`) or the `[low, high]` of `FloatRange`s."""
    by_name = {parameter.name: parameter for parameter in space}
    unknown = sorted(set(overrides) - set(by_name))
    if unknown:
        raise ValueError(f"Unknown hyperparameter(s) {unknown} in the space overrides; known: {sorted(by_name)}.")
    new_space = []
    for parameter in space:
        if parameter.name not in overrides:
            new_space.append(parameter)
            continue
        values = list(overrides[parameter.name])
        if isinstance(parameter, Choice):
            if not values:
                raise ValueError(f"{parameter.name}: give at least one choice.")
            new_space.append(replace(parameter, choices=tuple(values)))
        else:
            if len(values) != 2 or not float(values[0]) <= float(values[1]):
                raise ValueError(f"{parameter.name}: give [low, high] with low <= high, got {values}.")
            new_space.append(replace(parameter, low=float(values[0]), high=float(values[1])))
    return tuple(new_space)


def constrain_space(space: Sequence[Hyperparameter], hidden_size: int) -> tuple[Hyperparameter, ...]:
    """Drop the head counts that do not divide the hidden size (the embedding size), so no trial is wasted on them."""
    new_space = []
    for parameter in space:
        if isinstance(parameter, Choice) and parameter.name == "num_attention_heads":
            valid = tuple(heads for heads in parameter.choices if hidden_size % int(heads) == 0)
            dropped = [heads for heads in parameter.choices if heads not in valid]
            if not valid:
                raise ValueError(
                    f"No num_attention_heads choice in {list(parameter.choices)} divides the hidden size "
                    f"{hidden_size} of the embeddings."
                )
            if dropped:
                logger.warning(
                    f"Skipping num_attention_heads {dropped}: they do not divide the hidden size {hidden_size}."
                )
            parameter = replace(parameter, choices=valid)
        new_space.append(parameter)
    return tuple(new_space)


def sample_params(space: Sequence[Hyperparameter], trial: Suggester) -> dict[str, Any]:
    return {parameter.name: parameter.suggest(trial) for parameter in space}


def add_search_args(parser: argparse.ArgumentParser) -> None:
    """Flags of `training_scripts/hparam_search.py`."""
    group = parser.add_argument_group("search")
    group.add_argument(
        "--dataset", type=str, required=True, help="Dataset folder or Hub repo built by dataset_builder."
    )
    group.add_argument("--embeddings", type=str, required=True, help="Embeddings table (parquet).")
    group.add_argument("--output_dir", type=str, required=True, help="Trials, results table and best_params.json.")
    group.add_argument("--n_trials", type=int, default=20, help="Trials in the results (with --resume: in total).")
    group.add_argument("--seed", type=int, default=42, help="Seed of the sampler and of every training run.")
    group.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="tpe: Optuna's TPE (pip install 'umbert-hf[search]'); random: seeded random search, no Optuna needed.",
    )
    group.add_argument(
        "--metric",
        type=str,
        default="val_mrr",
        help="Key of the fine-tuned model's metrics.json to optimise (a `val_` metric; losses are minimised).",
    )
    group.add_argument("--model_type", choices=["umbert", "wumbert"], default="umbert")
    group.add_argument(
        "--num_train_epochs_pretrain",
        type=int,
        default=10,
        help="0 skips pre-training: each trial fine-tunes a new model on --embeddings.",
    )
    group.add_argument("--num_train_epochs_finetune", type=int, default=20)
    group.add_argument("--patience", type=int, default=3, help="Early stopping of each phase, in epochs (0: never).")
    group.add_argument("--per_device_train_batch_size", type=int, default=128)
    group.add_argument("--per_device_eval_batch_size", type=int, default=256)
    group.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default="no")
    group.add_argument(
        "--loss_type", choices=LOSS_TYPES, default=None, help="Pre-training loss (default: pretrain.py's)."
    )
    group.add_argument(
        "--distance", choices=DISTANCES, default=None, help="Retrieval distance (default: pretrain.py's)."
    )
    group.add_argument(
        "--space",
        type=str,
        default=None,
        help='JSON overrides of the search space, e.g. \'{"num_hidden_layers": [1, 2], "weight_decay": [0, 0.1]}\'.',
    )
    group.add_argument(
        "--keep_models",
        choices=KEEP_MODELS,
        default="best",
        help="best: drop the weights of every trial but the best one so far (metrics and cards stay); all: keep all.",
    )
    group.add_argument("--resume", action="store_true", help="Continue the search recorded in --output_dir.")


def check_search_args(args: argparse.Namespace) -> None:
    """Validate the search flags; raises `ValueError` naming the flag."""
    for name in ("n_trials", "num_train_epochs_finetune", "per_device_train_batch_size", "per_device_eval_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.num_train_epochs_pretrain < 0:
        raise ValueError(
            f"--num_train_epochs_pretrain must be 0 (no pre-training) or more, got {args.num_train_epochs_pretrain}."
        )
    inputs = {"dataset": args.dataset, "embeddings": args.embeddings}
    markers = (SEARCH_MARKER,)
    check_output(args.output_dir, inputs, existing="reuse", markers=markers, command="a hyperparameter search")
    if not args.metric.startswith(VALIDATION_PREFIX):
        logger.warning(f"--metric {args.metric!r} is not a validation metric: selecting on it overfits that split.")
    if not args.resume and Path(args.output_dir, RESULTS_JSON).exists():
        raise ValueError(
            f"{args.output_dir} holds a search already: pass --resume to continue it, or another --output_dir."
        )
    if args.space is not None:
        try:
            overrides = json.loads(args.space)
        except json.JSONDecodeError as error:
            raise ValueError(f"--space is not valid JSON: {error}") from None
        override_space(SEARCH_SPACE, overrides)  # raises on unknown names or malformed ranges


def phase_argv(
    args: argparse.Namespace,
    space: Sequence[Hyperparameter],
    params: dict[str, Any],
    phase: str,
    trial_dir: Path,
) -> list[str]:
    """Command-line flags of one phase of a trial, as they would be given to its training script."""
    argv = ["--dataset", str(args.dataset), "--output_dir", str(trial_dir / phase), "--seed", str(args.seed)]
    new_model = phase == "pretrain" or args.num_train_epochs_pretrain == 0
    if new_model:
        argv += ["--embeddings", str(args.embeddings), "--model_type", args.model_type]
        for name in ("loss_type", "distance"):
            if getattr(args, name, None):
                argv += [f"--{name}", getattr(args, name)]
    if phase == "pretrain":
        argv += ["--num_train_epochs", str(args.num_train_epochs_pretrain)]
    else:
        if not new_model:
            argv += ["--model_name_or_path", str(trial_dir / "pretrain")]
        argv += ["--num_train_epochs", str(args.num_train_epochs_finetune)]
        if args.metric.startswith(VALIDATION_PREFIX) and greater_is_better(args.metric):
            # Keep the epoch that is best for the searched metric.
            argv += ["--metric_for_best_model", args.metric.removeprefix(VALIDATION_PREFIX)]
    argv += ["--patience", str(args.patience), "--mixed_precision", args.mixed_precision]
    argv += ["--per_device_train_batch_size", str(args.per_device_train_batch_size)]
    argv += ["--per_device_eval_batch_size", str(args.per_device_eval_batch_size)]
    phase_flags = {parameter.flag for parameter in space if phase in parameter.phases}
    for parameter in space:
        # Without pre-training, the fine-tuning run also takes the model's shape (its own learning rate wins).
        borrowed = new_model and phase == "finetune" and parameter.flag not in phase_flags
        if phase in parameter.phases or borrowed:
            argv += [f"--{parameter.flag}", str(params[parameter.name])]
    return argv


def run_trial(
    args: argparse.Namespace, space: Sequence[Hyperparameter], params: dict[str, Any], number: int
) -> dict[str, Any]:
    """Pre-train then fine-tune with `params`; returns the fine-tuned model's metrics (and `pretrain_val_loss`)."""
    trial_dir = Path(args.output_dir, f"trial_{number}")
    results = {}
    for phase in PHASES:
        if phase == "pretrain" and args.num_train_epochs_pretrain == 0:
            continue
        argv = phase_argv(args, space, params, phase, trial_dir)
        logger.info(f"Trial {number} {phase}: {' '.join(argv)}")
        results[phase] = PHASE_COMMANDS[phase](argv)
    return {**results["finetune"], "pretrain_val_loss": results.get("pretrain", {}).get("val_loss")}


class _OptunaStudy:
    """TPE through Optuna's ask-and-tell interface."""

    def __init__(self, space: Sequence[Hyperparameter], seed: int, direction: str, resumed_trials: int = 0):
        try:
            import optuna
        except ImportError:
            raise ImportError(
                "--sampler tpe needs Optuna: pip install 'umbert-hf[search]' (or use --sampler random)."
            ) from None
        self.optuna = optuna
        self.space = space
        # A resumed search shifts the seed: TPE's first (random) draws would otherwise repeat the recorded trials.
        sampler = optuna.samplers.TPESampler(seed=seed + resumed_trials)
        self.study = optuna.create_study(direction=direction, sampler=sampler)

    def _distributions(self) -> dict:
        distributions = self.optuna.distributions
        return {
            parameter.name: distributions.CategoricalDistribution(list(parameter.choices))
            if isinstance(parameter, Choice)
            else distributions.FloatDistribution(parameter.low, parameter.high)
            for parameter in self.space
        }

    def add_completed(self, params: dict[str, Any], value: float) -> None:
        """Tell the sampler about a trial of an earlier run (skipped when it falls outside the current space)."""
        try:
            trial = self.optuna.trial.create_trial(params=params, distributions=self._distributions(), value=value)
            self.study.add_trial(trial)
        except ValueError as error:
            logger.warning(f"Not telling TPE about earlier params {params}: {error}")

    def ask(self, number: int) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        return trial, sample_params(self.space, trial)

    def tell(self, trial: Any, value: float | None, status: str) -> None:
        if status == "complete":
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)


class _RandomStudy:
    def __init__(self, space: Sequence[Hyperparameter], seed: int):
        self.space, self.seed = space, seed

    def add_completed(self, params: dict[str, Any], value: float) -> None:
        pass  # draws do not depend on earlier results

    def ask(self, number: int) -> tuple[None, dict[str, Any]]:
        return None, sample_params(self.space, RandomSuggester(self.seed, number))

    def tell(self, trial: Any, value: float | None, status: str) -> None:
        pass


def best_row(rows: list[dict[str, Any]], greater_is_better: bool) -> dict[str, Any] | None:
    """The completed trial with the best objective (the first one on ties)."""
    completed = [row for row in rows if row["status"] == "complete"]
    if not completed:
        return None
    sign = 1.0 if greater_is_better else -1.0
    return max(completed, key=lambda row: (sign * row["objective"], -row["trial"]))


def write_results(
    output_dir: str | os.PathLike,
    rows: list[dict[str, Any]],
    param_names: list[str],
    metric: str,
    greater_is_better: bool,
) -> dict[str, Any] | None:
    """Rewrite the results table (CSV and JSON) and `best_params.json`, each atomically; returns the best row."""
    output_dir = Path(output_dir)
    columns = ["trial", "status", "objective", "duration_s", *param_names, "pretrain_val_loss", "output_dir", "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if row.get(key) is None else row.get(key) for key in columns})
    atomic_write(output_dir / RESULTS_CSV, buffer.getvalue())
    write_json(output_dir / RESULTS_JSON, rows)
    best = best_row(rows, greater_is_better)
    if best is not None:
        write_json(
            output_dir / BEST_PARAMS_JSON,
            {
                "trial": best["trial"],
                "metric": metric,
                "direction": "maximize" if greater_is_better else "minimize",
                "objective": best["objective"],
                "params": {name: best[name] for name in param_names},
                "output_dir": best["output_dir"],
            },
        )
    return best


def format_results_table(rows: list[dict[str, Any]], param_names: list[str], best_trial: int | None) -> str:
    """A text table of the trials, the best one marked with `*`."""
    headers = ["trial", "status", "objective", "minutes", *param_names]
    lines = []
    for row in rows:
        objective = "" if row.get("objective") is None else f"{row['objective']:.4f}"
        values = [
            f"{row['trial']}{'*' if row['trial'] == best_trial else ''}",
            row["status"],
            objective,
            f"{row['duration_s'] / 60:.1f}",
            *(_format_value(row.get(name)) for name in param_names),
        ]
        lines.append(values)
    widths = [max(len(header), *(len(line[i]) for line in lines)) for i, header in enumerate(headers)]
    render = lambda cells: "  ".join(cell.rjust(width) for cell, width in zip(cells, widths))  # noqa: E731
    return "\n".join([render(headers), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(render, lines)])


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _drop_weights(trial_dir: Path) -> None:
    """Remove the weights and checkpoints of a trial's phases, keeping configs, metrics, histories and cards."""
    for phase in PHASES:
        folder = trial_dir / phase
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.suffix in _WEIGHT_SUFFIXES:
                entry.unlink()


def _load_previous_rows(output_dir: Path) -> list[dict[str, Any]]:
    """The trials recorded in `output_dir` (none for a new search; `check_search_args` refuses an existing one
    without --resume)."""
    path = output_dir / RESULTS_JSON
    return json.loads(path.read_text()) if path.exists() else []


class _UnknownMetricError(ValueError):
    pass


def _score_trial(
    args: argparse.Namespace, space: Sequence[Hyperparameter], params: dict[str, Any], number: int
) -> dict[str, Any]:
    """`status`, `objective`, `pretrain_val_loss` and `error` of one trial; a failing trial does not end the search."""
    try:
        metrics = run_trial(args, space, params, number)
    except Exception as error:  # e.g. out of memory for a large combination
        logger.error(f"Trial {number} failed:\n{traceback.format_exc()}")
        return {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    if args.metric not in metrics:
        known = sorted(key for key in metrics if key.startswith(VALIDATION_PREFIX) and not is_chance_level(key))
        raise _UnknownMetricError(f"--metric {args.metric!r} is not in the fine-tuning metrics; choose one of {known}.")
    outcome = {"pretrain_val_loss": metrics.get("pretrain_val_loss")}
    value = float(metrics[args.metric])
    if math.isnan(value):
        return {**outcome, "status": "failed", "error": f"{args.metric} is NaN"}
    return {**outcome, "status": "complete", "objective": value}


def run_search(args: argparse.Namespace, space: Sequence[Hyperparameter] | None = None) -> dict[str, Any]:
    """Run the search described by `args` (see `add_search_args`; checked by `check_search_args`) over `space`
    (default `SEARCH_SPACE`, with the `--space` overrides); returns `{"rows": [...], "best": row or None}`.

    Head counts that do not divide the encoder's width are left out of the space (`constrain_space`), so every
    sampled combination can be built.
    """
    space = SEARCH_SPACE if space is None else tuple(space)
    if getattr(args, "space", None):
        space = override_space(space, json.loads(args.space))
    dataset_slots(args.dataset)  # fail now, not in every trial, when the dataset cannot be read
    embedding_dim = read_embeddings_table(args.embeddings).embedding_dim
    space = constrain_space(
        space, encoder_hidden_size(getattr(args, "hidden_size", MODEL_DEFAULTS["hidden_size"]), embedding_dim)
    )
    param_names = [parameter.name for parameter in space]
    maximize = greater_is_better(args.metric)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / SEARCH_MARKER).touch()
    rows = _load_previous_rows(output_dir)

    if args.sampler == "tpe":
        study = _OptunaStudy(space, args.seed, "maximize" if maximize else "minimize", len(rows))
    elif args.sampler == "random":
        study = _RandomStudy(space, args.seed)
    else:
        raise ValueError(f"Unknown sampler {args.sampler!r}; expected one of {SAMPLERS}.")
    for row in rows:
        if row["status"] == "complete" and all(name in row for name in param_names):
            study.add_completed({name: row[name] for name in param_names}, row["objective"])
    if rows:
        logger.info(f"Resuming after {len(rows)} recorded trial(s).")

    best = best_row(rows, maximize)
    for number in range(len(rows), args.n_trials):
        trial, params = study.ask(number)
        trial_dir = output_dir / f"trial_{number}"
        row: dict[str, Any] = {"trial": number, **params, "output_dir": str(trial_dir), "objective": None}
        start = time.perf_counter()
        try:
            row.update(_score_trial(args, space, params, number))
        except _UnknownMetricError as error:
            # A wrong --metric would fail every trial: record this one and stop.
            row.update(status="failed", error=str(error), duration_s=round(time.perf_counter() - start, 3))
            write_results(output_dir, [*rows, row], param_names, args.metric, maximize)
            raise
        row["duration_s"] = round(time.perf_counter() - start, 3)
        study.tell(trial, row["objective"], row["status"])
        rows.append(row)
        previous_best = best
        best = write_results(output_dir, rows, param_names, args.metric, maximize)
        if getattr(args, "keep_models", "all") == "best":
            if best is not None and previous_best is not None and best["trial"] != previous_best["trial"]:
                _drop_weights(output_dir / f"trial_{previous_best['trial']}")
            if best is None or best["trial"] != number:
                _drop_weights(trial_dir)
        print(
            f"trial {number}: {row['status']}"
            + (f", {args.metric} = {row['objective']:.4f}" if row["objective"] is not None else "")
            + f" ({row['duration_s']:.0f} s)"
        )

    print(f"\nHyperparameter search ({args.sampler}, {args.metric}, {'max' if maximize else 'min'}imised):")
    print(format_results_table(rows, param_names, best["trial"] if best else None))
    if best is None:
        first_error = next((row.get("error") for row in rows if row.get("error")), None)
        raise ValueError(
            f"No trial completed, so best_params.json was not written; the first trial failed with: {first_error}"
        )
    else:
        print(
            f"\nBest: trial {best['trial']}, {args.metric} = {best['objective']:.4f} -> {output_dir / BEST_PARAMS_JSON}"
        )
    return {"rows": rows, "best": best}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_search_args(parser)
    args = parser.parse_args(argv)
    check_search_args(args)
    return args


def main(argv: list[str] | None = None) -> dict:
    return run_search(parse_args(argv))


__all__ = [
    "BEST_PARAMS_JSON",
    "Choice",
    "FloatRange",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "RandomSuggester",
    "SEARCH_SPACE",
    "add_search_args",
    "best_row",
    "check_search_args",
    "constrain_space",
    "format_results_table",
    "main",
    "override_space",
    "parse_args",
    "phase_argv",
    "run_search",
    "run_trial",
    "sample_params",
    "write_results",
]


if __name__ == "__main__":
    import sys

    sys.exit(run_command(main))
