"""Checkpoints of the training loop: saved atomically, checked before resuming, loaded exactly.

A checkpoint is `Accelerator.save_state` plus the loop's own `TrainerState` and the best weights so far, written into
a temporary folder installed once complete; `checkpoint_files.json` lists each file's size, so `check_checkpoint`
tells a truncated or foreign checkpoint before `Accelerator.load_state` fails on it with an error naming no file.
"""

import argparse
import json
import os
import pickle
import shutil
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from accelerate.utils import load as accelerate_load
from accelerate.utils.constants import (
    MODEL_NAME,
    OPTIMIZER_NAME,
    RNG_STATE_NAME,
    SAFE_MODEL_NAME,
    SCALER_NAME,
    SCHEDULER_NAME,
)
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..utils.files import install_folder, write_json
from ..utils.logging import get_logger
from ..utils.paths import first_line, is_local_path, shareable_name

logger = get_logger(__name__)

TRAINER_STATE_NAME = "trainer_state.json"
BEST_WEIGHTS_NAME = "best_weights.safetensors"
CHECKPOINT_FILES_NAME = "checkpoint_files.json"


@dataclass
class TrainerState:
    """What `fit` needs beyond the Accelerate state to resume exactly where a run stopped."""

    epoch: int = 0
    batches_done_in_epoch: int = 0
    global_step: int = 0
    epoch_loss_sum: float = 0.0
    epoch_loss_count: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False


def state_dict_on_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in model.state_dict().items()}


# The flags of the run, saved with each checkpoint: resuming with any other value (a learning rate, an embeddings
# table) would silently train on the old one while the card records the new one. These may change on resume.
RUN_FLAGS_NAME = "run_flags.json"
FLAGS_FREE_ON_RESUME = frozenset(
    {
        "output_dir",
        "resume_from_checkpoint",
        "push_to_hub",
        "hub_model_id",
        "hub_token",
        "report_to",
        "checkpointing_steps",
    }
)


def run_flags(args: argparse.Namespace | None) -> dict[str, Any]:
    """The flags a resumed run must share with the run that saved the checkpoint (JSON values). A local path counts
    by its base name (`shareable_name`): the dataset may move with its run, not become another one."""
    flags = {} if args is None else vars(args)
    recorded = {}
    for name, value in sorted(flags.items()):
        if name in FLAGS_FREE_ON_RESUME:
            continue
        if isinstance(value, os.PathLike) or (isinstance(value, str) and is_local_path(value)):
            value = shareable_name(value)
        recorded[name] = value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
    return recorded


def check_resume_flags(path: str | os.PathLike, args: argparse.Namespace | None) -> None:
    """`ValueError` naming the first flag whose value differs from the run that saved the checkpoint at `path`."""
    saved_file = Path(path, RUN_FLAGS_NAME)
    if args is None or not saved_file.is_file():  # a checkpoint saved before the flags were recorded
        return
    saved, current = json.loads(saved_file.read_text()), run_flags(args)
    for name in sorted(set(saved) | set(current)):
        if saved.get(name) != current.get(name):
            raise ValueError(
                f"--resume_from_checkpoint {str(path)!r}: --{name} is {current.get(name)!r} but the run that saved "
                f"it used {saved.get(name)!r}; resume with the same flags, or start a new --output_dir."
            )


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str,
    name: str,
    state: TrainerState,
    best_weights: dict | None,
    args: argparse.Namespace | None = None,
) -> None:
    """`Accelerator.save_state` into a temporary folder renamed to `<output_dir>/<name>` once complete.

    `checkpoint_files.json` lists the size of every file, so `check_checkpoint` can tell a truncated one; the run's
    flags (`run_flags.json`) let a resumed run refuse other values (`check_resume_flags`).
    """
    final = Path(output_dir, name)
    temporary = Path(output_dir, f".tmp-{name}")
    if accelerator.is_main_process and temporary.exists():
        shutil.rmtree(temporary)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(temporary))
    accelerator.wait_for_everyone()  # every process has written its `random_states_<index>.pkl`
    if accelerator.is_main_process:
        write_json(temporary / TRAINER_STATE_NAME, asdict(state))
        if args is not None:
            write_json(temporary / RUN_FLAGS_NAME, run_flags(args))
        if best_weights is not None:
            save_file(best_weights, str(temporary / BEST_WEIGHTS_NAME))
        sizes = {path.name: path.stat().st_size for path in sorted(temporary.iterdir()) if path.is_file()}
        write_json(temporary / CHECKPOINT_FILES_NAME, sizes)
        install_folder(temporary, final)  # an older checkpoint of that name is removed only once this one is in place
    accelerator.wait_for_everyone()


