"""A reproducible hostile-user sweep: bad flags, bad files and interrupted runs, each outcome classified.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bad_input_sweep.py --output /tmp/sweep.json
    .venv/bin/python benchmarks/bad_input_sweep.py --only build,complete      # groups or case ids (prefixes)
    .venv/bin/python benchmarks/bad_input_sweep.py --limit 20 --workdir /tmp/sweep_work   # keep and reuse the data
    .venv/bin/python benchmarks/bad_input_sweep.py --list                     # the cases, without running them
    .venv/bin/python benchmarks/bad_input_sweep.py --all --output /tmp/sweep_all.json   # every case (~45 minutes)

What it does:

1. Setup, once, in a work folder (a temporary one unless --workdir; with --workdir a finished setup is reused): a tiny
   synthetic raw folder (`umbert-hf synthesize`, 300 items, 400 outfits, 32 px), its dataset (`build`, with and
   without images), random 16-d and 32-d embeddings tables of the catalogue (`write_embeddings_table`), a tiny
   fine-tuned umBERT (`finetune.py --embeddings`, 1 epoch, 1 layer, 2 heads), a 2-epoch run with `epoch_N`
   checkpoints, a tiny ResNet image encoder with its embeddings table and model (the encoder folder is then moved, as
   a user would), a small MANGO-layout checkout (the CSV layout of tests/test_mango.py) and a larger raw folder and
   dataset for the interrupted builds. A step that fails is reported; only the cases needing it are lost.
2. Cases (about 170 by default; --all adds about 120 more variations, `EXTENDED`): every subcommand of `umbert-hf`
   and every script of training_scripts/, run as a user would, in a SUBPROCESS (`python -m umbert_hf.apps.cli ...`,
   `python training_scripts/X.py ...`) with OMP_NUM_THREADS=1,
   HF_HUB_OFFLINE=1, TQDM_DISABLE=1, a per-case `datasets` cache and a timeout. Each case gets its own folder holding
   copies of the fixtures it needs, a working folder `cwd/` (the process's current folder, holding a user file
   `precious.txt`) and a user folder `mine/` (`precious.txt`, `README.md`, `notes/plan.md`). Every file of the case
   folder is hashed before and after the run. A few cases interrupt a run and then run it again, alone (they are
   timing-sensitive): SIGKILL a `build` 0.5 s after it starts, when its `.tmp-*` folder appears, when the first file
   appears in it (also with --overwrite of an earlier build, and with SIGINT), and SIGKILL a fine-tuning run once its
   `step_10` checkpoint exists, then resume from the latest checkpoint. The second run must succeed and leave no
   `.tmp-*`/`.old-*` folder (when the killed run had already renamed its output into place, it is repeated with
   --overwrite, the user's natural next step).
3. A table of counts per class, one line per case (id, class, exit code, seconds, the reason or the last stderr
   line), the list of cases that are neither `clear` nor `ok`, the total wall time, and with --output a JSON file.

Classes (the first that applies):

- data_lost: a file that existed before the run (in the case folder, or a watched shared fixture) was deleted or
  changed; only the tool's own earlier output that a case replaces on purpose (`--overwrite` of a built folder,
  resuming a run) is exempt.
- timeout: the run did not finish within the case's timeout.
- traceback: stderr contains 'Traceback', or the process died of a signal, or the last stderr line is a raw
  exception (`SomeError: ...`) - a raw internal exception rather than a message for the user.
- silent: a wrong result without a failure: exit 0 on an input that must be refused, exit 0 with a wrong or empty
  result (no metrics, NaN/inf metrics or weights, a diverged model reported as trained, hit_rate@1 of 1.0, an empty
  dataset, more suggestions than asked), exit 0 after printing `error:`, a file written outside the folders named
  on the command line (e.g. in the working folder or an input folder; also when the run failed), or a
  `.tmp-*`/`.old-*` folder left behind after a run that was repeated after an interruption.
- false_error: a valid control input was refused (nonzero exit, with a readable message).
- clear: nonzero exit, no traceback, and the last stderr line is an `error:` line (ours or argparse's
  `prog: error: ...`), or otherwise names the problem (contains 'error' or 'interrupted'), or a usage text with
  exit 2.
- unclear: nonzero exit with none of the above (e.g. an empty stderr).
- ok: exit 0, and the result passes the case's checks (for the control cases, and for 'either' cases where
  accepting the input is reasonable, e.g. whitespace that is stripped).
- harness_error: the harness itself failed on the case (a missing fixture, an exception while preparing it); the
  case is recorded, the sweep goes on.

A case's `expect` is 'error' (the input must be refused), 'ok' (a control that must succeed) or 'either'.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "training_scripts"
PYTHON = sys.executable
CLASSES = (
    "ok",
    "clear",
    "traceback",
    "silent",
    "data_lost",
    "false_error",
    "unclear",
    "timeout",
    "harness_error",
)
SLOTS = ("shoes", "tops", "accessories", "bottoms")
PRECIOUS = "my own notes: must survive every run\n"
RAW_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Warning)(:|$)")
TEMPORARY = re.compile(r"^\.(tmp|old)-")

# Tiny training flags: every training case runs in seconds on one core.
FT = {
    "--dataset": "@c/ds",
    "--embeddings": "@c/emb/emb.parquet",
    "--output_dir": "@c/out",
    "--num_train_epochs": "1",
    "--num_hidden_layers": "1",
    "--num_attention_heads": "2",
    "--per_device_train_batch_size": "16",
    "--per_device_eval_batch_size": "64",
}
IE = {
    "--encoder": "resnet",
    "--dataset": "@c/ds",
    "--output_dir": "@c/out",
    "--image_size": "32",
    "--num_train_epochs": "1",
    "--no-pretrained_backbone": None,
    "--embedding_dim": "16",
    "--num_workers": "0",
    "--per_device_train_batch_size": "32",
}
CE = {
    "--dataset": "@c/ds",
    "--image_encoder": "@c/enc",
    "--output": "@c/out/emb.parquet",
    "--num_workers": "0",
    "--no_progress": None,
}
HP = {
    "--dataset": "@c/ds",
    "--embeddings": "@c/emb/emb.parquet",
    "--output_dir": "@c/out",
    "--n_trials": "1",
    "--sampler": "random",
    "--num_train_epochs_pretrain": "0",
    "--num_train_epochs_finetune": "1",
    "--per_device_train_batch_size": "16",
    "--space": '{"num_hidden_layers": [1], "num_attention_heads": [2], "finetune_batch_size": [16]}',
}
EV = {"--model_name_or_path": "@c/model", "--dataset": "@c/ds"}
EV_BASE = {"--baseline": "context_mean", "--dataset": "@c/ds", "--embeddings": "@c/emb/emb.parquet"}
AUG = {"--dataset": "@c/ds", "--embeddings": "@c/emb/emb.parquet", "--output_dir": "@c/out", "--k": "2"}
DEMO = {
    "--output_dir": "@c/out",
    "--num_items": "300",
    "--num_outfits": "400",
    "--image_size": "32",
    "--encoder_epochs": "1",
    "--pretrain_epochs": "1",
    "--finetune_epochs": "1",
    "--num_hidden_layers": "1",
    "--text_encoder": "none",
    "--embedding_dim": "16",
}
BAD_EMBEDDINGS = (
    "empty",
    "not_parquet",
    "missing_column",
    "nan",
    "inf",
    "ragged",
    "duplicate_ids",
    "ids_not_in_dataset",
    "half_missing",
    "wrong_categories",
    "category_whitespace",
)


# Cases left out of the default sweep (which must finish in about 25 minutes on two busy cores); `--all` runs them too.
EXTENDED = frozenset(
    """
    synthesize_num_items_float synthesize_num_items_zero synthesize_num_outfits_zero synthesize_image_size_one
    synthesize_image_size_inf synthesize_seed_2e70 synthesize_tiny_1_item synthesize_output_under_file
    synthesize_output_user_folder synthesize_overwrite_parent
    build_missing_output_dir build_raw_empty_folder build_raw_is_dataset build_output_is_raw build_output_is_raw_images
    build_output_inside_raw build_split_type_disjoint_missing build_categories_empty build_categories_duplicate
    build_category_map_malformed build_category_map_unknown_slot build_seed_neg build_seed_nan build_metadata_is_list
    build_corrupt_split_json build_missing_split_file build_missing_image_strict build_truncated_jpeg_lenient
    build_no_images_ok build_output_user_folder
    mango_missing_source mango_source_is_file mango_output_is_file mango_products_not_utf8
    mango_outfits_unterminated_quote mango_seed_neg mango_outfits_header_only
    augment_dataset_is_file augment_dataset_is_raw augment_embeddings_empty_folder augment_k_neg augment_k_nan
    augment_distance_unknown augment_neighbours_unknown augment_output_is_file augment_embeddings_missing_column
    augment_embeddings_inf
    finetune_missing_output_dir finetune_model_and_embeddings finetune_dataset_is_file finetune_dataset_is_raw_folder
    finetune_embeddings_nonexistent finetune_model_is_dataset finetune_from_model_with_model_flags
    finetune_learning_rate_neg finetune_epochs_neg finetune_batch_size_neg finetune_seed_neg finetune_grad_accum_zero
    finetune_weight_decay_nan finetune_max_grad_norm_inf finetune_checkpointing_steps_word finetune_layers_zero
    finetune_dropout_above_one finetune_model_type_unknown finetune_output_is_file finetune_embeddings_ragged
    finetune_embeddings_duplicate_ids
    resume_truncated_trainer_state resume_empty_random_states
    pretrain_epochs_zero pretrain_batch_size_neg pretrain_embeddings_inf pretrain_embeddings_ids_not_in_dataset
    evaluate_no_flags evaluate_model_is_file evaluate_model_is_dataset evaluate_model_hub_id_offline
    evaluate_dataset_is_file evaluate_split_empty evaluate_split_wrong_case evaluate_batch_size_neg evaluate_seed_neg
    evaluate_baseline_unknown evaluate_distance_unknown evaluate_model_validation_ok
    evaluate_baseline_embeddings_not_parquet evaluate_baseline_embeddings_missing_column
    evaluate_baseline_embeddings_inf evaluate_baseline_embeddings_half_missing
    embeddings_no_flags embeddings_num_workers_neg embeddings_output_dim_neg embeddings_text_encoder_nonexistent
    embeddings_output_dim_too_big
    image_encoder_no_flags image_encoder_unknown_encoder image_encoder_image_size_neg
    image_encoder_validation_fraction_one image_encoder_max_items_zero image_encoder_dataset_nonexistent
    image_encoder_autoencoder_zero_channels
    hparam_no_flags hparam_space_empty_choice hparam_sampler_unknown hparam_metric_unknown hparam_epochs_neg
    complete_no_flags complete_no_model complete_model_is_file complete_model_is_dataset complete_model_hub_id_offline
    complete_slot_twice complete_missing_slot complete_top_k_neg complete_top_k_nan complete_render_is_folder
    complete_dataset_nonexistent complete_unknown_slot
    demo_encoder_unknown demo_finetune_epochs_zero
    """.split()
)


# ----------------------------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    """One hostile (or control) run. Paths in `argv` use `@c` (the case folder) and `@S` (the shared setup folder)."""

    id: str
    group: str
    argv: list[str]
    expect: str = "error"  # "error": must be refused; "ok": a control that must succeed; "either"
    fixtures: tuple[str, ...] = ()
    prepare: Callable[[Path, Path], None] | None = None  # (case folder, setup folder)
    check: Callable[[Ctx], str | None] | None = None  # on exit 0: a reason the result is wrong, or None
    cwd: str = "cwd"  # relative to the case folder
    outputs: tuple[str, ...] = ()  # more places (relative to the case folder) where new files are expected
    replaceable: tuple[str, ...] = ()  # pre-existing paths the run may replace (the tool's own earlier output)
    watch: tuple[str, ...] = ()  # shared setup paths (relative to @S) hashed before and after (serial cases only)
    timeout: float = 150.0
    serial: bool = False
    interrupt: dict | None = None
    note: str = ""
    min_train_rows: int = 0  # build checks: fewer training outfits than this is a silently degraded dataset


@dataclass
class Ctx:
    case: Case
    cdir: Path
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    outputs: list[Path] = field(default_factory=list)

    def flag(self, name: str) -> Path | None:
        """The absolute path given to a flag (relative to the run's working folder)."""
        if name not in self.argv:
            return None
        value = self.argv[self.argv.index(name) + 1]
        return Path(os.path.normpath(self.cdir / self.case.cwd / value))


def cli(*args: str) -> list[str]:
    return ["@cli", *args]


def script(name: str, *args: str) -> list[str]:
    return [f"@script:{name}", *args]


def flags(base: dict, **changes) -> list[str]:
    """argv from a flag dict; `changes` use the flag name without dashes; None drops a flag, True adds a bare one."""
    merged = dict(base)
    for name, value in changes.items():
        key = "--" + name
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = None if value is True else value
    argv = []
    for key, value in merged.items():
        argv.append(key)
        if value is not None:
            argv.extend(value if isinstance(value, list) else [value])
    return argv


# ----- helpers that prepare bad inputs --------------------------------------------------------------------------


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * fraction))])


