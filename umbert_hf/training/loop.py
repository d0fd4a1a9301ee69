"""The one training loop of the package: Accelerate, checkpoints, resumption, early stopping, curves and saving.

Every script in `training_scripts/` parses its flags with `add_training_args`, builds its data and model, and hands
a `training_step` and an `evaluate` function to `fit`; `finish_run` saves, writes the card and pushes.
"""

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.tracking import get_available_trackers
from accelerate.utils import DistributedDataParallelKwargs, LoggerType, ProjectConfiguration, set_seed
from safetensors import SafetensorError
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..apps.modelcard import make_model_card
from ..data.extraction import shareable_name
from ..evaluation.metrics import VALIDATION_PREFIX
from ..utils.files import atomic_path, write_json
from ..utils.hub import push_folder_to_hub
from ..utils.logging import get_logger
from .checkpoints import (
    TRAINER_STATE_NAME,
    TrainerState,
    first_line,
    load_checkpoint,
    save_checkpoint,
    state_dict_on_cpu,
)

logger = get_logger(__name__)

HISTORY_NAME = "history.json"
CURVES_NAME = "training_curves.png"
METRICS_NAME = "metrics.json"
# Where --report_to trackers that write files (TensorBoard, Aim) log, as the Trainer's `runs/`: pushed with the model,
# so the Hub shows the TensorBoard curves under "Training metrics" (an Aim repository is not pushed).
TRACKER_LOGS_NAME = "runs"
# Flags of the scripts naming local inputs that --output_dir must not overwrite (see `check_output_dir`).
INPUT_FLAGS = ("dataset", "embeddings", "model_name_or_path")


class TrainingDivergedError(ValueError):
    """The training loss, or the monitored validation metric of every epoch, is NaN or infinite.

    Raised by `fit` instead of saving weights that are NaN: such a run has no model worth keeping.
    """


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
    _check_output_dir_can_be_a_folder(args.output_dir)
    check_output_dir(args.output_dir, {name: getattr(args, name, None) for name in INPUT_FLAGS})
    _check_output_dir_is_ours(args.output_dir)


# What a training run writes into its --output_dir; a non-empty folder holding none of them belongs to the user.
RUN_FILES = ("history.json", METRICS_NAME, "config.json", CURVES_NAME, TRAINER_STATE_NAME, TRACKER_LOGS_NAME)


def _check_output_dir_is_ours(output_dir: str | os.PathLike) -> None:
    """Refuse a non-empty --output_dir that no training run wrote: the card, config and weights would replace the
    user's own README.md and files. An earlier run's folder (to resume or redo) is fine."""
    path = Path(output_dir)
    if not path.is_dir():
        return
    entries = [entry.name for entry in path.iterdir()]
    ours = any(name in RUN_FILES or name.startswith(("step_", "epoch_", ".tmp-")) for name in entries)
    if entries and not ours:
        raise ValueError(
            f"--output_dir {str(output_dir)!r} holds files that no training run wrote (e.g. {sorted(entries)[0]!r}); "
            "choose a new or empty folder."
        )


def _check_output_dir_can_be_a_folder(output_dir: str | os.PathLike) -> None:
    """`os.makedirs` would fail with a raw `FileExistsError`/`NotADirectoryError` later, after the data loaded."""
    path = Path(output_dir)
    existing = next((folder for folder in (path, *path.parents) if folder.exists()), None)
    if existing is None or existing.is_dir():
        return
    if existing == path:
        raise ValueError(f"--output_dir {str(output_dir)!r} is a file, not a folder.")
    raise ValueError(f"--output_dir {str(output_dir)!r} cannot be created: {str(existing)!r} is a file.")


