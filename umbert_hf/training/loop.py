"""The one training loop of the package: Accelerate, checkpoints, resumption, early stopping, curves and saving.

Every script in `training_scripts/` parses its flags with `training.arguments.add_training_args`, builds its data and
model, and hands a `training_step` and an `evaluate` function to `fit`; `finish_run` saves, writes the card and pushes.
"""

import argparse
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..evaluation.metrics import VALIDATION_PREFIX
from ..evaluation.modelcard import make_model_card
from ..utils.files import atomic_path, write_json
from ..utils.hub import push_folder_to_hub
from ..utils.logging import get_logger
from .arguments import (
    CURVES_NAME,
    FLAGS_NOT_IN_CARD,
    HISTORY_NAME,
    METRICS_NAME,
    RUN_MARKER,
    TRACKER_LOGS_NAME,
    report_to_trackers,
    tracker_config,
)
from .checkpoints import (
    TrainerState,
    load_checkpoint,
    save_checkpoint,
    state_dict_on_cpu,
)

logger = get_logger(__name__)


class TrainingDivergedError(ValueError):
    """The training loss, or the monitored validation metric of every epoch, is NaN or infinite.

    Raised by `fit` instead of saving weights that are NaN: such a run has no model worth keeping.
    """


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
        Path(args.output_dir, RUN_MARKER).touch()
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
    num_training_steps = planned_steps(math.ceil(steps_per_process / args.gradient_accumulation_steps), args)
    # The prepared scheduler steps once per process at every optimizer step.
    optimizer, lr_scheduler = create_optimizer_and_scheduler(
        model, args, num_training_steps * accelerator.num_processes
    )
    model, optimizer, train_dataloader, lr_scheduler, *others = accelerator.prepare(
        model, optimizer, train_dataloader, lr_scheduler, *others
    )
    return (model, optimizer, train_dataloader, lr_scheduler, *others)


def planned_steps(updates_per_epoch: int, args: argparse.Namespace) -> int:
    """The optimizer steps of a run: `--num_train_epochs` epochs, at most `--max_train_steps`."""
    steps = args.num_train_epochs * updates_per_epoch
    max_train_steps = getattr(args, "max_train_steps", None)
    return steps if max_train_steps is None else min(steps, max_train_steps)


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
        state, best_weights = load_checkpoint(accelerator, model, args.resume_from_checkpoint, args)
    step_interval = int(args.checkpointing_steps) if str(args.checkpointing_steps).isdigit() else None
    updates_per_epoch = math.ceil(len(train_dataloader) / args.gradient_accumulation_steps)
    total_steps = planned_steps(updates_per_epoch, args)
    progress = tqdm(
        total=total_steps,
        initial=state.global_step,
        disable=not accelerator.is_local_main_process,
        desc="training",
    )
    if state.stopped_early:
        progress.close()
        return _finish_fit(accelerator, model, state, best_weights, metric_name, args)

    try:
        for epoch in range(state.epoch, args.num_train_epochs):
            if state.global_step >= total_steps and not state.batches_done_in_epoch:  # resumed after the last epoch
                break
            model.train()
            _set_epoch(train_dataloader, epoch)
            batches = train_dataloader
            if state.batches_done_in_epoch:
                batches = accelerator.skip_first_batches(train_dataloader, state.batches_done_in_epoch)
            step_loss_sum, step_batches = 0.0, 0  # the micro-batches of one optimizer step
            for batch in batches:
                if state.global_step >= total_steps:  # resumed from the last step: only the evaluation is left
                    break
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
                        save_checkpoint(
                            accelerator, args.output_dir, f"step_{state.global_step}", state, best_weights, args
                        )
                    if state.global_step >= total_steps:
                        break  # --max_train_steps: this epoch ends here, and is evaluated

            metrics = evaluate(model)
            train_loss = accelerator.reduce(
                torch.tensor(state.epoch_loss_sum / max(1, state.epoch_loss_count), device=accelerator.device), "mean"
            ).item()
            entry = {"epoch": epoch + 1, "train_loss": train_loss, **metrics}
            state.history.append(entry)
            if metric_name not in metrics:
                raise ValueError(
                    f"evaluate() returned {sorted(metrics)}, without the monitored metric {metric_name!r}."
                )
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
                save_checkpoint(accelerator, args.output_dir, f"epoch_{epoch + 1}", state, best_weights, args)
            if state.stopped_early:
                logger.info(f"Early stopping: no improvement of {metric_name} for {args.patience} epochs.")
                break
            if state.global_step >= total_steps:
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
        flags = {key: value for key, value in vars(args).items() if key not in FLAGS_NOT_IN_CARD}
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
            # checkpoints, an Aim repository, the marker of this machine's run folder
            not_pushed = ["epoch_*", "step_*", f"{TRACKER_LOGS_NAME}/.aim/*", RUN_MARKER]
            commit = push_folder_to_hub(args.output_dir, repo_id, token=args.hub_token, ignore_patterns=not_pushed)
            logger.info(f"Pushed {args.output_dir} to {commit.repo_url.repo_id}")
    accelerator.wait_for_everyone()
    accelerator.end_training()


__all__ = [
    "EpochShuffleSampler",
    "FitResult",
    "TrainingDivergedError",
    "create_optimizer_and_scheduler",
    "finish_run",
    "fit",
    "make_accelerator",
    "make_dataloader",
    "planned_steps",
    "plot_curves",
    "prepare_for_training",
]