def write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def edit_json(path: Path, edit: Callable) -> None:
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    payload = edit(payload) or payload
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)  # ensure_ascii: a lone surrogate is written as the escape \ud800


def read_table(path: Path) -> tuple[list[str], list[str], list[list[float]]]:
    import pyarrow.parquet as pq

    table = pq.read_table(path).to_pydict()
    return list(table["item_id"]), list(table["category"]), [list(row) for row in table["embedding"]]


def write_raw_table(path: Path, columns: dict, fixed_dim: int | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        if name == "embedding":
            if fixed_dim is not None:
                flat = pa.array([v for row in values for v in row], pa.float32())
                arrays[name] = pa.FixedSizeListArray.from_arrays(flat, fixed_dim)
            else:
                arrays[name] = pa.array(values, pa.list_(pa.float32()))
        else:
            arrays[name] = pa.array(values, pa.string())
    pq.write_table(pa.table(arrays), path)


def bad_embeddings(kind: str) -> Callable[[Path, Path], None]:
    """Replace the case's `emb/emb.parquet` (a copy of the random 16-d table) by a broken one."""

    def prepare(cdir: Path, setup: Path) -> None:
        path = cdir / "emb" / "emb.parquet"
        ids, categories, embeddings = read_table(path)
        dim = len(embeddings[0])
        if kind == "empty":
            return write_raw_table(path, {"item_id": [], "category": [], "embedding": []}, dim)
        if kind == "not_parquet":
            return write(path, "item_id,category,embedding\n1,shoes,0.1\n")
        if kind == "missing_column":
            return write_raw_table(path, {"item_id": ids, "embedding": embeddings}, dim)
        if kind in ("nan", "inf"):
            embeddings[3][2] = float(kind)
        elif kind == "ragged":
            embeddings[5] = embeddings[5][:-1]
            return write_raw_table(path, {"item_id": ids, "category": categories, "embedding": embeddings}, None)
        elif kind == "duplicate_ids":
            ids, categories, embeddings = ids + ids[:1], categories + categories[:1], embeddings + embeddings[:1]
        elif kind == "ids_not_in_dataset":
            ids = ["zz" + item_id for item_id in ids]
        elif kind == "half_missing":
            ids, categories, embeddings = ids[::2], categories[::2], embeddings[::2]
        elif kind == "wrong_categories":
            rotate = {slot: SLOTS[(i + 1) % len(SLOTS)] for i, slot in enumerate(SLOTS)}
            categories = [rotate.get(category, category) for category in categories]
        elif kind == "category_whitespace":
            categories = [f" {category} " for category in categories]
        else:
            raise ValueError(kind)
        write_raw_table(path, {"item_id": ids, "category": categories, "embedding": embeddings}, dim)

    return prepare


def chain(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def prepare(cdir: Path, setup: Path) -> None:
        for step in steps:
            step(cdir, setup)

    return prepare


def mkdir(relative: str) -> Callable[[Path, Path], None]:
    return lambda cdir, setup: (cdir / relative).mkdir(parents=True, exist_ok=True)


def remove(relative: str) -> Callable[[Path, Path], None]:
    def prepare(cdir: Path, setup: Path) -> None:
        path = cdir / relative
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    return prepare


def truncating(relative: str, fraction: float = 0.5) -> Callable[[Path, Path], None]:
    return lambda cdir, setup: truncate(cdir / relative, fraction)


def writing(relative: str, text: str | bytes) -> Callable[[Path, Path], None]:
    return lambda cdir, setup: write(cdir / relative, text)


def moving(source: str, target: str) -> Callable[[Path, Path], None]:
    def prepare(cdir: Path, setup: Path) -> None:
        (cdir / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(cdir / source, cdir / target)

    return prepare


# ----- checks of a result that exited 0 ---------------------------------------------------------------------------


def _non_finite(payload, prefix: str = "") -> list[str]:
    bad = []
    if isinstance(payload, dict):
        for key, value in payload.items():
            bad += _non_finite(value, f"{prefix}{key}.")
    elif isinstance(payload, list):
        for index, value in enumerate(payload):
            bad += _non_finite(value, f"{prefix}{index}.")
    elif isinstance(payload, float) and not math.isfinite(payload):
        bad.append(prefix.rstrip("."))
    return bad


def _load_json_file(path: Path):
    # json.loads accepts NaN and Infinity: exactly what the checks look for.
    return json.loads(path.read_text())


def check_weights(folder: Path) -> str | None:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return f"no weights (*.safetensors) in {folder.name}/"
    import numpy as np
    from safetensors.numpy import load_file

    for file in files:
        for name, tensor in load_file(str(file)).items():
            if tensor.dtype.kind != "f":
                continue
            if not np.isfinite(tensor).all():
                return f"{file.name}: tensor {name} holds NaN/inf: a diverged model was saved as a success"
            if tensor.size and float(np.abs(tensor).max()) > 1e6:
                return (
                    f"{file.name}: tensor {name} reaches {float(np.abs(tensor).max()):.3g}: a diverged model was saved"
                )
    return None


def check_training(ctx: Ctx) -> str | None:
    out = ctx.flag("--output_dir")
    if out is None or not (out / "metrics.json").is_file():
        return "exit 0 but no metrics.json"
    metrics = _load_json_file(out / "metrics.json")
    bad = _non_finite(metrics)
    if bad:
        return f"exit 0 with NaN/inf metrics: {bad[:4]}"
    if not any(key.endswith("mrr") for key in metrics):
        return f"exit 0 but metrics.json has no mrr (keys: {sorted(metrics)[:6]})"
    if (metrics.get("epochs_trained") or 0) < 1 or (metrics.get("global_step") or 0) < 1:
        return f"exit 0 after {metrics.get('global_step')} optimizer steps: nothing was trained"
    for key in ("test_hit_rate@1", "val_hit_rate@1"):
        if isinstance(metrics.get(key), float) and metrics[key] >= 0.99:
            return f"{key} = {metrics[key]}: an impossible score reported as success"
    return check_weights(out)


def check_image_encoder(ctx: Ctx) -> str | None:
    out = ctx.flag("--output_dir")
    if out is None or not (out / "metrics.json").is_file():
        return "exit 0 but no metrics.json"
    bad = _non_finite(_load_json_file(out / "metrics.json"))
    if bad:
        return f"exit 0 with NaN/inf metrics: {bad[:4]}"
    return check_weights(out)


def check_evaluate(ctx: Ctx) -> str | None:
    lines = [line for line in ctx.stdout.splitlines() if line.strip()]
    try:
        metrics = json.loads(lines[-1])
    except (IndexError, ValueError):
        return "exit 0 but the last stdout line is not the metrics JSON"
    bad = _non_finite(metrics)
    if bad:
        return f"exit 0 with NaN/inf metrics: {bad[:4]}"
    if not isinstance(metrics.get("mrr"), float):
        return f"exit 0 but no mrr in the metrics (keys: {sorted(metrics)[:8]})"
    if metrics.get("hit_rate@1", 0) >= 0.99:
        return f"hit_rate@1 = {metrics['hit_rate@1']}: an impossible score"
    skipped = {key: value for key, value in metrics.items() if key.startswith("skipped_") and value}
    if skipped:
        return f"exit 0 but outfits were skipped: {skipped}"
    return None


def check_complete(ctx: Ctx) -> str | None:
    ranked = [line for line in ctx.stdout.splitlines() if re.match(r"^\s*\d+\.\s", line)]
    if "Suggestions for" not in ctx.stdout or not ranked:
        return "exit 0 but no suggestions printed"
    top_k = int(ctx.argv[ctx.argv.index("--top_k") + 1]) if "--top_k" in ctx.argv else 5
    if len(ranked) > max(top_k, 0):
        return f"{len(ranked)} suggestions printed for --top_k {top_k}"
    if len({line.split()[1] for line in ranked}) != len(ranked):
        return "the same item suggested twice"
    render = ctx.flag("--render")
    if render is not None and not render.is_file():
        return "exit 0 but the --render file is missing"
    return None


def check_build(ctx: Ctx) -> str | None:
    import pyarrow.parquet as pq

    out = ctx.flag("--output_dir")
    files = sorted((out / "outfits").glob("train-*.parquet")) if out else []
    if not files or not list((out / "catalogue").glob("*.parquet")):
        return "exit 0 but no outfits/catalogue parquet in the output"
    train = pq.read_table(files[0])
    slots = [name for name in train.column_names if name != "outfit_id"]
    if [slot for slot in slots if slot != slot.strip() or not slot]:
        return f"slot columns with whitespace: {slots}"
    expected = ctx.case.min_train_rows
    if train.num_rows < max(1, expected):
        return f"only {train.num_rows} training outfits (the intact raw folder gives about {expected * 2})"
    catalogue = pq.read_table(next((out / "catalogue").glob("*.parquet")), columns=["category"]).to_pydict()
    missing = [slot for slot in slots if slot not in set(catalogue["category"])]
    if missing:
        return f"slots without catalogue items: {missing}"
    leftovers = [entry.name for entry in out.parent.iterdir() if TEMPORARY.match(entry.name)]
    if leftovers:
        return f"temporary folders left beside the output: {leftovers}"
    return None


def check_raw(ctx: Ctx) -> str | None:
    out = ctx.flag("--output_dir")
    metadata = out / "polyvore_item_metadata.json" if out else None
    if metadata is None or not metadata.is_file():
        return "exit 0 but no polyvore_item_metadata.json"
    items = _load_json_file(metadata)
    if not items:
        return "exit 0 with an empty catalogue"
    if not (out / "nondisjoint" / "train.json").is_file() or not _load_json_file(out / "nondisjoint" / "train.json"):
        return "exit 0 but no training outfits"
    return None


def check_augment(ctx: Ctx) -> str | None:
    out = ctx.flag("--output_dir")
    if out is None or not list(out.glob("outfits_augmented/*.parquet")):
        return "exit 0 but no outfits_augmented parquet"
    return None


def check_embeddings_file(ctx: Ctx) -> str | None:
    import numpy as np

    out = ctx.flag("--output")
    if out is None or not out.is_file():
        return "exit 0 but no --output file"
    ids, _, embeddings = read_table(out)
    if not ids:
        return "exit 0 with an empty embeddings table"
    if not np.isfinite(np.asarray(embeddings, dtype=np.float64)).all():
        return "NaN/inf in the embeddings written"
    return None


def check_hparam(ctx: Ctx) -> str | None:
    out = ctx.flag("--output_dir")
    if out is None or not (out / "hparam_results.json").is_file() or not (out / "best_params.json").is_file():
        return "exit 0 but no hparam_results.json / best_params.json"
    results = _load_json_file(out / "hparam_results.json")
    rows = results if isinstance(results, list) else results.get("trials", [])
    if not rows:
        return "exit 0 with no trial in the results"
    objectives = [row.get("objective") for row in rows if isinstance(row, dict)]
    if not any(isinstance(value, (int, float)) and math.isfinite(value) for value in objectives):
        return f"exit 0 but no trial has a finite objective: {objectives}"
    return None


def check_usage(ctx: Ctx) -> str | None:
    return None if "usage:" in ctx.stdout.lower() else "exit 0 but no usage text"


DEFAULT_CHECKS = {
    "synthesize": check_raw,
    "convert-mango": check_raw,
    "build": check_build,
    "augment": check_augment,
    "complete": check_complete,
    "finetune": check_training,
    "pretrain": check_training,
    "evaluate": check_evaluate,
    "compute_embeddings": check_embeddings_file,
    "train_image_encoder": check_image_encoder,
    "hparam_search": check_hparam,
}


# ----- the case list ------------------------------------------------------------------------------------------------


def make_cases(info: dict) -> list[Case]:
    """Every case. `info` holds item ids of the fixtures (see `setup`)."""
    ids = info.get("ids") or {slot: [f"{slot}{n}" for n in range(3)] for slot in SLOTS}
    shoe, top, accessory, bottom = (ids[slot][0] for slot in SLOTS)
    photo_item = info.get("photo_item", top)
    strict_item = info.get("strict_item", top)
    min_rows = int(info.get("train_rows", 0)) // 2
    outfit = ["--outfit", "shoes=?", f"tops={top}", f"accessories={accessory}", f"bottoms={bottom}"]
    cases: list[Case] = []

    def add(id: str, group: str, argv: list[str], **kw) -> None:
        cases.append(Case(id, group, argv, **kw))

    # --- the command itself
    add("cli_no_args", "cli", cli(), note="prints the help")
    add("cli_unknown_command", "cli", cli("frobnicate"))
    add("cli_complete_help", "cli", cli("complete", "--help"), expect="ok", check=check_usage)

    # --- synthesize
    syn = {"--output_dir": "@c/out", "--num_items": "300", "--num_outfits": "400", "--image_size": "32"}
    add("synthesize_missing_output_dir", "synthesize", cli("synthesize"))
    for name, value in [("neg", "-5"), ("zero", "0"), ("nan", "nan"), ("float", "1e3")]:
        add(f"synthesize_num_items_{name}", "synthesize", cli("synthesize", *flags(syn, num_items=value)))
    add("synthesize_num_outfits_zero", "synthesize", cli("synthesize", *flags(syn, num_outfits="0")))
    add("synthesize_image_size_zero", "synthesize", cli("synthesize", *flags(syn, image_size="0")))
    add("synthesize_image_size_one", "synthesize", cli("synthesize", *flags(syn, image_size="1")), expect="either")
    add("synthesize_image_size_inf", "synthesize", cli("synthesize", *flags(syn, image_size="inf")))
    add("synthesize_seed_neg", "synthesize", cli("synthesize", *flags(syn, seed="-1")))
    add("synthesize_seed_2e70", "synthesize", cli("synthesize", *flags(syn, seed=str(2**70))), expect="either")
    add(
        "synthesize_tiny_1_item", "synthesize", cli("synthesize", *flags(syn, num_items="1", num_outfits="1")),
        expect="either",
    )  # fmt: skip
    add("synthesize_output_is_file", "synthesize", cli("synthesize", *flags(syn, output_dir="@c/cwd/precious.txt")))
    add(
        "synthesize_output_under_file", "synthesize",
        cli("synthesize", *flags(syn, output_dir="@c/cwd/precious.txt/raw")),
    )  # fmt: skip
    add("synthesize_output_user_folder", "synthesize", cli("synthesize", *flags(syn, output_dir="@c/mine")))
    add(
        "synthesize_overwrite_user_folder", "synthesize",
        cli("synthesize", *flags(syn, output_dir="@c/mine", overwrite=True)),
    )  # fmt: skip
    add("synthesize_overwrite_dot", "synthesize", cli("synthesize", *flags(syn, output_dir=".", overwrite=True)))
    add("synthesize_overwrite_parent", "synthesize", cli("synthesize", *flags(syn, output_dir="..", overwrite=True)))
    add(
        "synthesize_overwrite_own_output", "synthesize",
        cli("synthesize", *flags(syn, output_dir="@c/raw", overwrite=True)),
        expect="ok", fixtures=("raw",), replaceable=("raw",),
    )  # fmt: skip
    add("synthesize_ok", "synthesize", cli("synthesize", *flags(syn)), expect="ok")

    # --- build
    bld = {"--raw_dir": "@c/raw", "--output_dir": "@c/out"}
    braw = {"fixtures": ("raw",)}
    add("build_missing_raw_dir", "build", cli("build", "--output_dir", "@c/out"))
    add("build_missing_output_dir", "build", cli("build", "--raw_dir", "@c/raw"), **braw)
    add("build_raw_nonexistent", "build", cli("build", *flags(bld, raw_dir="@c/nope")))
    add("build_raw_is_file", "build", cli("build", *flags(bld, raw_dir="@c/cwd/precious.txt")))
    add("build_raw_empty_folder", "build", cli("build", *flags(bld, raw_dir="@c/empty")), prepare=mkdir("empty"))
    add("build_raw_is_dataset", "build", cli("build", *flags(bld, raw_dir="@c/ds")), fixtures=("ds",))
    add("build_output_is_file", "build", cli("build", *flags(bld, output_dir="@c/cwd/precious.txt")), **braw)
    for name, target in [("raw", "@c/raw"), ("raw_images", "@c/raw/images")]:
        add(f"build_output_is_{name}", "build", cli("build", *flags(bld, output_dir=target)), **braw)
        add(
            f"build_output_is_{name}_overwrite", "build",
            cli("build", *flags(bld, output_dir=target, overwrite=True)), **braw,
        )  # fmt: skip
    add("build_output_inside_raw", "build", cli("build", *flags(bld, output_dir="@c/raw/dataset")), **braw)
    add(
        "build_output_inside_raw_images", "build", cli("build", *flags(bld, output_dir="@c/raw/images/dataset")),
        **braw,
    )  # fmt: skip
    add(
        "build_output_contains_raw_overwrite", "build",
        cli("build", *flags(bld, raw_dir="@c/outer/raw", output_dir="@c/outer", overwrite=True)),
        prepare=moving("raw", "outer/raw"), **braw,
    )  # fmt: skip
    add(
        "build_output_dot_overwrite", "build", cli("build", *flags(bld, output_dir=".", overwrite=True)), **braw
    )  # fmt: skip
    add(
        "build_output_parent_of_dataset_overwrite", "build",
        cli("build", *flags(bld, output_dir="@c/data", overwrite=True)),
        fixtures=("raw", "ds"), prepare=moving("ds", "data/ds"),
    )  # fmt: skip
    add(
        "build_output_is_dataset_overwrite", "build", cli("build", *flags(bld, output_dir="@c/ds", overwrite=True)),
        expect="ok", fixtures=("raw", "ds"), replaceable=("ds",), note="--overwrite of build's own output: control",
    )  # fmt: skip
    add(
        "build_overwrite_dataset_with_user_file", "build",
        cli("build", *flags(bld, output_dir="@c/ds", overwrite=True)),
        expect="either", fixtures=("raw", "ds"), prepare=writing("ds/my_analysis.txt", PRECIOUS),
        replaceable=("ds/README.md", "ds/build_summary.json", "ds/catalogue", "ds/outfits", "ds/fitb",
                     "ds/compatibility"),
        note="a user file added to a built folder: --overwrite must keep it or refuse",
    )  # fmt: skip
    add("build_output_user_folder", "build", cli("build", *flags(bld, output_dir="@c/mine")), **braw)
    add(
        "build_overwrite_user_folder", "build", cli("build", *flags(bld, output_dir="@c/mine", overwrite=True)),
        **braw,
    )  # fmt: skip
    add("build_split_type_unknown", "build", cli("build", *flags(bld, split_type="random")), **braw)
    add(
        "build_split_type_disjoint_missing", "build", cli("build", *flags(bld, split_type="disjoint")),
        prepare=remove("raw/disjoint"), **braw,
    )  # fmt: skip
    add("build_categories_unknown", "build", cli("build", *flags(bld, categories=["shoes", "hats"])), **braw)
    add(
        "build_categories_whitespace", "build",
        cli("build", *flags(bld, categories=[" shoes", "tops ", " accessories ", "bottoms"])),
        expect="either", **braw,
    )  # fmt: skip
    add("build_categories_empty", "build", cli("build", *flags(bld, categories=[""])), **braw)
    add("build_categories_duplicate", "build", cli("build", *flags(bld, categories=["shoes", "shoes", "tops"])), **braw)
    add("build_category_map_malformed", "build", cli("build", *flags(bld, category_map="bags")), **braw)
    add("build_category_map_unknown_slot", "build", cli("build", *flags(bld, category_map="bags=hats")), **braw)
    add("build_seed_neg", "build", cli("build", *flags(bld, seed="-1")), **braw)
    add("build_seed_nan", "build", cli("build", *flags(bld, seed="nan")), **braw)
    add(
        "build_corrupt_metadata_json", "build", cli("build", *flags(bld)),
        prepare=truncating("raw/polyvore_item_metadata.json", 0.5), **braw,
    )  # fmt: skip
    add(
        "build_corrupt_split_json", "build", cli("build", *flags(bld)),
        prepare=writing("raw/nondisjoint/train.json", "{not json"), **braw,
    )  # fmt: skip
    add(
        "build_metadata_is_list", "build", cli("build", *flags(bld)),
        prepare=writing("raw/polyvore_item_metadata.json", "[]"), **braw,
    )  # fmt: skip
    add(
        "build_missing_split_file", "build", cli("build", *flags(bld)),
        prepare=remove("raw/nondisjoint/test.json"), **braw,
    )  # fmt: skip
    add(
        "build_truncated_jpeg_strict", "build", cli("build", *flags(bld, strict=True)),
        prepare=truncating(f"raw/images/{strict_item}.jpg", 0.4), **braw,
    )  # fmt: skip
    add(
        "build_missing_image_strict", "build", cli("build", *flags(bld, strict=True)),
        prepare=remove(f"raw/images/{strict_item}.jpg"), **braw,
    )  # fmt: skip
    add(
        "build_truncated_jpeg_lenient", "build", cli("build", *flags(bld)), expect="either",
        prepare=truncating(f"raw/images/{strict_item}.jpg", 0.4), **braw,
    )  # fmt: skip

    def surrogate_title(cdir: Path, setup: Path) -> None:
        def edit(items):
            items[strict_item]["title"] = "lone \ud800 surrogate"
            items[strict_item]["url_name"] = "lone \udfff"

        edit_json(cdir / "raw" / "polyvore_item_metadata.json", edit)

    def whitespace_category(cdir: Path, setup: Path) -> None:
        def edit(items):
            for item in items.values():
                if item.get("semantic_category") == "shoes":
                    item["semantic_category"] = " shoes "

        edit_json(cdir / "raw" / "polyvore_item_metadata.json", edit)

    add(
        "build_lone_surrogate_title",
        "build",
        cli("build", *flags(bld)),
        expect="either",
        prepare=surrogate_title,
        **braw,
    )
    add(
        "build_whitespace_category_in_metadata", "build", cli("build", *flags(bld)), expect="either",
        prepare=whitespace_category, **braw,
    )  # fmt: skip
    add("build_ok", "build", cli("build", *flags(bld)), expect="ok", **braw)
    add("build_no_images_ok", "build", cli("build", *flags(bld, no_images=True)), expect="ok", **braw)
    for case in cases:
        if case.group == "build":
            case.min_train_rows = min_rows

    # --- convert-mango
    mg = {"--source": "@c/mango", "--output_dir": "@c/out"}
    mfx = {"fixtures": ("mango",)}
    products = "mango/datathon/dataset/product_data.csv"
    outfits_csv = "mango/datathon/dataset/outfit_data.csv"
    add("mango_missing_source", "convert-mango", cli("convert-mango", "--output_dir", "@c/out"))
    add("mango_source_nonexistent", "convert-mango", cli("convert-mango", *flags(mg, source="@c/nope")))
    add("mango_source_is_file", "convert-mango", cli("convert-mango", *flags(mg, source="@c/cwd/precious.txt")))
    add("mango_output_is_source", "convert-mango", cli("convert-mango", *flags(mg, output_dir="@c/mango")), **mfx)
    add(
        "mango_output_inside_source", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="@c/mango/datathon/raw")), **mfx,
    )  # fmt: skip
    add(
        "mango_output_parent_overwrite", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="..", overwrite=True)),
        cwd="mango", **mfx,
    )  # fmt: skip
    add(
        "mango_output_is_file",
        "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="@c/cwd/precious.txt")),
        **mfx,
    )
    add(
        "mango_overwrite_user_folder", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="@c/mine", overwrite=True)), **mfx,
    )  # fmt: skip
    add("mango_products_missing", "convert-mango", cli("convert-mango", *flags(mg)), prepare=remove(products), **mfx)

    def rename_column(cdir: Path, setup: Path) -> None:
        path = cdir / products
        path.write_text(path.read_text().replace("des_product_family", "des_family", 1))

    def latin1(cdir: Path, setup: Path) -> None:
        path = cdir / products
        path.write_bytes(path.read_bytes().replace(b"P-PLANA", "P-PLAÑA".encode("latin-1")))

    add(
        "mango_products_missing_column", "convert-mango", cli("convert-mango", *flags(mg)), prepare=rename_column, **mfx
    )
    add("mango_products_not_utf8", "convert-mango", cli("convert-mango", *flags(mg)), prepare=latin1, **mfx)
    add(
        "mango_outfits_header_only", "convert-mango", cli("convert-mango", *flags(mg)),
        prepare=writing(outfits_csv, '"cod_outfit","cod_modelo_color"\n'), **mfx,
    )  # fmt: skip
    add(
        "mango_outfits_unterminated_quote", "convert-mango", cli("convert-mango", *flags(mg)), expect="either",
        prepare=lambda cdir, setup: write(cdir / outfits_csv, (cdir / outfits_csv).read_text() + '99,"top-1\n'),
        **mfx,
    )  # fmt: skip
    add("mango_seed_neg", "convert-mango", cli("convert-mango", *flags(mg, seed="-3")), **mfx)
    add("mango_ok", "convert-mango", cli("convert-mango", *flags(mg)), expect="ok", **mfx)

    # --- augment
    afx = {"fixtures": ("ds", "emb")}
    add("augment_no_flags", "augment", cli("augment"))
    add("augment_dataset_nonexistent", "augment", cli("augment", *flags(AUG, dataset="@c/nope")), **afx)
    add("augment_dataset_is_file", "augment", cli("augment", *flags(AUG, dataset="@c/cwd/precious.txt")), **afx)
    add("augment_dataset_is_raw", "augment", cli("augment", *flags(AUG, dataset="@c/raw")), fixtures=("raw", "emb"))
    add("augment_embeddings_nonexistent", "augment", cli("augment", *flags(AUG, embeddings="@c/nope.parquet")), **afx)
    add(
        "augment_embeddings_empty_folder", "augment", cli("augment", *flags(AUG, embeddings="@c/empty")),
        prepare=mkdir("empty"), **afx,
    )  # fmt: skip
    for name, value in [("zero", "0"), ("neg", "-1"), ("nan", "nan")]:
        add(f"augment_k_{name}", "augment", cli("augment", *flags(AUG, k=value)), **afx)
    add("augment_k_huge", "augment", cli("augment", *flags(AUG, k="100000")), expect="either", **afx)
    add("augment_distance_unknown", "augment", cli("augment", *flags(AUG, distance="manhattan")), **afx)
    add("augment_neighbours_unknown", "augment", cli("augment", *flags(AUG, neighbours="everything")), **afx)
    add("augment_output_is_dataset", "augment", cli("augment", *flags(AUG, output_dir="@c/ds")), **afx)
    add("augment_output_inside_dataset", "augment", cli("augment", *flags(AUG, output_dir="@c/ds/augmented")), **afx)
    add(
        "augment_output_parent_of_dataset_overwrite", "augment",
        cli("augment", *flags(AUG, output_dir="@c", overwrite=True)), **afx,
    )  # fmt: skip
    add("augment_output_is_embeddings_folder", "augment", cli("augment", *flags(AUG, output_dir="@c/emb")), **afx)
    add(
        "augment_output_dot_overwrite", "augment",
        cli("augment", *flags(AUG, dataset="ds", embeddings="emb/emb.parquet", output_dir=".", overwrite=True)),
        cwd="", **afx,
    )  # fmt: skip
    add("augment_output_is_file", "augment", cli("augment", *flags(AUG, output_dir="@c/cwd/precious.txt")), **afx)
    add(
        "augment_overwrite_user_folder", "augment", cli("augment", *flags(AUG, output_dir="@c/mine", overwrite=True)),
        **afx,
    )  # fmt: skip
    for kind in BAD_EMBEDDINGS:
        add(
            f"augment_embeddings_{kind}", "augment", cli("augment", *flags(AUG)), prepare=bad_embeddings(kind),
            expect="either" if kind == "category_whitespace" else "error", **afx,
        )  # fmt: skip
    add("augment_ok", "augment", cli("augment", *flags(AUG)), expect="ok", **afx)

    # --- finetune
    ffx = {"fixtures": ("ds", "emb"), "timeout": 240.0}
    ft = lambda **changes: script("finetune", *flags(FT, **changes))  # noqa: E731
    from_model = {"--model_name_or_path": "@c/model", "--dataset": "@c/ds", "--output_dir": "@c/out"}
    from_model |= {"--num_train_epochs": "1", "--per_device_train_batch_size": "16"}
    add("finetune_no_flags", "finetune", script("finetune"))
    add("finetune_missing_output_dir", "finetune", ft(output_dir=None), **ffx)
    add("finetune_model_and_embeddings", "finetune", ft(model_name_or_path="@c/model"), fixtures=("ds", "emb", "model"))
    add("finetune_neither_model_nor_embeddings", "finetune", ft(embeddings=None), **ffx)
    add("finetune_dataset_nonexistent", "finetune", ft(dataset="@c/nope"), **ffx)
    add("finetune_dataset_is_file", "finetune", ft(dataset="@c/cwd/precious.txt"), **ffx)
    add("finetune_dataset_is_raw_folder", "finetune", ft(dataset="@c/raw"), fixtures=("raw", "emb"))
    add("finetune_embeddings_nonexistent", "finetune", ft(embeddings="@c/nope.parquet"), **ffx)
    add(
        "finetune_model_nonexistent",
        "finetune",
        script("finetune", *flags(from_model, model_name_or_path="@c/nope")),
        **ffx,
    )
    add(
        "finetune_model_is_dataset", "finetune", script("finetune", *flags(from_model, model_name_or_path="@c/ds")),
        **ffx,
    )  # fmt: skip
    add(
        "finetune_model_truncated_safetensors", "finetune", script("finetune", *flags(from_model)),
        fixtures=("ds", "model"), prepare=truncating("model/model.safetensors", 0.5),
    )  # fmt: skip
    add(
        "finetune_from_model_with_model_flags", "finetune",
        script("finetune", *flags(from_model, num_hidden_layers="3")), fixtures=("ds", "model"),
    )  # fmt: skip
    add(
        "finetune_output_is_model_being_finetuned", "finetune",
        script("finetune", *flags(from_model, output_dir="@c/model")), fixtures=("ds", "model"),
    )  # fmt: skip
    for name, value in [("zero", "0"), ("neg", "-0.001"), ("nan", "nan"), ("inf", "inf")]:
        add(f"finetune_learning_rate_{name}", "finetune", ft(learning_rate=value), **ffx)
    add(
        "finetune_learning_rate_1e8", "finetune", ft(learning_rate="1e8"), expect="either", **ffx,
        note="a diverged run must fail or at least not be reported as a good model",
    )  # fmt: skip
    add("finetune_epochs_zero", "finetune", ft(num_train_epochs="0"), **ffx)
    add("finetune_epochs_neg", "finetune", ft(num_train_epochs="-2"), **ffx)
    add("finetune_batch_size_zero", "finetune", ft(per_device_train_batch_size="0"), **ffx)
    add("finetune_batch_size_neg", "finetune", ft(per_device_train_batch_size="-16"), **ffx)
    add(
        "finetune_batch_size_larger_than_data", "finetune", ft(per_device_train_batch_size="100000"), expect="either",
        **ffx, note="drop_last with a batch larger than the data: zero optimizer steps",
    )  # fmt: skip
    add("finetune_seed_neg", "finetune", ft(seed="-1"), expect="either", **ffx)
    add("finetune_grad_accum_zero", "finetune", ft(gradient_accumulation_steps="0"), **ffx)
    add("finetune_weight_decay_nan", "finetune", ft(weight_decay="nan"), **ffx)
    add("finetune_max_grad_norm_inf", "finetune", ft(max_grad_norm="inf"), **ffx)
    add("finetune_checkpointing_steps_word", "finetune", ft(checkpointing_steps="often"), **ffx)
    add("finetune_heads_not_dividing_hidden", "finetune", ft(num_attention_heads="3"), **ffx)
    add("finetune_layers_zero", "finetune", ft(num_hidden_layers="0"), expect="either", **ffx)
    add("finetune_dropout_above_one", "finetune", ft(hidden_dropout_prob="1.5"), **ffx)
    add("finetune_temperature_zero", "finetune", ft(contrastive_temperature="0"), **ffx)
    add("finetune_model_type_unknown", "finetune", ft(model_type="gpt"), **ffx)
    add("finetune_metric_unknown", "finetune", ft(metric_for_best_model="accuracy_of_vibes"), **ffx)
    add("finetune_output_is_dataset", "finetune", ft(output_dir="@c/ds"), **ffx)
    add("finetune_output_inside_dataset", "finetune", ft(output_dir="@c/ds/model"), **ffx)
    add("finetune_output_parent_of_dataset", "finetune", ft(output_dir="@c"), **ffx)
    add("finetune_output_is_embeddings_folder", "finetune", ft(output_dir="@c/emb"), **ffx)
    add(
        "finetune_output_dot", "finetune", ft(dataset="ds", embeddings="emb/emb.parquet", output_dir="."), cwd="",
        **ffx,
    )  # fmt: skip
    add("finetune_output_is_file", "finetune", ft(output_dir="@c/cwd/precious.txt"), **ffx)
    add(
        "finetune_output_user_folder", "finetune", ft(output_dir="@c/mine"), expect="either", **ffx,
        note="mine/ holds the user's README.md: it must survive",
    )  # fmt: skip
    for kind in ("nan", "ragged", "duplicate_ids", "half_missing", "wrong_categories"):
        add(f"finetune_embeddings_{kind}", "finetune", ft(), prepare=bad_embeddings(kind), **ffx)
    add("finetune_ok", "finetune", ft(), expect="ok", **ffx)
    add(
        "finetune_from_model_ok",
        "finetune",
        script("finetune", *flags(from_model)),
        expect="ok",
        fixtures=("ds", "model"),
    )

    # resuming: the fixture `run` is a 2-epoch run with epoch_1/ and epoch_2/ checkpoints
    resume = dict(FT, **{"--output_dir": "@c/run", "--num_train_epochs": "2", "--checkpointing_steps": "epoch"})
    rfx = {"fixtures": ("ds", "emb", "run"), "timeout": 240.0}
    rs = lambda **changes: script("finetune", *flags(resume, **changes))  # noqa: E731
    add("resume_missing_folder", "resume", rs(resume_from_checkpoint="@c/run/epoch_9"), **rfx)
    add("resume_not_a_checkpoint", "resume", rs(resume_from_checkpoint="@c/ds"), **rfx)
    for name, file in [
        ("model", "model.safetensors"),
        ("random_states", "random_states_0.pkl"),
        ("optimizer", "optimizer.bin"),
        ("trainer_state", "trainer_state.json"),
    ]:
        add(
            f"resume_truncated_{name}", "resume", rs(resume_from_checkpoint="@c/run/epoch_1"),
            prepare=truncating(f"run/epoch_1/{file}", 0.5), **rfx,
        )  # fmt: skip
    add(
        "resume_empty_random_states", "resume", rs(resume_from_checkpoint="@c/run/epoch_1"),
        prepare=writing("run/epoch_1/random_states_0.pkl", b""), **rfx,
    )  # fmt: skip
    add(
        "resume_other_model_shape", "resume", rs(resume_from_checkpoint="@c/run/epoch_1", num_hidden_layers="2"),
        **rfx,
    )  # fmt: skip
    add(
        "resume_ok", "resume", rs(resume_from_checkpoint="@c/run/epoch_1"), expect="ok", replaceable=("run",), **rfx
    )  # fmt: skip

    # --- pretrain
    pt = lambda **changes: script("pretrain", *flags(FT, **changes))  # noqa: E731
    add("pretrain_no_embeddings", "pretrain", pt(embeddings=None), **ffx)
    add("pretrain_learning_rate_nan", "pretrain", pt(learning_rate="nan"), **ffx)
    add("pretrain_learning_rate_1e8", "pretrain", pt(learning_rate="1e8"), expect="either", **ffx)
    add("pretrain_epochs_zero", "pretrain", pt(num_train_epochs="0"), **ffx)
    add("pretrain_batch_size_neg", "pretrain", pt(per_device_train_batch_size="-1"), **ffx)
    add("pretrain_output_is_dataset", "pretrain", pt(output_dir="@c/ds"), **ffx)
    add("pretrain_embeddings_inf", "pretrain", pt(), prepare=bad_embeddings("inf"), **ffx)
    add("pretrain_embeddings_ids_not_in_dataset", "pretrain", pt(), prepare=bad_embeddings("ids_not_in_dataset"), **ffx)
    add("pretrain_ok", "pretrain", pt(), expect="ok", **ffx)

    # --- evaluate
    ev = lambda **changes: script("evaluate", *flags(EV, **changes))  # noqa: E731
    eb = lambda **changes: script("evaluate", *flags(EV_BASE, **changes))  # noqa: E731
    efx = {"fixtures": ("ds", "model"), "outputs": ("model/eval_test.json", "model/eval_validation.json")}
    bfx = {"fixtures": ("ds", "emb")}
    add("evaluate_no_flags", "evaluate", script("evaluate"))
    add("evaluate_no_model_or_baseline", "evaluate", ev(model_name_or_path=None), **efx)
    add("evaluate_model_and_baseline", "evaluate", ev(baseline="random"), **efx)
    add("evaluate_baseline_without_embeddings", "evaluate", eb(embeddings=None), **bfx)
    add("evaluate_model_nonexistent", "evaluate", ev(model_name_or_path="@c/nope"), **efx)
    add("evaluate_model_is_file", "evaluate", ev(model_name_or_path="@c/cwd/precious.txt"), **efx)
    add("evaluate_model_is_dataset", "evaluate", ev(model_name_or_path="@c/ds"), **efx)
    add(
        "evaluate_model_truncated_safetensors", "evaluate", ev(), prepare=truncating("model/model.safetensors", 0.5),
        **efx,
    )  # fmt: skip
    add("evaluate_model_hub_id_offline", "evaluate", ev(model_name_or_path="someone/umbert-polyvore"), **efx)
    add("evaluate_dataset_nonexistent", "evaluate", ev(dataset="@c/nope"), **efx)
    add("evaluate_dataset_is_file", "evaluate", ev(dataset="@c/cwd/precious.txt"), **efx)
    add("evaluate_split_unknown", "evaluate", ev(split="dev"), **efx)
    add("evaluate_split_empty", "evaluate", ev(split=""), **efx)
    add("evaluate_split_wrong_case", "evaluate", ev(split="TEST"), **efx)
    add("evaluate_batch_size_zero", "evaluate", ev(per_device_eval_batch_size="0"), **efx)
    add("evaluate_batch_size_neg", "evaluate", ev(per_device_eval_batch_size="-8"), **efx)
    add("evaluate_seed_neg", "evaluate", eb(baseline="random", seed="-1"), expect="either", **bfx)
    add("evaluate_baseline_unknown", "evaluate", eb(baseline="oracle"), **bfx)
    add("evaluate_distance_unknown", "evaluate", eb(distance="hamming"), **bfx)
    add("evaluate_output_file_is_folder", "evaluate", ev(output_file="@c/mine"), **efx)
    add(
        "evaluate_output_file_is_dataset_card", "evaluate", ev(output_file="@c/ds/README.md"), **efx,
        note="would overwrite the dataset's README (its configs)",
    )  # fmt: skip
    add(
        "evaluate_model_embeddings_other_dim", "evaluate", ev(embeddings="@c/emb32/emb.parquet"),
        fixtures=("ds", "model", "emb32"), outputs=efx["outputs"],
    )  # fmt: skip
    for kind in ("empty", "not_parquet", "missing_column", "inf", "ids_not_in_dataset", "half_missing"):
        add(f"evaluate_baseline_embeddings_{kind}", "evaluate", eb(), prepare=bad_embeddings(kind), **bfx)
    add("evaluate_model_ok", "evaluate", ev(), expect="ok", **efx)
    add("evaluate_model_validation_ok", "evaluate", ev(split="validation"), expect="ok", **efx)
    add("evaluate_baseline_ok", "evaluate", eb(), expect="ok", **bfx)

    # --- compute_embeddings
    ce = lambda **changes: script("compute_embeddings", *flags(CE, **changes))  # noqa: E731
    cfx = {"fixtures": ("ds", "enc")}
    add("embeddings_no_flags", "compute_embeddings", script("compute_embeddings"))
    add("embeddings_no_encoder", "compute_embeddings", ce(image_encoder=None), **cfx)
    add("embeddings_dataset_nonexistent", "compute_embeddings", ce(dataset="@c/nope"), **cfx)
    add("embeddings_encoder_nonexistent", "compute_embeddings", ce(image_encoder="@c/nope"), **cfx)
    add("embeddings_encoder_is_umbert", "compute_embeddings", ce(image_encoder="@c/model"), fixtures=("ds", "model"))
    add("embeddings_batch_size_zero", "compute_embeddings", ce(batch_size="0"), **cfx)
    add("embeddings_output_is_folder", "compute_embeddings", ce(output="@c/mine"), **cfx)
    add(
        "embeddings_output_is_dataset_file", "compute_embeddings",
        ce(output="@c/ds/catalogue/train-00000-of-00001.parquet"), **cfx,
    )  # fmt: skip
    add("embeddings_output_inside_dataset", "compute_embeddings", ce(output="@c/ds/emb.parquet"), **cfx)
    add("embeddings_output_dim_too_big", "compute_embeddings", ce(output_dim="1000"), **cfx)
    add("embeddings_output_dim_neg", "compute_embeddings", ce(output_dim="-4"), **cfx)
    add("embeddings_text_encoder_nonexistent", "compute_embeddings", ce(text_encoder="@c/nope"), **cfx)
    add("embeddings_num_workers_neg", "compute_embeddings", ce(num_workers="-1"), **cfx)
    add(
        "embeddings_dataset_without_images",
        "compute_embeddings",
        ce(dataset="@c/ds_noimg"),
        fixtures=("ds_noimg", "enc"),
    )
    add("embeddings_ok", "compute_embeddings", ce(), expect="ok", **cfx)

    # --- train_image_encoder
    ie = lambda **changes: script("train_image_encoder", *flags(IE, **changes))  # noqa: E731
    ifx = {"fixtures": ("ds",), "timeout": 240.0}
    add("image_encoder_no_flags", "train_image_encoder", script("train_image_encoder"))
    add("image_encoder_unknown_encoder", "train_image_encoder", ie(encoder="vit"), **ifx)
    for name, value in [("16", "16"), ("zero", "0"), ("neg", "-32")]:
        add(f"image_encoder_image_size_{name}", "train_image_encoder", ie(image_size=value), **ifx)
    add("image_encoder_validation_fraction_one", "train_image_encoder", ie(validation_fraction="1"), **ifx)
    add("image_encoder_validation_fraction_nan", "train_image_encoder", ie(validation_fraction="nan"), **ifx)
    add("image_encoder_learning_rate_neg", "train_image_encoder", ie(learning_rate="-1"), **ifx)
    add("image_encoder_epochs_zero", "train_image_encoder", ie(num_train_epochs="0"), **ifx)
    add("image_encoder_max_items_zero", "train_image_encoder", ie(max_items="0"), **ifx)
    add("image_encoder_embedding_dim_zero", "train_image_encoder", ie(embedding_dim="0"), **ifx)
    add("image_encoder_output_is_dataset", "train_image_encoder", ie(output_dir="@c/ds"), **ifx)
    add("image_encoder_dataset_nonexistent", "train_image_encoder", ie(dataset="@c/nope"), **ifx)
    add(
        "image_encoder_dataset_without_images", "train_image_encoder", ie(dataset="@c/ds_noimg"), fixtures=("ds_noimg",)
    )
    add(
        "image_encoder_autoencoder_zero_channels", "train_image_encoder",
        ie(encoder="autoencoder", hidden_channels="0"), **ifx,
    )  # fmt: skip
    add("image_encoder_ok", "train_image_encoder", ie(), expect="ok", **ifx)

    # --- hparam_search
    hp = lambda **changes: script("hparam_search", *flags(HP, **changes))  # noqa: E731
    hfx = {"fixtures": ("ds", "emb"), "timeout": 240.0}
    add("hparam_no_flags", "hparam_search", script("hparam_search"))
    add("hparam_n_trials_zero", "hparam_search", hp(n_trials="0"), **hfx)
    add("hparam_space_not_json", "hparam_search", hp(space="{layers: 1"), **hfx)
    add("hparam_space_unknown_name", "hparam_search", hp(space='{"num_layers": [1]}'), **hfx)
    add("hparam_space_empty_choice", "hparam_search", hp(space='{"num_hidden_layers": []}'), **hfx)
    add("hparam_sampler_unknown", "hparam_search", hp(sampler="grid"), **hfx)
    add("hparam_output_is_dataset", "hparam_search", hp(output_dir="@c/ds"), **hfx)
    add("hparam_epochs_neg", "hparam_search", hp(num_train_epochs_pretrain="-1"), **hfx)
    add(
        "hparam_batch_size_zero", "hparam_search",
        hp(per_device_train_batch_size="0", num_train_epochs_pretrain="1",
           space='{"num_hidden_layers": [1], "num_attention_heads": [2]}'),
        note="the space leaves the batch size alone, so the flag's 0 reaches pre-training", **hfx,
    )  # fmt: skip
    add("hparam_metric_unknown", "hparam_search", hp(metric="val_accuracy_of_vibes"), **hfx)
    add("hparam_ok", "hparam_search", hp(), expect="ok", **hfx)

    # --- complete
    cp = lambda *more, model="@c/model": cli("complete", "--model", model, *(more or outfit))  # noqa: E731
    kfx = {"fixtures": ("model",)}
    add("complete_no_flags", "complete", cli("complete"))
    add("complete_no_outfit", "complete", cli("complete", "--model", "@c/model"), **kfx)
    add("complete_no_model", "complete", cli("complete", *outfit))
    add("complete_model_nonexistent", "complete", cp(model="@c/nope"))
    add("complete_model_is_file", "complete", cp(model="@c/cwd/precious.txt"))
    add("complete_model_is_dataset", "complete", cp(model="@c/ds"), fixtures=("ds",))
    add("complete_model_hub_id_offline", "complete", cp(model="someone/umbert-polyvore"))
    add(
        "complete_model_truncated_safetensors", "complete", cp(), prepare=truncating("model/model.safetensors", 0.5),
        **kfx,
    )  # fmt: skip
    add(
        "complete_unknown_id", "complete",
        cp("--outfit", "shoes=?", "tops=000000000", f"accessories={accessory}", f"bottoms={bottom}"), **kfx,
    )  # fmt: skip
    add(
        "complete_wrong_category_item", "complete",
        cp("--outfit", f"shoes={ids['tops'][1]}", "tops=?", f"accessories={accessory}", f"bottoms={bottom}"), **kfx,
    )  # fmt: skip
    add(
        "complete_two_blanks", "complete",
        cp("--outfit", "shoes=?", "tops=?", f"accessories={accessory}", f"bottoms={bottom}"),
        **kfx,
    )  # fmt: skip
    add(
        "complete_no_blank", "complete",
        cp("--outfit", f"shoes={shoe}", f"tops={top}", f"accessories={accessory}", f"bottoms={bottom}"), **kfx,
    )  # fmt: skip
    add("complete_malformed_outfit", "complete", cp("--outfit", "shoes", f"tops:{top}", "accessories=?"), **kfx)
    add(
        "complete_slot_twice", "complete",
        cp("--outfit", "shoes=?", f"shoes={shoe}", f"tops={top}", f"bottoms={bottom}"),
        **kfx,
    )  # fmt: skip
    add("complete_unknown_slot", "complete", cp(*outfit, "hats=?"), **kfx)
    add("complete_missing_slot", "complete", cp("--outfit", "shoes=?", f"tops={top}", f"bottoms={bottom}"), **kfx)
    for name, value in [("zero", "0"), ("neg", "-3"), ("nan", "nan")]:
        add(f"complete_top_k_{name}", "complete", cp(*outfit, "--top_k", value), **kfx)
    add("complete_top_k_huge", "complete", cp(*outfit, "--top_k", "100000"), expect="either", **kfx)
    add("complete_render_without_dataset", "complete", cp(*outfit, "--render", "@c/out/completion.png"), **kfx)
    add(
        "complete_render_is_folder", "complete", cp(*outfit, "--render", "@c/mine", "--dataset", "@c/ds"),
        fixtures=("model", "ds"),
    )  # fmt: skip
    add("complete_dataset_nonexistent", "complete", cp(*outfit, "--dataset", "@c/nope"), **kfx)
    photo = f"@c/raw/images/{photo_item}.jpg"
    photo_outfit = ["--outfit", "shoes=?", f"tops={photo}", f"accessories={accessory}", f"bottoms={bottom}"]
    add(
        "complete_photo_not_an_image", "complete",
        cp("--outfit", "shoes=?", "tops=@c/cwd/precious.txt", f"accessories={accessory}", f"bottoms={bottom}",
           model="@c/model_img"),
        fixtures=("model_img",),
    )  # fmt: skip
    add(
        "complete_photo_truncated_jpeg", "complete", cp(*photo_outfit, model="@c/model_img"),
        fixtures=("model_img", "raw"), prepare=truncating(f"raw/images/{photo_item}.jpg", 0.3),
    )  # fmt: skip
    add(
        "complete_photo_model_without_encoder", "complete", cp(*photo_outfit), fixtures=("model", "raw"),
        note="the model's embeddings came from no image encoder",
    )  # fmt: skip
    add(
        "complete_photo_moved_image_encoder", "complete", cp(*photo_outfit, model="@c/model_img"),
        fixtures=("model_img", "raw"), prepare=remove("model_img/image_encoder"),
        note="the encoder that embedded the catalogue was moved (setup moved enc_src/ to enc/) and the model folder "
        "has no image_encoder/ copy",
    )  # fmt: skip
    add(
        "complete_photo_ok",
        "complete",
        cp(*photo_outfit, model="@c/model_img"),
        expect="ok",
        fixtures=("model_img", "raw"),
    )
    add(
        "complete_render_ok", "complete", cp(*outfit, "--render", "@c/out/completion.png", "--dataset", "@c/ds"),
        expect="ok", fixtures=("model", "ds"),
    )  # fmt: skip
    add("complete_ok", "complete", cp(*outfit, "--top_k", "3"), expect="ok", **kfx)

    # --- demo (only inputs that must be refused before the long pipeline starts)
    add("demo_num_items_neg", "demo", cli("demo", *flags(DEMO, num_items="-5")), timeout=120.0)
    add("demo_image_size_zero", "demo", cli("demo", *flags(DEMO, image_size="0")), timeout=120.0)
    add("demo_encoder_unknown", "demo", cli("demo", *flags(DEMO, encoder="vit")), timeout=120.0)
    add("demo_output_is_file", "demo", cli("demo", *flags(DEMO, output_dir="@c/cwd/precious.txt")), timeout=120.0)
    add("demo_finetune_epochs_zero", "demo", cli("demo", *flags(DEMO, finetune_epochs="0")), timeout=150.0)

    # --- interrupted runs (serial: timing-sensitive). The second run repeats the first.
    big = {"--raw_dir": "@S/rawbig", "--output_dir": "@c/out"}
    ifix = {"serial": True, "watch": ("rawbig",), "timeout": 150.0, "expect": "ok"}
    add(
        "interrupt_build_kill_after_0.5s", "interrupt", cli("build", *flags(big)),
        interrupt={"trigger": "start", "delay": 0.5, "signal": "KILL"}, **ifix,
    )  # fmt: skip
    add(
        "interrupt_build_kill_at_first_temporary", "interrupt", cli("build", *flags(big)),
        interrupt={"trigger": "appear", "where": "@c", "pattern": ".tmp-*", "delay": 0.0, "signal": "KILL",
                   "overwrite_if_complete": True}, **ifix,
    )  # fmt: skip
    add(
        "interrupt_build_kill_at_first_file", "interrupt", cli("build", *flags(big)),
        interrupt={"trigger": "appear", "where": "@c", "pattern": ".tmp-*/*", "delay": 0.0, "signal": "KILL",
                   "overwrite_if_complete": True}, **ifix,
    )  # fmt: skip
    add(
        "interrupt_build_sigint_at_first_file", "interrupt", cli("build", *flags(big)),
        interrupt={"trigger": "appear", "where": "@c", "pattern": ".tmp-*/*", "delay": 0.0, "signal": "INT",
                   "overwrite_if_complete": True}, **ifix,
    )  # fmt: skip
    add(
        "interrupt_build_overwrite_kill_at_first_file", "interrupt",
        cli("build", *flags(big, output_dir="@c/dsbig", overwrite=True)),
        interrupt={"trigger": "appear", "where": "@c", "pattern": ".tmp-*/*", "delay": 0.0, "signal": "KILL"},
        fixtures=("dsbig",), replaceable=("dsbig",), **ifix,
    )  # fmt: skip

    def latest_step(cdir: Path) -> list[str]:
        steps = sorted((cdir / "out").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
        extra = ["--resume_from_checkpoint", str(steps[-1])] if steps else []
        return ["@script:finetune", *flags(FT, num_train_epochs="3", checkpointing_steps="5"), *extra]

    add(
        "interrupt_finetune_kill_then_resume", "interrupt",
        script("finetune", *flags(FT, num_train_epochs="3", checkpointing_steps="5")),
        interrupt={"trigger": "appear", "where": "@c/out", "pattern": "step_10", "delay": 0.2, "signal": "KILL",
                   "rerun": latest_step},
        fixtures=("ds", "emb"), serial=True, timeout=240.0, expect="ok", check=check_training,
    )  # fmt: skip
    return cases


# ----------------------------------------------------------------------------------------------------------------
# setup


def make_mango_checkout(root: Path) -> None:
    """A small MANGO checkout in the datathon CSV layout (as tests/test_mango.py builds it)."""
    from PIL import Image

    header = (
        "cod_modelo_color,cod_color_code,des_color_specification_esp,des_agrup_color_eng,des_sex,des_age,des_line,"
        "des_fabric,des_product_category,des_product_aggregated_family,des_product_family,des_product_type,"
        "des_filename"
    ).split(",")
    acc = "Accesories, Swim and Intimate"
    kinds = {
        "shoe": (acc, "Accessories", "Footwear", "Sandals", "C-COMPLEMENTOS"),
        "top": ("Tops", "T-shirts", "T-shirt", "T-Shirt", "K-CIRCULAR"),
        "bottom": ("Bottoms", "Trousers & leggings", "Trousers", "Trousers", "P-PLANA"),
        "bag": (acc, "Accessories", "Bags", "Handbag", "O-POLIPIEL"),
        "hat": (acc, "Accessories", "Hats, scarves and gloves", "Hat", "C-COMPLEMENTOS"),
    }
    colours = ("WHITE", "BLUE", "GREY", "PINK", "RED", "GREEN")
    dataset, images = root / "datathon" / "dataset", root / "datathon" / "images"
    dataset.mkdir(parents=True)
    images.mkdir(parents=True)
    quote = lambda fields: ",".join('"' + str(f).replace('"', '""') + '"' for f in fields)  # noqa: E731
    lines, products = [quote(header)], {}
    for kind, (category, aggregated, family, product_type, fabric) in kinds.items():
        for number in range(6):
            item_id, colour = f"{kind}-{number}", colours[number]
            filename = f"datathon/images/2019_{kind}_{number}.jpg"
            row = [item_id, "02", colour + " CLARO", colour, "Female", "Adult", "SHE", fabric, category, aggregated]
            lines.append(quote(row + [family, product_type, filename]))
            products.setdefault(kind, []).append(item_id)
            Image.new("RGB", (12, 16), (40 * number, 100, 200)).save(root / filename, "JPEG")
    (dataset / "product_data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ['"cod_outfit","cod_modelo_color"']
    for outfit in range(1, 41):
        members = [products[kind][outfit % 6] for kind in ("top", "bottom", "shoe")]
        members.append(products["bag"][outfit % 6] if outfit % 3 else products["hat"][outfit % 6])
        rows += [f'{outfit},"{item_id}"' for item_id in members]
    (dataset / "outfit_data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def base_env(cache: Path) -> dict:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_CACHE=str(cache),
        TQDM_DISABLE="1",
        MPLBACKEND="Agg",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    )
    env.pop("ACCELERATE_USE_CPU", None)
    return env


def command(argv: list[str], cdir: Path, setup: Path) -> list[str]:
    out = []
    for index, arg in enumerate(argv):
        if index == 0 and arg == "@cli":
            out += [PYTHON, "-m", "umbert_hf.apps.cli"]
        elif index == 0 and arg.startswith("@script:"):
            out += [PYTHON, str(SCRIPTS / (arg.split(":", 1)[1] + ".py"))]
        else:
            out.append(arg.replace("@c", str(cdir)).replace("@S", str(setup)))
    return out


def setup(work: Path, log: Callable[[str], None]) -> dict:
    """Build the fixtures in `work/setup` (reused when a finished setup is there). Returns info about them."""
    S = work / "setup"
    marker = S / "setup.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        log(f"reusing the setup in {S} (fixtures: {', '.join(sorted(info['fixtures']))})")
        return info
    if S.exists():
        shutil.rmtree(S)
    S.mkdir(parents=True)
    env = base_env(work / "cache" / "setup")
    info: dict = {"fixtures": [], "failed": {}, "seconds": {}}
    lock = threading.Lock()

    def run(name: str, argv: list[str], timeout: float = 600) -> bool:
        start = time.perf_counter()
        try:
            result = subprocess.run(
                command(argv, S, S), cwd=S, env=env, capture_output=True, text=True, timeout=timeout
            )
            ok = result.returncode == 0
            tail = (result.stderr.strip().splitlines() or [""])[-1]
        except subprocess.TimeoutExpired:
            ok, tail = False, f"timed out after {timeout}s"
        seconds = time.perf_counter() - start
        with lock:
            info["seconds"][name] = round(seconds, 1)
            if ok:
                info["fixtures"].append(name)
            else:
                info["failed"][name] = tail
        log(f"  setup {name}: {'ok' if ok else 'FAILED: ' + tail} [{seconds:.1f}s]")
        return ok

    def python_step(name: str, function: Callable[[], None]) -> bool:
        start = time.perf_counter()
        try:
            function()
            ok, tail = True, ""
        except Exception as error:  # a fixture failing must not stop the sweep
            ok, tail = False, f"{type(error).__name__}: {error}"
        with lock:
            info["seconds"][name] = round(time.perf_counter() - start, 1)
            (info["fixtures"].append(name) if ok else info["failed"].__setitem__(name, tail))
        log(f"  setup {name}: {'ok' if ok else 'FAILED: ' + tail}")
        return ok

    tiny = ["--num_train_epochs", "1", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
    tiny += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64"]

    def write_embeddings() -> None:
        import numpy as np
        import pyarrow.parquet as pq

        from umbert_hf.data.embeddings import write_embeddings_table

        catalogue = next((S / "ds" / "catalogue").glob("*.parquet"))
        table = pq.read_table(catalogue, columns=["item_id", "category"]).to_pydict()
        rng = np.random.default_rng(0)
        for name, dim in (("emb", 16), ("emb32", 32)):
            embeddings = rng.standard_normal((len(table["item_id"]), dim)).astype("float32")
            write_embeddings_table(S / name / "emb.parquet", table["item_id"], table["category"], embeddings)

    def chain_a() -> None:
        if "emb" in info["fixtures"]:
            run("model", ["@script:finetune", "--dataset", "@S/ds", "--embeddings", "@S/emb/emb.parquet"] + tiny
                + ["--output_dir", "@S/model"])  # fmt: skip
            run("run", ["@script:finetune", "--dataset", "@S/ds", "--embeddings", "@S/emb/emb.parquet"] + tiny
                + ["--output_dir", "@S/run", "--num_train_epochs", "2", "--checkpointing_steps", "epoch",
                   "--patience", "0"])  # fmt: skip
        python_step("mango", lambda: make_mango_checkout(S / "mango"))

    def chain_b() -> None:
        run("ds_noimg", ["@cli", "build", "--raw_dir", "@S/raw", "--output_dir", "@S/ds_noimg", "--no_images"])
        trained = run(
            "enc_src",
            ["@script:train_image_encoder"] + flags(IE, dataset="@S/ds", output_dir="@S/enc_src"),
        )
        if trained and run(
            "emb_img",
            ["@script:compute_embeddings"]
            + flags(CE, dataset="@S/ds", image_encoder="@S/enc_src", output="@S/emb_img/emb.parquet"),
        ):
            run("model_img", ["@script:finetune", "--dataset", "@S/ds", "--embeddings", "@S/emb_img/emb.parquet"]
                + tiny + ["--output_dir", "@S/model_img"])  # fmt: skip
        if trained:  # the user moves the encoder folder after training the model
            python_step("enc", lambda: shutil.move(S / "enc_src", S / "enc"))
        if run("rawbig", ["@cli", "synthesize", "--output_dir", "@S/rawbig", "--num_items", "3000",
                          "--num_outfits", "4000", "--image_size", "32"]):  # fmt: skip
            run("dsbig", ["@cli", "build", "--raw_dir", "@S/rawbig", "--output_dir", "@S/dsbig"])

    log(f"setup in {S}")
    if run("raw", ["@cli", "synthesize", "--output_dir", "@S/raw", "--num_items", "300", "--num_outfits", "400",
                   "--image_size", "32"]):  # fmt: skip
        if run("ds", ["@cli", "build", "--raw_dir", "@S/raw", "--output_dir", "@S/ds"]):
            python_step("emb", write_embeddings)
            if "emb" in info["fixtures"]:
                info["fixtures"].append("emb32")
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                for future in [pool.submit(chain_a), pool.submit(chain_b)]:
                    future.result()
    else:
        python_step("mango", lambda: make_mango_checkout(S / "mango"))
    info.update(fixture_info(S))
    marker.write_text(json.dumps(info, indent=2))
    return info


def fixture_info(S: Path) -> dict:
    """Item ids for the cases: the first catalogue ids per slot, an item of a training outfit, a photo."""
    try:
        import pyarrow.parquet as pq

        catalogue = pq.read_table(next((S / "ds" / "catalogue").glob("*.parquet")), columns=["item_id", "category"])
        table = catalogue.to_pydict()
        ids: dict[str, list[str]] = {}
        for item_id, category in zip(table["item_id"], table["category"]):
            ids.setdefault(category, []).append(item_id)
        train = pq.read_table(next((S / "ds" / "outfits").glob("train-*.parquet")))
        first = train.slice(0, 1).to_pylist()[0]
        return {
            "ids": {slot: ids[slot][:3] for slot in SLOTS},
            "strict_item": first["tops"],
            "photo_item": ids["tops"][1],
            "train_rows": train.num_rows,
        }
    except Exception as error:  # the cases fall back to made-up ids
        return {"fixture_info_error": f"{type(error).__name__}: {error}"}


# ----------------------------------------------------------------------------------------------------------------
# running and classifying


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """relative path -> sha256 of every file under `root`."""
    hashes = {}
    if not root.exists():
        return hashes
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and Path(dirpath) == skip.parent:
            dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for filename in filenames:
            path = Path(dirpath, filename)
            try:
                digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "special"
            except OSError as error:
                digest = f"unreadable: {error}"
            hashes[str(path.relative_to(root))] = digest
    return hashes


def _under(relative: str, prefixes: list[str]) -> bool:
    return any(p == "" or relative == p or relative.startswith(p.rstrip("/") + "/") for p in prefixes)


def last_line(text: str) -> str:
    lines = [line.split("\r")[-1].strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


def named_outputs(case: Case, cdir: Path, argv: list[str]) -> list[str]:
    """Relative paths (to the case folder) of the outputs named on the command line, plus the case's extras."""
    names = []
    for flag in ("--output_dir", "--output", "--output_file", "--render"):
        if flag in argv[1:-1]:
            value = argv[argv.index(flag) + 1]
            path = Path(os.path.normpath(cdir / case.cwd / value))
            try:
                names.append(str(path.relative_to(cdir)) if path != cdir else "")
            except ValueError:
                pass  # outside the case folder
    return names + list(case.outputs)


def run_process(cmd: list[str], cwd: Path, env: dict, timeout: float) -> tuple[int | None, str, str, float]:
    start = time.perf_counter()
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        rc = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        rc = None
    return rc, stdout, stderr, time.perf_counter() - start


def run_interrupted(case: Case, cdir: Path, setup_dir: Path, env: dict) -> tuple[int | None, str, str, dict]:
    """Start the run, signal it when the trigger fires, then run it again; returns the second run and notes."""
    spec = case.interrupt or {}
    cmd = command(case.argv, cdir, setup_dir)
    cwd = cdir / case.cwd
    process = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    start, fired = time.perf_counter(), None
    where = Path(str(spec.get("where", "@c")).replace("@c", str(cdir)))
    while process.poll() is None and time.perf_counter() - start < case.timeout:
        if spec["trigger"] == "start":
            time.sleep(spec.get("delay", 0.5))
            fired = "after start"
        elif where.is_dir() and list(where.glob(spec["pattern"])):
            time.sleep(spec.get("delay", 0.0))
            fired = f"{spec['pattern']} appeared"
        else:
            time.sleep(0.005)
            continue
        break
    signalled = process.poll() is None
    if signalled:
        os.killpg(process.pid, signal.SIGKILL if spec["signal"] == "KILL" else signal.SIGINT)
    try:
        first_out, first_err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        first_out, first_err = process.communicate()
    leftovers = sorted(str(p.relative_to(cdir)) for p in cdir.rglob("*") if TEMPORARY.match(p.name))
    notes = {
        "first_run": {
            "signalled": signalled,
            "trigger": fired or "never fired",
            "after_s": round(time.perf_counter() - start, 2),
            "rc": process.returncode,
            "stderr_last_line": last_line(first_err),
            "traceback": "Traceback" in first_err,
            "leftovers_after_interrupt": leftovers,
        }
    }
    rerun = spec.get("rerun")
    argv2 = rerun(cdir) if callable(rerun) else list(case.argv)
    if spec.get("overwrite_if_complete") and "--overwrite" not in argv2 and "--output_dir" in argv2:
        resolved = command(argv2, cdir, setup_dir)
        if Path(resolved[resolved.index("--output_dir") + 1]).is_dir():
            # the run had renamed its output into place before the signal landed: the user's next step is --overwrite
            argv2 = [*argv2, "--overwrite"]
            notes["first_run"]["output_complete_before_signal"] = True
    notes["rerun_argv"] = argv2
    rc, stdout, stderr, _ = run_process(command(argv2, cdir, setup_dir), cwd, env, case.timeout)
    if spec["signal"] == "INT" and "Traceback" in first_err:
        stderr = first_err + "\n--- rerun ---\n" + stderr  # a traceback on Ctrl-C counts
    return rc, stdout, stderr, notes


def classify(case: Case, rc, stdout, stderr, lost, strays, problem) -> tuple[str, str]:
    last = last_line(stderr)
    if lost:
        return "data_lost", f"{len(lost)} user file(s) deleted or changed, e.g. {lost[:3]}"
    if rc is None:
        return "timeout", f"no exit within {case.timeout:.0f}s"
    if "Traceback (most recent call last)" in stderr:
        return "traceback", (f"(exit {rc}) " if rc == 0 else "") + last
    if rc < 0:
        return "traceback", f"killed by signal {-rc}"
    if rc != 0:
        if RAW_EXCEPTION.match(last):
            return "traceback", f"raw exception: {last}"
        if strays:
            return "silent", f"failed, but wrote outside the named folders: {strays[:3]}"
        lowered = last.lower()
        usage = rc == 2 and ("usage:" in stdout.lower() or "usage:" in stderr.lower())
        readable = lowered.startswith("error:") or "error" in lowered or "interrupted" in lowered or usage
        if case.expect == "ok":
            return "false_error", last
        if readable:
            return "clear", last or "(usage text, exit 2)"
        return "unclear", last or "(empty stderr)"
    if strays:
        return "silent", f"wrote outside the named folders: {strays[:3]}"
    if case.expect == "error":
        return "silent", "exit 0 on an input that must be refused" + (f" ({problem})" if problem else "")
    if last.lower().startswith("error"):
        return "silent", f"exit 0 after printing: {last}"
    if problem:
        return "silent", problem
    return "ok", "exit 0, result checked"


def run_case(case: Case, work: Path, info: dict) -> dict:
    """Run one case; never raises (a harness failure is recorded as `harness_error`)."""
    setup_dir = work / "setup"
    cdir = work / "cases" / case.id
    record = {"id": case.id, "group": case.group, "expect": case.expect, "note": case.note}
    start = time.perf_counter()
    try:
        missing = [name for name in case.fixtures if name not in info.get("fixtures", [])]
        if missing:
            raise RuntimeError(f"fixture(s) {missing} unavailable: {info.get('failed')}")
        if cdir.exists():
            shutil.rmtree(cdir)
        (cdir / "cwd").mkdir(parents=True)
        (cdir / "cwd" / "precious.txt").write_text(PRECIOUS)
        (cdir / "mine" / "notes").mkdir(parents=True)
        (cdir / "mine" / "precious.txt").write_text(PRECIOUS)
        (cdir / "mine" / "README.md").write_text("# My project\n\n" + PRECIOUS)
        (cdir / "mine" / "notes" / "plan.md").write_text(PRECIOUS)
        for name in case.fixtures:
            shutil.copytree(setup_dir / name, cdir / name, symlinks=True)
        if case.prepare is not None:
            case.prepare(cdir, setup_dir)
        before = snapshot(cdir)
        watched_before = {name: snapshot(setup_dir / name) for name in case.watch}
        env = base_env(work / "cache" / case.id)
        notes: dict = {}
        if case.interrupt:
            rc, stdout, stderr, notes = run_interrupted(case, cdir, setup_dir, env)
            argv = notes["rerun_argv"]
        else:
            argv = case.argv
            rc, stdout, stderr, _ = run_process(command(argv, cdir, setup_dir), cdir / case.cwd, env, case.timeout)
        after = snapshot(cdir)
        resolved = command(argv, cdir, setup_dir)
        outputs = named_outputs(case, cdir, resolved)
        lost = [
            path
            for path, digest in before.items()
            if after.get(path) != digest and not _under(path, list(case.replaceable))
        ]
        for name, hashes in watched_before.items():
            now = snapshot(setup_dir / name)
            lost += [f"@S/{name}/{path}" for path, digest in hashes.items() if now.get(path) != digest]
        new = [path for path in after if path not in before]
        strays = [path for path in new if not _under(path, outputs)]
        if case.interrupt:
            strays += [path for path in new if TEMPORARY.match(Path(path).parts[0]) and path not in strays]
            leftovers = sorted(str(p.relative_to(cdir)) for p in cdir.rglob("*") if TEMPORARY.match(p.name))
            if leftovers and rc == 0:
                strays += [f"leftover {p}" for p in leftovers if p not in strays]
        problem = None
        if rc == 0:
            checker = case.check or DEFAULT_CHECKS.get(case.group)
            if case.interrupt and case.group == "interrupt" and case.check is None:
                checker = check_build
            if checker is not None:
                ctx = Ctx(case, cdir, resolved, rc, stdout, stderr)
                try:
                    problem = checker(ctx)
                except Exception as error:
                    problem = f"the result could not be read: {type(error).__name__}: {error}"
        klass, reason = classify(case, rc, stdout, stderr, lost, strays, problem)
        record.update(
            {
                "class": klass,
                "rc": rc,
                "reason": reason.replace(str(cdir), "$CASE").replace(str(work), "$WORK"),
                "argv": [arg.replace(str(work), "$WORK") for arg in resolved[1:]],
                "stderr_tail": [line.replace(str(work), "$WORK") for line in stderr.strip().splitlines()[-12:]],
                "stdout_tail": [line.replace(str(work), "$WORK") for line in stdout.strip().splitlines()[-5:]],
                "lost": lost,
                "strays": strays,
                "problem": problem,
                **({"interrupt": notes} if notes else {}),
            }
        )
    except Exception as error:
        record.update(
            {
                "class": "harness_error",
                "reason": f"{type(error).__name__}: {error}",
                "rc": None,
                "harness_traceback": traceback.format_exc().splitlines()[-6:],
            }
        )
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


# ----------------------------------------------------------------------------------------------------------------
# main


def select(cases: list[Case], only: str | None, limit: int | None, everything: bool = False) -> list[Case]:
    unknown = EXTENDED - {case.id for case in cases}
    if unknown:
        raise SystemExit(f"EXTENDED names unknown cases: {sorted(unknown)}")
    if not everything:
        cases = [case for case in cases if case.id not in EXTENDED]
    if only:
        wanted = [part.strip() for part in only.split(",") if part.strip()]
        cases = [c for c in cases if c.group in wanted or any(c.id.startswith(w) for w in wanted)]
    return cases[:limit] if limit else cases


def report(records: list[dict], wall: float) -> str:
    counts = Counter(record["class"] for record in records)
    lines = ["", f"{'class':14s} {'cases':>6s}", "-" * 21]
    lines += [f"{name:14s} {counts.get(name, 0):6d}" for name in CLASSES if counts.get(name)]
    lines += ["-" * 21, f"{'total':14s} {len(records):6d}", ""]
    by_group = Counter((record["group"], record["class"]) for record in records)
    groups = sorted({record["group"] for record in records})
    shown = [name for name in CLASSES if counts.get(name)]
    lines.append(f"{'group':20s}" + "".join(f"{name[:11]:>12s}" for name in shown))
    for group in groups:
        lines.append(f"{group:20s}" + "".join(f"{by_group.get((group, name), 0):12d}" for name in shown))
    lines += ["", "per case:"]
    for record in records:
        reason = str(record.get("reason", ""))[:150]
        lines.append(
            f"  {record['id']:48s} {record['class']:13s} rc={str(record.get('rc')):>4s} "
            f"{record.get('seconds', 0):6.1f}s  {reason}"
        )
    bad = [record for record in records if record["class"] not in ("clear", "ok")]
    lines += ["", f"not clear/ok ({len(bad)}):"]
    for record in bad:
        lines.append(f"  {record['id']}: {record['class']}: {str(record.get('reason', ''))[:200]}")
    lines += ["", f"total wall time: {wall:.0f}s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", help="Write the records and counts as JSON here.")
    parser.add_argument("--only", help="Comma-separated groups (build, complete, finetune, ...) or case id prefixes.")
    parser.add_argument("--limit", type=int, default=None, help="Run only the first N selected cases.")
    parser.add_argument("--jobs", type=int, default=2, help="Cases run at once (default 2); interrupts run alone.")
    parser.add_argument("--workdir", help="Work folder, kept (and its finished setup reused); default: a temp folder.")
    parser.add_argument("--keep_cases", action="store_true", help="Keep each case's folder (default: removed).")
    parser.add_argument("--all", action="store_true", help=f"Also run the {len(EXTENDED)} extended cases (slower).")
    parser.add_argument("--list", action="store_true", help="List the cases and exit.")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")

    if args.list:
        cases = select(make_cases({}), args.only, args.limit, args.all)
        for case in cases:
            print(f"{case.id:50s} {case.group:20s} expect={case.expect}")
        print(f"{len(cases)} cases")
        return 0

    start = time.perf_counter()
    print_lock = threading.Lock()

    def log(message: str) -> None:
        with print_lock:
            print(message, flush=True)

    work = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="bad_input_sweep-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        info = setup(work, log)
        setup_seconds = time.perf_counter() - start
        log(f"setup done in {setup_seconds:.0f}s; fixtures: {', '.join(sorted(info['fixtures']))}")
        if info.get("failed"):
            log(f"setup failures: {info['failed']}")
        cases = select(make_cases(info), args.only, args.limit, args.all)
        duplicate = [i for i, n in Counter(c.id for c in cases).items() if n > 1]
        if duplicate:
            raise SystemExit(f"duplicate case ids: {duplicate}")
        log(f"running {len(cases)} cases with {args.jobs} jobs")
        setup_before = {name: snapshot(work / "setup" / name) for name in info.get("fixtures", [])}
        records: dict[str, dict] = {}

        def one(case: Case) -> None:
            record = run_case(case, work, info)
            records[case.id] = record
            if not args.keep_cases:
                shutil.rmtree(work / "cases" / case.id, ignore_errors=True)
                shutil.rmtree(work / "cache" / case.id, ignore_errors=True)
            done = len(records)
            log(
                f"[{done:3d}/{len(cases)}] {case.id:48s} {record['class']:13s} {record['seconds']:6.1f}s  "
                f"{str(record.get('reason', ''))[:90]}"
            )

        parallel = [case for case in cases if not case.serial]
        serial = [case for case in cases if case.serial]
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for future in concurrent.futures.as_completed([pool.submit(one, case) for case in parallel]):
                future.result()
        for case in serial:
            one(case)
        ordered = [records[case.id] for case in cases]
        changed = {}
        for name, hashes in setup_before.items():
            if name == "enc_src":
                continue
            now = snapshot(work / "setup" / name)
            diff = [path for path, digest in hashes.items() if now.get(path) != digest]
            diff += [path for path in now if path not in hashes]
            if diff:
                changed[name] = diff[:5]
        wall = time.perf_counter() - start
        text = report(ordered, wall)
        if changed:
            text += f"\nWARNING: shared setup fixtures changed during the sweep: {changed}"
        print(text, flush=True)
        if args.output:
            payload = {
                "counts": dict(Counter(record["class"] for record in ordered)),
                "total_cases": len(ordered),
                "wall_seconds": round(wall, 1),
                "setup_seconds": round(setup_seconds, 1),
                "setup": {key: info.get(key) for key in ("fixtures", "failed", "seconds")},
                "shared_fixtures_changed": changed,
                "classes": CLASSES,
                "cases": ordered,
            }
            Path(args.output).write_text(json.dumps(payload, indent=2, default=str))
            print(f"wrote {args.output}")
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