def check_output_dir(output_dir: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an --output_dir that would write over an input; raises `ValueError` naming both flags.

    `inputs` maps flag names (`"dataset"`, `"embeddings"`, ...) to their values; values that are not existing local
    paths (Hub ids, `None`) are skipped. The output may not be, contain or lie inside an input folder: the model card
    would replace a dataset's README (whose configs `datasets` reads), the weights a model being fine-tuned, and
    `--push_to_hub` would upload the inputs. Nor may it be the folder of an input file (an embeddings table).
    """
    output = Path(os.path.realpath(output_dir))
    for name, value in inputs.items():
        if value is None or not os.path.exists(value):
            continue
        flag, source = f"--{name.lstrip('-')}", Path(os.path.realpath(value))
        if source.is_dir():
            if output == source:
                relation = "is"
            elif source in output.parents:
                relation = "is inside"
            elif output in source.parents:
                relation = "contains"
            else:
                continue
            raise ValueError(
                f"--output_dir {str(output_dir)!r} {relation} the {flag} folder {str(value)!r}: training would "
                "write into its own input; choose another --output_dir."
            )
        if output in (source, source.parent):
            raise ValueError(
                f"--output_dir {str(output_dir)!r} is the folder of {flag} {str(value)!r}: training would write "
                "next to its own input; choose another --output_dir."
            )


def check_output_path(output: str | os.PathLike, inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse an output *file* that is an input file or lies inside an input folder (a dataset, an encoder): a
    metrics file or an embeddings table written there would replace or add to what the user gave as input."""
    target = Path(os.path.realpath(output))
    for name, value in inputs.items():
        if value is None or not os.path.exists(value):
            continue
        source = Path(os.path.realpath(value))
        if target == source or (source.is_dir() and source in target.parents):
            raise ValueError(
                f"{str(output)!r} is or lies inside the --{name} {str(value)!r}: nothing is written into an input; "
                "choose another output path."
            )


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
        if key in _FLAGS_NOT_IN_CARD:
            continue
        if isinstance(value, str) and "/" in value:
            value = shareable_name(value)
        config[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return config


def make_accelerator(args: argparse.Namespace) -> Accelerator:
    """An `Accelerator` configured from the shared flags, with the seed set on every process.

    `--report_to` trackers are started by `fit`; file-based ones log into `<output_dir>/runs/`.
    """
    # Catalogue buffers are constant (no broadcast needed); MASK tokens sit unused in reconstruction pre-training.
    ddp_kwargs = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=False)
    accelerator = Accelerator(
        kwargs_handlers=[ddp_kwargs],
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=report_to_trackers(args.report_to),
        project_config=ProjectConfiguration(
            project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, TRACKER_LOGS_NAME)
        ),
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()
    return accelerator


class EpochShuffleSampler(torch.utils.data.Sampler[int]):
    """Shuffles with a generator seeded by (seed, epoch): the order of an epoch never depends on what ran before.

    That makes a run resumed from a mid-epoch checkpoint see exactly the batches the uninterrupted run saw.
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True):
        self.num_samples, self.seed, self.shuffle, self.epoch = num_samples, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.num_samples))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())


def make_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader over an `EpochShuffleSampler` (deterministic per epoch, resumable).

    `drop_last` drops an incomplete final batch (when there is at least one full batch): in-batch contrastive
    losses learn nothing from a batch of one outfit.
    """
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(dataset), seed, shuffle=shuffle),
        collate_fn=collate_fn,
        num_workers=num_workers,
        drop_last=drop_last and len(dataset) >= batch_size,
        # Its own generator: starting an iterator would otherwise draw from the global RNG, shifting the dropout
        # masks of a resumed run (which starts its iterator after the checkpoint's RNG state was restored).
        generator=torch.Generator().manual_seed(seed),
    )