def _weights_mismatch(saved: dict[str, list[int]], model_state: dict[str, torch.Tensor]) -> str | None:
    """How saved weight shapes differ from a model's state dict, or None when they fit.

    Safetensors files leave out all but one of tied weights, so a model tensor is missing only when no tensor
    sharing its memory was saved.
    """
    for key, shape in saved.items():
        if key not in model_state:
            return f"holds {key!r}, which this model lacks"
        if list(model_state[key].shape) != list(shape):
            return f"holds {key!r} of shape {list(shape)}, this model {list(model_state[key].shape)}"
    saved_memory = {model_state[key].data_ptr() for key in saved}
    missing = [key for key, tensor in model_state.items() if key not in saved and tensor.data_ptr() not in saved_memory]
    if missing:
        return f"lacks {len(missing)} tensors of this model, e.g. {missing[0]!r}"
    return None


def check_checkpoint(path: str | os.PathLike, accelerator: Accelerator, model: torch.nn.Module | None = None) -> None:
    """Refuse a checkpoint folder that `fit` cannot resume from exactly; raises `ValueError` naming the file.

    `Accelerator.load_state` fails on a truncated file with an error naming no file, on another model's weights with
    a raw size mismatch, and skips an unreadable RNG state with a log line (the resumed run then silently differs
    from the uninterrupted one). So, before it runs: every file of `checkpoint_files.json` is there with its size,
    every file `load_state` reads (for the objects `accelerator` prepared) is there and opens, the RNG state of every
    process unpickles, and the weights have the shapes of the prepared `model` (default: the first one).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a folder.")

    def corrupt(name: str, problem: str) -> ValueError:
        return ValueError(f"checkpoint {str(path)!r} is incomplete or corrupt: {name} {problem}.")

    def read_json(name: str) -> Any:
        try:
            return json.loads(Path(folder, name).read_text())
        except (OSError, ValueError) as error:
            raise corrupt(name, f"is not readable JSON ({first_line(error)})") from error

    def numbered(stem: str, index: int, suffix: str) -> str:
        return f"{stem}{f'_{index}' if index else ''}{suffix}"

    sizes = read_json(CHECKPOINT_FILES_NAME) if Path(folder, CHECKPOINT_FILES_NAME).exists() else {}
    if not isinstance(sizes, dict):
        raise corrupt(CHECKPOINT_FILES_NAME, "is not a list of file sizes")
    for name, size in sizes.items():
        if not Path(folder, name).is_file():
            raise corrupt(name, "is missing")
        if Path(folder, name).stat().st_size != size:
            raise corrupt(name, f"has {Path(folder, name).stat().st_size} bytes where {size} were written")

    try:
        state = TrainerState(**read_json(TRAINER_STATE_NAME))
    except TypeError as error:
        raise corrupt(TRAINER_STATE_NAME, f"is not a trainer state ({first_line(error)})") from error
    if accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP, DistributedType.MEGATRON_LM):
        return  # sharded layouts of their own: only the listed sizes and the trainer state are checked
    model_files = []
    for index in range(len(accelerator._models)):
        safe, legacy = numbered(SAFE_MODEL_NAME, index, ".safetensors"), numbered(MODEL_NAME, index, ".bin")
        model_files.append(legacy if Path(folder, legacy).exists() and not Path(folder, safe).exists() else safe)
    random_states = [f"{RNG_STATE_NAME}_{index}.pkl" for index in range(accelerator.num_processes)]
    torch_files = [numbered(OPTIMIZER_NAME, index, ".bin") for index in range(len(accelerator._optimizers))]
    torch_files += [numbered(SCHEDULER_NAME, index, ".bin") for index in range(len(accelerator._schedulers))]
    torch_files += [SCALER_NAME] if accelerator.scaler is not None else []
    torch_files += [f"custom_checkpoint_{index}.pkl" for index in range(len(accelerator._custom_objects))]
    torch_files += [name for name in model_files if name.endswith(".bin")]
    best = [BEST_WEIGHTS_NAME] if state.best_epoch is not None else []
    for name in [*model_files, *torch_files, *random_states, *best]:
        if not Path(folder, name).is_file():
            raise corrupt(name, "is missing")
        if Path(folder, name).stat().st_size == 0:
            raise corrupt(name, "is empty")

    for name in torch_files:  # `torch.save` writes zip archives: a truncated one has no central directory
        try:
            with zipfile.ZipFile(Path(folder, name)) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as error:
            raise corrupt(name, f"is truncated or not a PyTorch file ({first_line(error)})") from error
    for name in random_states:
        try:
            states = accelerate_load(Path(folder, name))  # as `load_state` does
        except Exception as error:  # any unpickling failure: `load_state` would swallow it
            raise corrupt(name, f"does not unpickle ({first_line(error)})") from error
        if not isinstance(states, dict) or "torch_manual_seed" not in states:
            raise corrupt(name, "holds no random states")

    saved_shapes = {}
    for name in [*model_files, *best]:
        if name.endswith(".safetensors"):
            try:
                with safe_open(str(Path(folder, name)), framework="pt") as handle:
                    saved_shapes[name] = {key: handle.get_slice(key).get_shape() for key in handle.keys()}
            except (OSError, SafetensorError) as error:
                raise corrupt(name, f"does not open ({first_line(error)})") from error
    models = list(accelerator._models)
    model = model if model is not None else (models[0] if models else None)
    expected = {name: models[index].state_dict() for index, name in enumerate(model_files) if name in saved_shapes}
    if model is not None and best:
        expected[BEST_WEIGHTS_NAME] = accelerator.unwrap_model(model).state_dict()
    for name, model_state in expected.items():
        problem = _weights_mismatch(saved_shapes[name], model_state)
        if problem:
            raise ValueError(
                f"checkpoint {str(path)!r} was written for another model: its {name} {problem}; resume with the "
                "model flags and inputs of the run that wrote it."
            )


def load_checkpoint(
    accelerator: Accelerator, model: torch.nn.Module, path: str, args: argparse.Namespace | None = None
) -> tuple[TrainerState, dict | None]:
    check_resume_flags(path, args)
    check_checkpoint(path, accelerator, model)
    try:
        accelerator.load_state(path)
    except (ValueError, RuntimeError, OSError, EOFError, pickle.UnpicklingError, SafetensorError) as error:
        raise ValueError(f"checkpoint {str(path)!r} could not be loaded: {first_line(error)}") from error
    state = TrainerState(**json.loads(Path(path, TRAINER_STATE_NAME).read_text()))
    best_file = Path(path, BEST_WEIGHTS_NAME)
    best_weights = load_file(str(best_file)) if best_file.exists() else None
    logger.info(
        f"Resumed from {path}: epoch {state.epoch}, batch {state.batches_done_in_epoch}", main_process_only=True
    )
    return state, best_weights


__all__ = [
    "BEST_WEIGHTS_NAME",
    "CHECKPOINT_FILES_NAME",
    "TRAINER_STATE_NAME",
    "TrainerState",
    "check_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "state_dict_on_cpu",
]
