"""The flags every training script shares (named as in the `*_no_trainer.py` examples) and their checks, made before
any data is read: the output folder (`utils.paths.check_output`), checkpoints, trackers."""

import argparse
import math
import os
from pathlib import Path
from typing import Any

from accelerate.tracking import get_available_trackers
from accelerate.utils import LoggerType

from ..utils.logging import get_logger
from ..utils.paths import check_output, shareable_name
from .checkpoints import TRAINER_STATE_NAME

logger = get_logger(__name__)

HISTORY_NAME = "history.json"
CURVES_NAME = "training_curves.png"
METRICS_NAME = "metrics.json"
# Where --report_to trackers that write files (TensorBoard, Aim) log, as the Trainer's `runs/`: pushed with the model,
# so the Hub shows the TensorBoard curves under "Training metrics" (an Aim repository is not pushed).
TRACKER_LOGS_NAME = "runs"
# Flags of the scripts naming local inputs that --output_dir must not overwrite (see `check_output_dir`).
INPUT_FLAGS = ("dataset", "embeddings", "model_name_or_path")


# Flags that never reach a model card or a tracker: secrets and this machine's paths.
FLAGS_NOT_IN_CARD = {"output_dir", "hub_token", "push_to_hub", "resume_from_checkpoint"}


def add_training_args(parser: argparse.ArgumentParser, **defaults: Any) -> None:
    """Add the flags shared by every training script (names as in the `*_no_trainer.py` examples).

    `defaults` overrides per-script defaults, e.g. `add_training_args(parser, learning_rate=1e-4)`.
    """
    values = {
        "seed": 42,
        "num_train_epochs": 10,
        "per_device_train_batch_size": 64,
        "per_device_eval_batch_size": 256,
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "optimizer": "adamw",
        "lr_scheduler_type": "linear",
        "num_warmup_steps": 0,
        "gradient_accumulation_steps": 1,
        "max_grad_norm": 1.0,
        "mixed_precision": "no",
        "patience": 3,
        "report_to": "none",
        **defaults,
    }
    group = parser.add_argument_group("training")
    group.add_argument("--output_dir", type=str, required=True, help="Where the model, metrics and curves go.")
    group.add_argument("--seed", type=int, default=values["seed"], help="Same seed, same numbers on CPU.")
    group.add_argument("--num_train_epochs", type=int, default=values["num_train_epochs"])
    group.add_argument(
        "--max_train_steps",
        type=int,
        default=None,
        help="Stop after this many optimizer steps, even within an epoch (which is then evaluated and ends the run); "
        "the learning-rate schedule spans them. Default: --num_train_epochs whole epochs.",
    )
    group.add_argument("--per_device_train_batch_size", type=int, default=values["per_device_train_batch_size"])
    group.add_argument("--per_device_eval_batch_size", type=int, default=values["per_device_eval_batch_size"])
    group.add_argument("--learning_rate", type=float, default=values["learning_rate"])
    group.add_argument("--weight_decay", type=float, default=values["weight_decay"])
    group.add_argument("--optimizer", choices=["adam", "adamw"], default=values["optimizer"])
    group.add_argument(
        "--lr_scheduler_type",
        choices=["linear", "cosine", "constant", "constant_with_warmup"],
        default=values["lr_scheduler_type"],
    )
    group.add_argument("--num_warmup_steps", type=int, default=values["num_warmup_steps"])
    group.add_argument("--gradient_accumulation_steps", type=int, default=values["gradient_accumulation_steps"])
    group.add_argument("--max_grad_norm", type=float, default=values["max_grad_norm"], help="0 disables clipping.")
    group.add_argument("--mixed_precision", choices=["no", "bf16", "fp16"], default=values["mixed_precision"])
    group.add_argument(
        "--checkpointing_steps",
        type=str,
        default=None,
        help="Save the training state every N optimizer steps ('N') or at the end of every epoch ('epoch').",
    )
    group.add_argument(
        "--resume_from_checkpoint", type=str, default=None, help="A `step_N` or `epoch_N` folder to resume from."
    )
    group.add_argument(
        "--patience",
        type=int,
        default=values["patience"],
        help="Stop after this many epochs without improvement of the validation metric (0: never).",
    )
    group.add_argument("--push_to_hub", action="store_true", help="Push the final folder to the Hub.")
    group.add_argument("--hub_model_id", type=str, default=None, help="Repository id for --push_to_hub.")
    group.add_argument("--hub_token", type=str, default=None, help="Token for --push_to_hub (default: HF_TOKEN).")
    group.add_argument(
        "--report_to",
        type=str,
        default=values["report_to"],
        help=f"Trackers that log the training loss, learning rate and validation metrics: none, all, or a comma-separated "
        f"list ({', '.join(name for name in LoggerType.list() if name != 'all')}). File-based ones (tensorboard) write "
        f"into <output_dir>/{TRACKER_LOGS_NAME}/, which --push_to_hub uploads.",
    )