def create_optimizer_and_scheduler(
    model: torch.nn.Module, args: argparse.Namespace, num_training_steps: int
) -> tuple[torch.optim.Optimizer, Any]:
    """Adam or AdamW with no weight decay on biases, norms and 1-D parameters, plus the learning-rate schedule.

    WumBERT's item table gets its own group: no weight decay (it would shrink every item towards zero) and
    `--item_embeddings_learning_rate` (0 freezes it).
    """
    decay, no_decay, table = [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if name.endswith("item_embeddings.weight"):
            table.append(parameter)
        else:
            (no_decay if parameter.dim() < 2 or "norm" in name.lower() else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if table:
        table_lr = getattr(args, "item_embeddings_learning_rate", None)
        table_lr = args.learning_rate if table_lr is None else table_lr
        groups.append({"params": table, "weight_decay": 0.0, "lr": table_lr})
    optimizer_class = torch.optim.AdamW if args.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(groups, lr=args.learning_rate)
    scheduler = get_scheduler(
        args.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=args.num_warmup_steps,
        num_training_steps=num_training_steps,
    )
    return optimizer, scheduler


def prepare_for_training(
    accelerator: Accelerator, model: torch.nn.Module, train_dataloader: torch.utils.data.DataLoader, args, *others
) -> tuple:
    """Optimizer and schedule sized to this run's optimizer steps, then one `accelerator.prepare` of everything.

    Returns `(model, optimizer, train_dataloader, lr_scheduler, *others)` prepared (e.g. an evaluation DataLoader).
    """
    steps_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
    num_training_steps = args.num_train_epochs * math.ceil(steps_per_process / args.gradient_accumulation_steps)
    # The prepared scheduler steps once per process at every optimizer step.
    optimizer, lr_scheduler = create_optimizer_and_scheduler(
        model, args, num_training_steps * accelerator.num_processes
    )
    model, optimizer, train_dataloader, lr_scheduler, *others = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler, *others
    )
    return (model, optimizer, train_dataloader, lr_scheduler, *others)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int | None
    best_metric: float | None
    best_metrics: dict[str, float]
    stopped_early: bool
    global_step: int


def _is_better(value: float, best: float | None, greater_is_better: bool) -> bool:
    """Whether `value` beats `best`; NaN or infinity never does, so a diverged epoch is never kept as the best."""
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best if greater_is_better else value < best


def plot_curves(history: list[dict[str, float]], path: str | os.PathLike) -> None:
    """Loss and metric curves per epoch, one panel per quantity, as a PNG (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key in history[0] if key != "epoch"] if history else []
    if not keys:
        return
    columns = min(3, len(keys))
    rows = math.ceil(len(keys) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    epochs = [entry["epoch"] for entry in history]
    for axis, key in zip(axes.flat, keys):
        axis.plot(epochs, [entry.get(key, float("nan")) for entry in history], marker="o")
        axis.set_title(key)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(keys) :]:
        axis.axis("off")
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")  # the temporary name has no `.png` suffix
    finally:
        plt.close(figure)


def fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    train_dataloader: torch.utils.data.DataLoader,
    *,
    training_step: Callable[[torch.nn.Module, Any], torch.Tensor],
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    metric_name: str,
    greater_is_better: bool,
    args: argparse.Namespace,
) -> FitResult:
    """Train with the objects returned by `accelerator.prepare`, evaluating after every epoch.

    Keeps the weights of the best epoch (by `metric_name`) and loads them back into `model` at the end; stops after
    `args.patience` epochs without improvement; saves `step_N`/`epoch_N` checkpoints and resumes from one (refusing
    an incomplete or foreign one, see `check_checkpoint`); writes `history.json` and `training_curves.png` into
    `args.output_dir` after every epoch.

    Starts the `--report_to` trackers (project: the output folder's name; config: `tracker_config`) and logs
    `train/loss` and `train/learning_rate` at every optimizer step, `train/epoch`, `train/epoch_loss` and `val/<metric>`
    after every epoch (without a `val_` prefix of its own), all at the optimizer step (a resumed run continues the
    steps); `finish_run` ends them.

    Raises `TrainingDivergedError` at the first NaN or infinite training loss, and at the end when the monitored
    metric was NaN or infinite in every epoch (such an epoch is never the best): a diverged model is never kept.
    """
    state, best_weights = TrainerState(), None
    accelerator.init_trackers(Path(os.path.abspath(args.output_dir)).name, config=tracker_config(args))
    if args.resume_from_checkpoint:
        state, best_weights = load_checkpoint(accelerator, model, args.resume_from_checkpoint)
    step_interval = int(args.checkpointing_steps) if str(args.checkpointing_steps).isdigit() else None
    updates_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    progress = tqdm(
        total=updates_per_epoch * args.num_train_epochs,
        initial=state.global_step,
        disable=not accelerator.is_local_main_process,
        desc="training",
    )
    if state.stopped_early:
        progress.close()
        return _finish_fit(accelerator, model, state, best_weights, metric_name, args)

    try:
        for epoch in range(state.epoch, args.num_train_epochs):
            model.train()
            _set_epoch(train_dataloader, epoch)
            batches = train_dataloader
            if state.batches_done_in_epoch:
                batches = accelerator.skip_first_batches(train_dataloader, state.batches_done_in_epoch)
            step_loss_sum, step_batches = 0.0, 0  # the micro-batches of one optimizer step
            for batch in batches:
                with accelerator.accumulate(model):
                    loss = training_step(model, batch)
                    # The `.item()` the running mean needs anyway: checked before a NaN reaches the weights.
                    loss_value = loss.detach().float().item()
                    if not math.isfinite(loss_value):
                        raise TrainingDivergedError(
                            f"Training diverged at epoch {epoch + 1}, optimizer step {state.global_step + 1}: the training "
                            f"loss is {loss_value}; try a lower --learning_rate (this run: {args.learning_rate:g})."
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and args.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                    optimizer.step()
                    lr_scheduler.step()
                    optimizer.zero_grad()
                state.batches_done_in_epoch += 1
                state.epoch_loss_sum += loss_value
                state.epoch_loss_count += 1
                step_loss_sum, step_batches = step_loss_sum + loss_value, step_batches + 1
                if accelerator.sync_gradients:
                    state.global_step += 1
                    # The main process's loss (a reduce at every step would synchronise the processes for a plot).
                    step_logs = {"train/loss": step_loss_sum / step_batches, "train/learning_rate": _lr(optimizer)}
                    accelerator.log(step_logs, step=state.global_step)
                    step_loss_sum, step_batches = 0.0, 0
                    progress.update(1)
                    progress.set_postfix(loss=f"{loss_value:.4f}", epoch=epoch + 1)
                    if step_interval and state.global_step % step_interval == 0:
                        save_checkpoint(accelerator, args.output_dir, f"step_{state.global_step}", state, best_weights)

            metrics = evaluate(model)
            train_loss = accelerator.reduce(
                torch.tensor(state.epoch_loss_sum / max(1, state.epoch_loss_count), device=accelerator.device), "mean"
            ).item()
            entry = {"epoch": epoch + 1, "train_loss": train_loss, **metrics}
            state.history.append(entry)
            if metric_name not in metrics:
                raise KeyError(f"evaluate() returned {sorted(metrics)}, without the monitored metric {metric_name!r}.")
            if _is_better(metrics[metric_name], state.best_metric, greater_is_better):
                state.best_metric, state.best_epoch = metrics[metric_name], epoch + 1
                state.epochs_without_improvement = 0
                best_weights = state_dict_on_cpu(accelerator.unwrap_model(model))
            else:
                state.epochs_without_improvement += 1
            logger.info(json.dumps(entry), main_process_only=True)
            validation_logs = {f"val/{key.removeprefix(VALIDATION_PREFIX)}": value for key, value in metrics.items()}
            epoch_logs = {"train/epoch": epoch + 1, "train/epoch_loss": train_loss, **validation_logs}
            accelerator.log(epoch_logs, step=state.global_step)
            state.epoch, state.batches_done_in_epoch = epoch + 1, 0
            state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
            state.stopped_early = 0 < args.patience <= state.epochs_without_improvement
            if accelerator.is_main_process:
                write_json(Path(args.output_dir, HISTORY_NAME), state.history)
                plot_curves(state.history, Path(args.output_dir, CURVES_NAME))
            if args.checkpointing_steps == "epoch":
                save_checkpoint(accelerator, args.output_dir, f"epoch_{epoch + 1}", state, best_weights)
            if state.stopped_early:
                logger.info(f"Early stopping: no improvement of {metric_name} for {args.patience} epochs.")
                break
    finally:
        progress.close()  # before an error is printed: a bar left open is redrawn after it
    return _finish_fit(accelerator, model, state, best_weights, metric_name, args)


def _lr(optimizer: torch.optim.Optimizer) -> float:
    """The learning rate of the first parameter group (WumBERT's item table may have its own)."""
    return float(optimizer.param_groups[0]["lr"])


def _set_epoch(dataloader: torch.utils.data.DataLoader, epoch: int) -> None:
    """Tell the sampler which epoch starts (Accelerate's prepared loaders forward it to our sampler)."""
    if hasattr(dataloader, "set_epoch"):
        dataloader.set_epoch(epoch)
    elif isinstance(getattr(dataloader, "sampler", None), EpochShuffleSampler):
        dataloader.sampler.set_epoch(epoch)


def _finish_fit(
    accelerator: Accelerator,
    model: torch.nn.Module,
    state: TrainerState,
    best_weights: dict | None,
    metric_name: str,
    args: argparse.Namespace,
) -> FitResult:
    """Load the best epoch's weights back; with no best epoch (the metric was never finite), refuse the run."""
    if state.best_epoch is None and state.history:
        values = sorted({str(entry.get(metric_name)) for entry in state.history})
        raise TrainingDivergedError(
            f"Training diverged: validation {metric_name} was {' or '.join(values)} in all {len(state.history)} "
            f"epochs, so no epoch gave a model to keep; try a lower --learning_rate (this run: {args.learning_rate:g})."
        )
    if best_weights is not None:
        unwrapped = accelerator.unwrap_model(model)
        device = next(unwrapped.parameters()).device
        unwrapped.load_state_dict({name: tensor.to(device) for name, tensor in best_weights.items()})
    best_metrics = next((entry for entry in state.history if entry["epoch"] == state.best_epoch), {})
    return FitResult(
        history=state.history,
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        best_metrics=dict(best_metrics),
        stopped_early=state.stopped_early,
        global_step=state.global_step,
    )


# Flags left out of a model card's hyperparameters: where the run wrote or resumed from, and the Hub token.
_FLAGS_NOT_IN_CARD = {"output_dir", "hub_token", "push_to_hub", "resume_from_checkpoint"}


def finish_run(
    accelerator: Accelerator,
    model: torch.nn.Module,
    args: argparse.Namespace,
    *,
    metrics: dict[str, Any],
    card_metrics: dict[str, float],
    chance_levels: dict[str, float],
    card_extra: dict[str, Any] | None = None,
    hyperparameters: dict[str, Any] | None = None,
    extra_files: dict[str, Any] | None = None,
) -> None:
    """The end of every training run: save the final model (`save_pretrained`), `metrics.json` and its model card
    (`README.md`), push the folder when `--push_to_hub` (without checkpoints; with the TensorBoard logs of `runs/`,
    as the Trainer does), and end the trackers `fit` started (`end_training`, once).

    The card (of the model's `model_type`) shows `card_metrics` beside their `chance_levels`, and as hyperparameters
    the run's flags (without paths and tokens) plus `hyperparameters`; `card_extra` holds further template variables
    (see `make_model_card`). Everything is written by the main process, after every process has finished.
    """
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(args.output_dir)
        write_json(Path(args.output_dir, METRICS_NAME), metrics)
        for name, payload in (extra_files or {}).items():
            write_json(Path(args.output_dir, name), payload)
        flags = {key: value for key, value in vars(args).items() if key not in _FLAGS_NOT_IN_CARD}
        card = make_model_card(
            unwrapped.config.model_type,
            model_name=args.hub_model_id or os.path.basename(os.path.normpath(args.output_dir)),
            dataset_name=str(args.dataset),
            metrics=card_metrics,
            hyperparameters={**flags, **(hyperparameters or {})},
            base_model=getattr(args, "model_name_or_path", None),
            chance_levels=chance_levels,
            extra=card_extra,
        )
        card.save(str(Path(args.output_dir, "README.md")))
        if args.push_to_hub:
            repo_id = args.hub_model_id or Path(args.output_dir).name
            not_pushed = ["epoch_*", "step_*", f"{TRACKER_LOGS_NAME}/.aim/*"]  # checkpoints, an Aim repository
            commit = push_folder_to_hub(args.output_dir, repo_id, token=args.hub_token, ignore_patterns=not_pushed)
            logger.info(f"Pushed {args.output_dir} to {commit.repo_url.repo_id}")
    accelerator.wait_for_everyone()
    accelerator.end_training()


# What a script reports as one `error: ...` line: bad flags and data (`ValueError`, including
# `TrainingDivergedError`), and missing or unreadable files, Hub ids that do not resolve, a full disk (`OSError`).
# A corrupt or truncated safetensors file (a model the user named) is bad input too, not a bug.
USER_ERRORS = (ValueError, OSError, SafetensorError)


def _show_info_messages() -> None:
    """Show the package's INFO messages (a line per epoch, early stopping, trials) on stderr, as the Hugging Face
    example scripts do; other libraries stay at WARNING. A root handler set up before (by the caller, pytest) is kept.
    """
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S")
    logging.getLogger("umbert_hf").setLevel(logging.INFO)


def run_script(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> int:
    """Run a training script's `main(argv)`; returns its exit status, 0 or 2 for a user error.

    A user error (`USER_ERRORS`, or a `KeyError` whose message is a sentence, like `fit`'s missing metric) prints
    one `error: ...` line on stderr instead of a traceback; anything else is a bug and raises. Use it as
    `sys.exit(run_script(main))`.
    """
    _show_info_messages()
    try:
        main(argv)
    except KeyError as error:
        message = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else ""
        if " " not in message.strip():  # a bare missing key is a bug
            raise
        print(f"error: {message.strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except USER_ERRORS as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "EpochShuffleSampler",
    "FitResult",
    "TrainingDivergedError",
    "add_training_args",
    "check_output_dir",
    "check_output_path",
    "check_training_args",
    "create_optimizer_and_scheduler",
    "finish_run",
    "fit",
    "make_accelerator",
    "make_dataloader",
    "plot_curves",
    "prepare_for_training",
    "report_to_trackers",
    "run_script",
    "tracker_config",
]