def check_training_args(args: argparse.Namespace) -> None:
    """Validate the shared flags before anything is written; raises `ValueError` naming the flag.

    Also refuses an --output_dir that is a file, or that would write into the script's own inputs (`check_output_dir`
    on whichever of --dataset, --embeddings and --model_name_or_path the script has).
    """
    for name in ("num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be at least 1, got {getattr(args, name)}.")
    max_train_steps = getattr(args, "max_train_steps", None)
    if max_train_steps is not None and max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be at least 1, got {max_train_steps}.")
    if args.gradient_accumulation_steps < 1:
        raise ValueError(f"--gradient_accumulation_steps must be at least 1, got {args.gradient_accumulation_steps}.")
    # `<=` comparisons are False for NaN: test finiteness first, or NaN weights follow from the first step.
    if not math.isfinite(args.learning_rate) or args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be a positive finite number, got {args.learning_rate}.")
    for name in ("weight_decay", "max_grad_norm", "item_embeddings_learning_rate"):
        value = getattr(args, name, None)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"--{name} must be a finite number, 0 or more, got {value}.")
    if args.num_warmup_steps < 0:
        raise ValueError(f"--num_warmup_steps must be 0 or more, got {args.num_warmup_steps}.")
    if args.checkpointing_steps not in (None, "epoch") and not (
        str(args.checkpointing_steps).isdigit() and int(args.checkpointing_steps) > 0
    ):
        raise ValueError(
            f"--checkpointing_steps must be a number of steps (1 or more) or 'epoch', got {args.checkpointing_steps!r}."
        )
    if args.resume_from_checkpoint and not Path(args.resume_from_checkpoint, TRAINER_STATE_NAME).is_file():
        raise ValueError(
            f"--resume_from_checkpoint {args.resume_from_checkpoint!r} is not a checkpoint folder "
            f"(no {TRAINER_STATE_NAME} in it)."
        )
    if args.patience < 0:
        raise ValueError(f"--patience must be 0 or more, got {args.patience}.")
    report_to_trackers(args.report_to)
    check_run_output_dir(args.output_dir, {name: getattr(args, name, None) for name in INPUT_FLAGS})


# Written into every --output_dir first (`make_accelerator`): the folder of an earlier run (to resume or redo) holds
# it, and no other non-empty folder is taken, whatever its files are called (a user's own config.json, README.md).
RUN_MARKER = ".umbert_run"


def check_run_output_dir(output_dir: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an --output_dir that overlaps an input, or that no training run wrote (`utils.paths.check_output`):
    the card, config and weights would replace the user's own README.md and files. An earlier run's folder (to
    resume or redo) is fine."""
    check_output(output_dir, inputs, existing="reuse", markers=(RUN_MARKER,), command="a training run")


def report_to_trackers(report_to: str | None) -> list[str] | None:
    """The trackers of `--report_to` for `Accelerator(log_with=...)`: None for `none`, else a list of names.

    Takes `none`, `all` (every tracker installed) or a comma-separated list; raises `ValueError` for an unknown
    tracker or one whose package is missing, which `Accelerator` would silently skip.
    """
    names = [name.strip() for name in (report_to or "none").split(",") if name.strip()]
    if names in ([], ["none"]):
        return None
    known = LoggerType.list()
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--report_to {report_to!r}: unknown tracker {unknown[0]!r}; choose none or from {known}.")
    installed = [tracker.value for tracker in get_available_trackers()]
    missing = [name for name in names if name != "all" and name not in installed]
    if missing:
        hint = " (pip install 'umbert-hf[tensorboard]')" if missing[0] == "tensorboard" else ""
        raise ValueError(f"--report_to {report_to!r}: the {missing[0]} package is not installed{hint}.")
    if "all" in names and not installed:
        logger.warning("--report_to all: no tracker is installed, nothing will be logged.")
    return names


def tracker_config(args: argparse.Namespace) -> dict[str, bool | int | float | str]:
    """The run's flags for `init_trackers`, as the card shows them: no token or output folder, local paths by their
    base name (the logs are pushed with the model), and every value a scalar or a string (TensorBoard's hparams)."""
    config = {}
    for key, value in vars(args).items():
        if key in FLAGS_NOT_IN_CARD:
            continue
        if isinstance(value, str) and "/" in value:
            value = shareable_name(value)
        config[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return config


__all__ = [
    "CURVES_NAME",
    "FLAGS_NOT_IN_CARD",
    "HISTORY_NAME",
    "INPUT_FLAGS",
    "METRICS_NAME",
    "RUN_MARKER",
    "TRACKER_LOGS_NAME",
    "add_training_args",
    "check_run_output_dir",
    "check_training_args",
    "report_to_trackers",
    "tracker_config",
]
