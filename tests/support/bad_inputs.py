"""The hostile-user cases of `tests/test_bad_inputs.py`: their fixtures, the case list, an in-process runner.

Each case runs one `umbert-hf` subcommand or one script of `training_scripts/` as a user would, but in this process:
`umbert_hf.apps.cli.main(argv)` for the command, the script file run as `__main__` for a training script (so its
`sys.exit(...)` gives the exit status). It runs in its own case folder holding copies of the fixtures it needs, a
working folder `cwd/` (the current folder of the run, holding the user's `precious.txt`) and a user folder `mine/`
(`precious.txt`, `README.md`, `notes/plan.md`). Every file of the case folder is hashed before and after the run.

Paths in a case's argv use `@c` (the case folder) and `<name>` for an item id of the fixture dataset (`<shoe>`,
`<top>`, `<top1>`, `<accessory>`, `<bottom>`, `<strict_item>`, `<photo_item>`), filled in when the case runs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import runpy
import shutil
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "training_scripts"
SLOTS = ("shoes", "tops", "accessories", "bottoms")
PRECIOUS = "my own notes: must survive every run\n"
ERROR_LINE = re.compile(r"(^|: )error: ")
TEMPORARY = re.compile(r"^\.(tmp|old)-")

# Tiny training flags: every training case runs in seconds.
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
# The fixtures made by training a model (built once per session, on first use): a case needing one is `slow`.
TRAINED = frozenset({"model", "run", "enc", "emb_img", "model_img"})


# --------------------------------------------------------------------------------------------------------------------
# cases


@dataclass
class Case:
    """One hostile (or control) run."""

    id: str
    group: str
    argv: list[str]  # first "@cli" (the umbert-hf command) or "@script:NAME" (training_scripts/NAME.py)
    expect: str = "error"  # "error": must be refused; "ok": a control that must succeed; "either"
    fixtures: tuple[str, ...] = ()
    prepare: Callable[[Path, dict], None] | None = None  # (case folder, item ids) -> None: damages a copy
    check: Callable[[Ctx], str | None] | None = None  # on exit 0: why the result is wrong, or None
    cwd: str = "cwd"  # relative to the case folder
    outputs: tuple[str, ...] = ()  # more places (relative to the case folder) where new files are expected
    replaceable: tuple[str, ...] = ()  # pre-existing paths the run may replace (the tool's own earlier output)
    usage: bool = False  # a refusal may be the usage text alone (exit 2, no `error:` line)
    trains: bool = False  # the run trains a model when it succeeds
    note: str = ""
    min_train_rows: int = 0  # build checks: fewer training outfits than this is a silently degraded dataset

    @property
    def slow(self) -> bool:
        return self.trains or bool(TRAINED.intersection(self.fixtures))


@dataclass
class Ctx:
    case: Case
    cdir: Path
    argv: list[str]
    rc: int
    stdout: str
    stderr: str

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


def fill(text: str, cdir: Path, ids: dict[str, str]) -> str:
    """`@c` -> the case folder, `<name>` -> an item id of the fixture dataset."""
    text = re.sub(r"@c(?=/|$)", lambda _: str(cdir), text)
    for name, value in ids.items():
        text = text.replace(f"<{name}>", value)
    return text


# ----- helpers that prepare bad inputs ------------------------------------------------------------------------------


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


def bad_embeddings(kind: str) -> Callable[[Path, dict], None]:
    """Replace the case's `emb/emb.parquet` (a copy of the random 16-d table) by a broken one."""

    def prepare(cdir: Path, ids: dict) -> None:
        path = cdir / "emb" / "emb.parquet"
        item_ids, categories, embeddings = read_table(path)
        dim = len(embeddings[0])
        if kind == "empty":
            return write_raw_table(path, {"item_id": [], "category": [], "embedding": []}, dim)
        if kind == "not_parquet":
            return write(path, "item_id,category,embedding\n1,shoes,0.1\n")
        if kind == "missing_column":
            return write_raw_table(path, {"item_id": item_ids, "embedding": embeddings}, dim)
        if kind in ("nan", "inf"):
            embeddings[3][2] = float(kind)
        elif kind == "ragged":
            embeddings[5] = embeddings[5][:-1]
            return write_raw_table(path, {"item_id": item_ids, "category": categories, "embedding": embeddings}, None)
        elif kind == "duplicate_ids":
            item_ids, categories, embeddings = (
                item_ids + item_ids[:1],
                categories + categories[:1],
                embeddings + embeddings[:1],
            )
        elif kind == "ids_not_in_dataset":
            item_ids = ["zz" + item_id for item_id in item_ids]
        elif kind == "half_missing":
            item_ids, categories, embeddings = item_ids[::2], categories[::2], embeddings[::2]
        elif kind == "wrong_categories":
            rotate = {slot: SLOTS[(i + 1) % len(SLOTS)] for i, slot in enumerate(SLOTS)}
            categories = [rotate.get(category, category) for category in categories]
        elif kind == "category_whitespace":
            categories = [f" {category} " for category in categories]
        else:
            raise ValueError(kind)
        write_raw_table(path, {"item_id": item_ids, "category": categories, "embedding": embeddings}, dim)

    return prepare


def remove(relative: str) -> Callable[[Path, dict], None]:
    def prepare(cdir: Path, ids: dict) -> None:
        path = cdir / fill(relative, cdir, ids)
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    return prepare


def truncating(relative: str, fraction: float = 0.5) -> Callable[[Path, dict], None]:
    return lambda cdir, ids: truncate(cdir / fill(relative, cdir, ids), fraction)


def writing(relative: str, text: str | bytes) -> Callable[[Path, dict], None]:
    return lambda cdir, ids: write(cdir / relative, text)


def moving(source: str, target: str) -> Callable[[Path, dict], None]:
    def prepare(cdir: Path, ids: dict) -> None:
        (cdir / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(cdir / source, cdir / target)

    return prepare


# ----- checks of a result that exited 0 -----------------------------------------------------------------------------


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
    if not _load_json_file(metadata):
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
    item_ids, _, embeddings = read_table(out)
    if not item_ids:
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
    "convert-csv": check_raw,
    "build": check_build,
    "augment": check_augment,
    "complete": check_complete,
    "finetune": check_training,
    "resume": check_training,
    "pretrain": check_training,
    "evaluate": check_evaluate,
    "compute_embeddings": check_embeddings_file,
    "train_image_encoder": check_image_encoder,
    "hparam_search": check_hparam,
}


# ----- the case list ------------------------------------------------------------------------------------------------
# Left out, because another test already covers them: `build` outputs over the raw folder with --overwrite, over a
# user's folder or a built folder holding a user's file, --overwrite of build's own output, the truncated JPEG with
# --strict and whitespace in the metadata, and `synthesize --overwrite` of a user's folder or of its own output
# (test_builder_safety.py); the killed and interrupted builds (test_builder_safety.py and
# test_dataset_builder.py::test_interrupted_build_leaves_no_output_and_an_existing_dataset_intact); the fine-tuning run
# killed then resumed (test_training_scripts.py::test_resume_after_kill_gives_the_same_final_metrics).
# `compute_embeddings.py` without --image_encoder is no longer an error: it runs the default recipe.


def make_cases() -> list[Case]:
    """Every case, in a stable order (the parametrisation)."""
    outfit = ["--outfit", "shoes=?", "tops=<top>", "accessories=<accessory>", "bottoms=<bottom>"]
    cases: list[Case] = []

    def add(id: str, group: str, argv: list[str], **kw) -> None:
        cases.append(Case(id, group, argv, **kw))

    # --- the command itself
    add("cli_no_args", "cli", cli(), usage=True, note="prints the help")
    add("cli_unknown_command", "cli", cli("frobnicate"))
    add("cli_complete_help", "cli", cli("complete", "--help"), expect="ok", check=check_usage)

    # --- synthesize
    syn = {"--output_dir": "@c/out", "--num_items": "300", "--num_outfits": "400", "--image_size": "32"}
    add("synthesize_missing_output_dir", "synthesize", cli("synthesize"))
    for name, value in [("neg", "-5"), ("nan", "nan")]:
        add(f"synthesize_num_items_{name}", "synthesize", cli("synthesize", *flags(syn, num_items=value)))
    add("synthesize_image_size_zero", "synthesize", cli("synthesize", *flags(syn, image_size="0")))
    add("synthesize_seed_neg", "synthesize", cli("synthesize", *flags(syn, seed="-1")))
    add("synthesize_output_is_file", "synthesize", cli("synthesize", *flags(syn, output_dir="@c/cwd/precious.txt")))
    add("synthesize_overwrite_dot", "synthesize", cli("synthesize", *flags(syn, output_dir=".", overwrite=True)))
    add("synthesize_ok", "synthesize", cli("synthesize", *flags(syn)), expect="ok")

    # --- build
    bld = {"--raw_dir": "@c/raw", "--output_dir": "@c/out"}
    braw = {"fixtures": ("raw",)}
    add("build_missing_raw_dir", "build", cli("build", "--output_dir", "@c/out"))
    add("build_raw_nonexistent", "build", cli("build", *flags(bld, raw_dir="@c/nope")))
    add("build_raw_is_file", "build", cli("build", *flags(bld, raw_dir="@c/cwd/precious.txt")))
    add("build_output_is_file", "build", cli("build", *flags(bld, output_dir="@c/cwd/precious.txt")), **braw)
    add(
        "build_output_inside_raw_images", "build", cli("build", *flags(bld, output_dir="@c/raw/images/dataset")),
        **braw,
    )  # fmt: skip
    add(
        "build_output_dot_overwrite", "build", cli("build", *flags(bld, output_dir=".", overwrite=True)), **braw
    )  # fmt: skip
    add(
        "build_output_parent_of_dataset_overwrite", "build",
        cli("build", *flags(bld, output_dir="@c/data", overwrite=True)),
        fixtures=("raw", "ds"), prepare=moving("ds", "data/ds"),
    )  # fmt: skip
    add("build_split_type_unknown", "build", cli("build", *flags(bld, split_type="random")), **braw)
    add("build_categories_unknown", "build", cli("build", *flags(bld, categories=["shoes", "hats"])), **braw)
    add(
        "build_categories_whitespace", "build",
        cli("build", *flags(bld, categories=[" shoes", "tops ", " accessories ", "bottoms"])),
        expect="either", **braw,
    )  # fmt: skip
    add(
        "build_corrupt_metadata_json", "build", cli("build", *flags(bld)),
        prepare=truncating("raw/polyvore_item_metadata.json", 0.5), **braw,
    )  # fmt: skip

    def surrogate_title(cdir: Path, ids: dict) -> None:
        def edit(items):
            items[ids["strict_item"]]["title"] = "lone \ud800 surrogate"
            items[ids["strict_item"]]["url_name"] = "lone \udfff"

        edit_json(cdir / "raw" / "polyvore_item_metadata.json", edit)

    add(
        "build_lone_surrogate_title",
        "build",
        cli("build", *flags(bld)),
        expect="either",
        prepare=surrogate_title,
        **braw,
    )
    add("build_ok", "build", cli("build", *flags(bld)), expect="ok", **braw)

    # --- convert-mango
    mg = {"--source": "@c/mango", "--output_dir": "@c/out"}
    mfx = {"fixtures": ("mango",)}
    products = "mango/datathon/dataset/product_data.csv"
    add("mango_source_nonexistent", "convert-mango", cli("convert-mango", *flags(mg, source="@c/nope")))
    add("mango_output_is_source", "convert-mango", cli("convert-mango", *flags(mg, output_dir="@c/mango")), **mfx)
    add(
        "mango_output_inside_source", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="@c/mango/datathon/raw")), **mfx,
    )  # fmt: skip
    add(
        "mango_output_parent_overwrite", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="..", overwrite=True)), cwd="mango", **mfx,
    )  # fmt: skip
    add(
        "mango_overwrite_user_folder", "convert-mango",
        cli("convert-mango", *flags(mg, output_dir="@c/mine", overwrite=True)), **mfx,
    )  # fmt: skip
    add("mango_products_missing", "convert-mango", cli("convert-mango", *flags(mg)), prepare=remove(products), **mfx)

    def rename_column(cdir: Path, ids: dict) -> None:
        path = cdir / products
        path.write_text(path.read_text().replace("des_product_family", "des_family", 1))

    add(
        "mango_products_missing_column", "convert-mango", cli("convert-mango", *flags(mg)), prepare=rename_column, **mfx
    )
    add("mango_ok", "convert-mango", cli("convert-mango", *flags(mg)), expect="ok", **mfx)

    # --- convert-csv
    cs = {
        "--products": "@c/shop/products.csv",
        "--outfits": "@c/shop/outfits.csv",
        "--output_dir": "@c/out",
        "--id_column": "SKU",
        "--category_column": "Family",
        "--category_map": ["footwear=shoes", "tops=tops", "trousers=bottoms", "bags=accessories"],
        "--title_columns": ["Name", "Colour"],
        "--image_column": "Photo",
        "--outfit_id_column": "look",
        "--outfit_item_column": "sku",
    }
    sfx = {"fixtures": ("shop",)}
    add("csv_products_nonexistent", "convert-csv", cli("convert-csv", *flags(cs, products="@c/nope.csv")))
    add("csv_missing_column", "convert-csv", cli("convert-csv", *flags(cs, category_column="Familia")), **sfx)
    add(
        "csv_output_is_products",
        "convert-csv",
        cli("convert-csv", *flags(cs, output_dir="@c/shop/products.csv")),
        **sfx,
    )
    add(
        "csv_output_inside_photos",
        "convert-csv",
        cli("convert-csv", *flags(cs, output_dir="@c/shop/photos/raw")),
        **sfx,
    )
    add(
        "csv_overwrite_user_folder",
        "convert-csv",
        cli("convert-csv", *flags(cs, output_dir="@c/mine", overwrite=True)),
        **sfx,
    )

    def other_category(cdir: Path, ids: dict) -> None:
        with open(cdir / "shop" / "products.csv", "a", encoding="utf-8") as handle:
            handle.write('"shoe-0","Tops","a second row","",""\r\n')

    add("csv_id_two_categories", "convert-csv", cli("convert-csv", *flags(cs)), prepare=other_category, **sfx)
    add("csv_ok", "convert-csv", cli("convert-csv", *flags(cs)), expect="ok", **sfx)

    # --- augment
    afx = {"fixtures": ("ds", "emb")}
    add("augment_no_flags", "augment", cli("augment"))
    add("augment_dataset_nonexistent", "augment", cli("augment", *flags(AUG, dataset="@c/nope")), **afx)
    add("augment_embeddings_nonexistent", "augment", cli("augment", *flags(AUG, embeddings="@c/nope.parquet")), **afx)
    add("augment_k_zero", "augment", cli("augment", *flags(AUG, k="0")), **afx)
    add("augment_k_huge", "augment", cli("augment", *flags(AUG, k="100000")), expect="either", **afx)
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
    add(
        "augment_overwrite_user_folder", "augment", cli("augment", *flags(AUG, output_dir="@c/mine", overwrite=True)),
        **afx,
    )  # fmt: skip
    for kind in (
        "empty",
        "not_parquet",
        "nan",
        "ragged",
        "duplicate_ids",
        "ids_not_in_dataset",
        "half_missing",
        "wrong_categories",
        "category_whitespace",
    ):
        add(
            f"augment_embeddings_{kind}", "augment", cli("augment", *flags(AUG)), prepare=bad_embeddings(kind),
            expect="either" if kind == "category_whitespace" else "error", **afx,
        )  # fmt: skip
    add("augment_ok", "augment", cli("augment", *flags(AUG)), expect="ok", **afx)

    # --- finetune
    ffx = {"fixtures": ("ds", "emb")}
    ft = lambda **changes: script("finetune", *flags(FT, **changes))  # noqa: E731
    from_model = {"--model_name_or_path": "@c/model", "--dataset": "@c/ds", "--output_dir": "@c/out"}
    from_model |= {"--num_train_epochs": "1", "--per_device_train_batch_size": "16"}
    add("finetune_no_flags", "finetune", script("finetune"))
    add("finetune_neither_model_nor_embeddings", "finetune", ft(embeddings=None), **ffx)
    add("finetune_dataset_nonexistent", "finetune", ft(dataset="@c/nope"), **ffx)
    add(
        "finetune_model_nonexistent", "finetune", script("finetune", *flags(from_model, model_name_or_path="@c/nope")),
        **ffx,
    )  # fmt: skip
    add(
        "finetune_model_truncated_safetensors", "finetune", script("finetune", *flags(from_model)),
        fixtures=("ds", "model"), prepare=truncating("model/model.safetensors", 0.5),
    )  # fmt: skip
    add(
        "finetune_output_is_model_being_finetuned", "finetune",
        script("finetune", *flags(from_model, output_dir="@c/model")), fixtures=("ds", "model"),
    )  # fmt: skip
    for name, value in [("zero", "0"), ("nan", "nan"), ("inf", "inf")]:
        add(f"finetune_learning_rate_{name}", "finetune", ft(learning_rate=value), **ffx)
    add(
        "finetune_learning_rate_1e8", "finetune", ft(learning_rate="1e8"), expect="either", trains=True, **ffx,
        note="a diverged run must fail or at least not be reported as a good model",
    )  # fmt: skip
    add("finetune_epochs_zero", "finetune", ft(num_train_epochs="0"), **ffx)
    add("finetune_batch_size_zero", "finetune", ft(per_device_train_batch_size="0"), **ffx)
    add(
        "finetune_batch_size_larger_than_data", "finetune", ft(per_device_train_batch_size="100000"), expect="either",
        trains=True, **ffx, note="drop_last with a batch larger than the data: zero optimizer steps",
    )  # fmt: skip
    add("finetune_heads_not_dividing_hidden", "finetune", ft(num_attention_heads="3"), **ffx)
    add("finetune_temperature_zero", "finetune", ft(contrastive_temperature="0"), **ffx)
    add("finetune_metric_unknown", "finetune", ft(metric_for_best_model="accuracy_of_vibes"), **ffx)
    add("finetune_output_is_dataset", "finetune", ft(output_dir="@c/ds"), **ffx)
    add("finetune_output_inside_dataset", "finetune", ft(output_dir="@c/ds/model"), **ffx)
    add("finetune_output_parent_of_dataset", "finetune", ft(output_dir="@c"), **ffx)
    add("finetune_output_is_embeddings_folder", "finetune", ft(output_dir="@c/emb"), **ffx)
    add(
        "finetune_output_dot", "finetune", ft(dataset="ds", embeddings="emb/emb.parquet", output_dir="."), cwd="",
        **ffx,
    )  # fmt: skip
    add(
        "finetune_output_user_folder", "finetune", ft(output_dir="@c/mine"), expect="either", trains=True, **ffx,
        note="mine/ holds the user's README.md: it must survive",
    )  # fmt: skip
    for kind in ("nan", "half_missing", "wrong_categories"):
        add(f"finetune_embeddings_{kind}", "finetune", ft(), prepare=bad_embeddings(kind), **ffx)
    add("finetune_ok", "finetune", ft(), expect="ok", trains=True, **ffx)
    add(
        "finetune_from_model_ok", "finetune", script("finetune", *flags(from_model)), expect="ok",
        fixtures=("ds", "model"),
    )  # fmt: skip

    # resuming: the fixture `run` is a 2-epoch run with epoch_1/ and epoch_2/ checkpoints
    # (with the fixture run's flags: a resumed run must repeat them, see `check_resume_flags`)
    resume = dict(FT, **{"--output_dir": "@c/run", "--num_train_epochs": "2", "--checkpointing_steps": "epoch"})
    resume["--patience"] = "0"
    rfx = {"fixtures": ("ds", "emb", "run")}
    rs = lambda **changes: script("finetune", *flags(resume, **changes))  # noqa: E731
    add("resume_missing_folder", "resume", rs(resume_from_checkpoint="@c/run/epoch_9"), **rfx)
    add("resume_not_a_checkpoint", "resume", rs(resume_from_checkpoint="@c/ds"), **rfx)
    for name, file in [
        ("model", "model.safetensors"),
        ("random_states", "random_states_0.pkl"),
        ("optimizer", "optimizer.bin"),
    ]:
        add(
            f"resume_truncated_{name}", "resume", rs(resume_from_checkpoint="@c/run/epoch_1"),
            prepare=truncating(f"run/epoch_1/{file}", 0.5), **rfx,
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
    add("pretrain_learning_rate_1e8", "pretrain", pt(learning_rate="1e8"), expect="either", trains=True, **ffx)
    add("pretrain_output_is_dataset", "pretrain", pt(output_dir="@c/ds"), **ffx)
    add("pretrain_ok", "pretrain", pt(), expect="ok", trains=True, **ffx)

    # --- evaluate
    ev = lambda **changes: script("evaluate", *flags(EV, **changes))  # noqa: E731
    eb = lambda **changes: script("evaluate", *flags(EV_BASE, **changes))  # noqa: E731
    efx = {"fixtures": ("ds", "model"), "outputs": ("model/eval_test.json", "model/eval_validation.json")}
    bfx = {"fixtures": ("ds", "emb")}
    add("evaluate_no_model_or_baseline", "evaluate", ev(model_name_or_path=None), **efx)
    add("evaluate_model_and_baseline", "evaluate", ev(baseline="random"), **efx)
    add("evaluate_baseline_without_embeddings", "evaluate", eb(embeddings=None), **bfx)
    add("evaluate_model_nonexistent", "evaluate", ev(model_name_or_path="@c/nope"), **efx)
    add(
        "evaluate_model_truncated_safetensors", "evaluate", ev(), prepare=truncating("model/model.safetensors", 0.5),
        **efx,
    )  # fmt: skip
    add("evaluate_dataset_nonexistent", "evaluate", ev(dataset="@c/nope"), **efx)
    add("evaluate_split_unknown", "evaluate", ev(split="dev"), **efx)
    add("evaluate_batch_size_zero", "evaluate", ev(per_device_eval_batch_size="0"), **efx)
    add("evaluate_output_file_is_folder", "evaluate", ev(output_file="@c/mine"), **efx)
    add(
        "evaluate_output_file_is_dataset_card", "evaluate", ev(output_file="@c/ds/README.md"), **efx,
        note="would overwrite the dataset's README (its configs)",
    )  # fmt: skip
    add(
        "evaluate_model_embeddings_other_dim", "evaluate", ev(embeddings="@c/emb32/emb.parquet"),
        fixtures=("ds", "model", "emb32"), outputs=efx["outputs"],
    )  # fmt: skip
    for kind in ("empty", "ids_not_in_dataset"):
        add(f"evaluate_baseline_embeddings_{kind}", "evaluate", eb(), prepare=bad_embeddings(kind), **bfx)
    add("evaluate_model_ok", "evaluate", ev(), expect="ok", **efx)
    add("evaluate_baseline_ok", "evaluate", eb(), expect="ok", **bfx)

    # --- compute_embeddings
    ce = lambda **changes: script("compute_embeddings", *flags(CE, **changes))  # noqa: E731
    cfx = {"fixtures": ("ds", "enc")}
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
    add(
        "embeddings_dataset_without_images", "compute_embeddings", ce(dataset="@c/ds_noimg"),
        fixtures=("ds_noimg", "enc"),
    )  # fmt: skip
    add("embeddings_ok", "compute_embeddings", ce(), expect="ok", **cfx)

    # --- train_image_encoder
    ie = lambda **changes: script("train_image_encoder", *flags(IE, **changes))  # noqa: E731
    ifx = {"fixtures": ("ds",)}
    for name, value in [("16", "16"), ("zero", "0")]:
        add(f"image_encoder_image_size_{name}", "train_image_encoder", ie(image_size=value), **ifx)
    add("image_encoder_validation_fraction_nan", "train_image_encoder", ie(validation_fraction="nan"), **ifx)
    add("image_encoder_learning_rate_neg", "train_image_encoder", ie(learning_rate="-1"), **ifx)
    add("image_encoder_epochs_zero", "train_image_encoder", ie(num_train_epochs="0"), **ifx)
    add("image_encoder_embedding_dim_zero", "train_image_encoder", ie(embedding_dim="0"), **ifx)
    add("image_encoder_output_is_dataset", "train_image_encoder", ie(output_dir="@c/ds"), **ifx)
    add(
        "image_encoder_dataset_without_images", "train_image_encoder", ie(dataset="@c/ds_noimg"), fixtures=("ds_noimg",)
    )
    add("image_encoder_ok", "train_image_encoder", ie(), expect="ok", trains=True, **ifx)

    # --- hparam_search
    hp = lambda **changes: script("hparam_search", *flags(HP, **changes))  # noqa: E731
    hfx = {"fixtures": ("ds", "emb")}
    add("hparam_n_trials_zero", "hparam_search", hp(n_trials="0"), **hfx)
    add("hparam_space_not_json", "hparam_search", hp(space="{layers: 1"), **hfx)
    add("hparam_space_unknown_name", "hparam_search", hp(space='{"num_layers": [1]}'), **hfx)
    add("hparam_output_is_dataset", "hparam_search", hp(output_dir="@c/ds"), **hfx)
    add(
        "hparam_batch_size_zero", "hparam_search",
        hp(per_device_train_batch_size="0", num_train_epochs_pretrain="1",
           space='{"num_hidden_layers": [1], "num_attention_heads": [2]}'),
        note="the space leaves the batch size alone, so the flag's 0 reaches pre-training", **hfx,
    )  # fmt: skip
    add("hparam_ok", "hparam_search", hp(), expect="ok", trains=True, **hfx)

    # --- complete
    cp = lambda *more, model="@c/model": cli("complete", "--model", model, *(more or outfit))  # noqa: E731
    kfx = {"fixtures": ("model",)}
    add("complete_no_outfit", "complete", cli("complete", "--model", "@c/model"), **kfx)
    add("complete_model_nonexistent", "complete", cp(model="@c/nope"))
    add(
        "complete_model_truncated_safetensors", "complete", cp(), prepare=truncating("model/model.safetensors", 0.5),
        **kfx,
    )  # fmt: skip
    add(
        "complete_unknown_id", "complete",
        cp("--outfit", "shoes=?", "tops=000000000", "accessories=<accessory>", "bottoms=<bottom>"), **kfx,
    )  # fmt: skip
    add(
        "complete_wrong_category_item", "complete",
        cp("--outfit", "shoes=<top1>", "tops=?", "accessories=<accessory>", "bottoms=<bottom>"), **kfx,
    )  # fmt: skip
    add(
        "complete_two_blanks", "complete",
        cp("--outfit", "shoes=?", "tops=?", "accessories=<accessory>", "bottoms=<bottom>"), **kfx,
    )  # fmt: skip
    add(
        "complete_no_blank", "complete",
        cp("--outfit", "shoes=<shoe>", "tops=<top>", "accessories=<accessory>", "bottoms=<bottom>"), **kfx,
    )  # fmt: skip
    add("complete_malformed_outfit", "complete", cp("--outfit", "shoes", "tops:<top>", "accessories=?"), **kfx)
    add("complete_top_k_zero", "complete", cp(*outfit, "--top_k", "0"), **kfx)
    add("complete_top_k_huge", "complete", cp(*outfit, "--top_k", "100000"), expect="either", **kfx)
    add("complete_render_without_dataset", "complete", cp(*outfit, "--render", "@c/out/completion.png"), **kfx)
    photo_outfit = ["--outfit", "shoes=?", "tops=@c/raw/images/<photo_item>.jpg", "accessories=<accessory>"]
    photo_outfit += ["bottoms=<bottom>"]
    add(
        "complete_photo_not_an_image", "complete",
        cp("--outfit", "shoes=?", "tops=@c/cwd/precious.txt", "accessories=<accessory>", "bottoms=<bottom>",
           model="@c/model_img"),
        fixtures=("model_img",),
    )  # fmt: skip
    add(
        "complete_photo_truncated_jpeg", "complete", cp(*photo_outfit, model="@c/model_img"),
        fixtures=("model_img", "raw"), prepare=truncating("raw/images/<photo_item>.jpg", 0.3),
    )  # fmt: skip
    add(
        "complete_photo_model_without_encoder", "complete", cp(*photo_outfit), fixtures=("model", "raw"),
        note="the model's embeddings came from no image encoder",
    )  # fmt: skip
    add(
        "complete_photo_moved_image_encoder", "complete", cp(*photo_outfit, model="@c/model_img"),
        fixtures=("model_img", "raw"), prepare=remove("model_img/image_encoder"),
        note="the encoder that embedded the catalogue was moved (the set-up moved enc_src/ to enc/) and the model "
        "folder has no image_encoder/ copy",
    )  # fmt: skip
    add("complete_photo_ok", "complete", cp(*photo_outfit, model="@c/model_img"), expect="ok",
        fixtures=("model_img", "raw"))  # fmt: skip
    add(
        "complete_render_ok", "complete", cp(*outfit, "--render", "@c/out/completion.png", "--dataset", "@c/ds"),
        expect="ok", fixtures=("model", "ds"),
    )  # fmt: skip
    add("complete_ok", "complete", cp(*outfit, "--top_k", "3"), expect="ok", **kfx)

    # --- demo (only inputs that must be refused before the long pipeline starts)
    add("demo_num_items_neg", "demo", cli("demo", *flags(DEMO, num_items="-5")))
    add("demo_image_size_zero", "demo", cli("demo", *flags(DEMO, image_size="0")))
    add("demo_output_is_file", "demo", cli("demo", *flags(DEMO, output_dir="@c/cwd/precious.txt")))
    return cases


# --------------------------------------------------------------------------------------------------------------------
# running a command in this process


def invoke(argv: list[str]) -> tuple[int, str | None]:
    """Run `argv` (first `@cli` or `@script:NAME`) in this process: (exit status, traceback text or None).

    The exit status is what the process would exit with: `main`'s return value or `SystemExit`'s code; an exception
    that escapes is what a user would see as a traceback.
    """
    try:
        if argv[0] == "@cli":
            from umbert_hf.apps.cli import main

            code = main(argv[1:])
        else:
            path = SCRIPTS / (argv[0].split(":", 1)[1] + ".py")
            saved = sys.argv
            sys.argv = [str(path), *argv[1:]]
            try:
                runpy.run_path(str(path), run_name="__main__")
                code = 0
            finally:
                sys.argv = saved
    except SystemExit as exit:
        code = exit.code
    except BaseException:
        return 1, traceback.format_exc()
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("message"): printed on stderr, exit status 1
        print(code, file=sys.stderr)
        code = 1
    return code, None


# --------------------------------------------------------------------------------------------------------------------
# the fixtures, built in this process on first use


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


TINY = ["--num_train_epochs", "1", "--num_hidden_layers", "1", "--num_attention_heads", "2"]
TINY += ["--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64"]


class BadInputFixtures:
    """The shared inputs of the cases, under `root`, each built on first use (a run of `-m "not slow"` trains none).

    raw: a synthetic raw folder (300 items, 400 outfits, 32 px); ds / ds_noimg: its dataset with and without images;
    emb / emb32: random 16-d and 32-d embeddings tables of the catalogue; model: a tiny fine-tuned umBERT (1 epoch,
    1 layer, 2 heads); run: a 2-epoch run with epoch_N checkpoints; enc, emb_img, model_img: a tiny ResNet image
    encoder (untrained), its embeddings table and a model fine-tuned on it (the encoder folder is then moved, as a
    user would); mango: a small MANGO checkout; shop: products and outfits tables with photos (`convert-csv`). Each
    case works on copies.
    """

    def __init__(self, root: Path):
        self.root = root
        self.built: set[str] = set()
        self._ids: dict[str, str] | None = None

    def path(self, name: str) -> Path:
        if name not in self.built:
            self._build(name)
        return self.root / name

    def _run(self, argv: list[str], name: str) -> None:
        code, trace = invoke([fill(arg, self.root, {}) for arg in argv])
        if trace is not None or code != 0:
            raise RuntimeError(f"the set-up of fixture {name!r} failed (exit {code}):\n{trace or ''}")

    def _built(self, *names: str) -> None:
        self.built.update(names)

    def _build(self, name: str) -> None:
        from dataset_builder import build_dataset, synthesize_polyvore

        root = self.root
        if name == "raw":
            synthesize_polyvore(root / "raw", num_items=300, num_outfits=400, image_size=32)
        elif name == "ds":
            build_dataset(self.path("raw"), root / "ds")
        elif name == "ds_noimg":
            build_dataset(self.path("raw"), root / "ds_noimg", with_images=False)
        elif name in ("emb", "emb32"):
            import numpy as np
            import pyarrow.parquet as pq

            from umbert_hf.data.embeddings import write_embeddings_table

            catalogue = next((self.path("ds") / "catalogue").glob("*.parquet"))
            table = pq.read_table(catalogue, columns=["item_id", "category"]).to_pydict()
            rng = np.random.default_rng(0)
            for table_name, dim in (("emb", 16), ("emb32", 32)):
                embeddings = rng.standard_normal((len(table["item_id"]), dim)).astype("float32")
                write_embeddings_table(
                    root / table_name / "emb.parquet", table["item_id"], table["category"], embeddings
                )
            self._built("emb32")
            name = "emb"
        elif name == "model":
            self.path("emb")
            self._run(["@script:finetune", *flags(FT, dataset="@c/ds", embeddings="@c/emb/emb.parquet")]
                      + ["--output_dir", "@c/model"], name)  # fmt: skip
        elif name == "run":
            self.path("emb")
            self._run(["@script:finetune", *flags(FT, dataset="@c/ds", embeddings="@c/emb/emb.parquet")]
                      + ["--output_dir", "@c/run", "--num_train_epochs", "2", "--checkpointing_steps", "epoch",
                         "--patience", "0"], name)  # fmt: skip
        elif name in ("enc", "emb_img", "model_img"):
            self.path("ds")
            self._save_untrained_encoder(root / "enc_src")  # training one is the case image_encoder_ok
            self._run(["@script:compute_embeddings",
                       *flags(CE, dataset="@c/ds", image_encoder="@c/enc_src", output="@c/emb_img/emb.parquet")],
                      name)  # fmt: skip
            self._run(["@script:finetune", *flags(FT, dataset="@c/ds", embeddings="@c/emb_img/emb.parquet")]
                      + ["--output_dir", "@c/model_img"], name)  # fmt: skip
            shutil.move(root / "enc_src", root / "enc")  # the user moves the encoder folder after training the model
            self._built("emb_img", "model_img")
            name = "enc"
        elif name == "mango":
            make_mango_checkout(root / "mango")
        elif name == "shop":
            from test_convert_csv import make_shop

            make_shop(root)
        else:
            raise KeyError(f"no fixture {name!r}")
        self._built(name)

    def _save_untrained_encoder(self, folder: Path) -> None:
        """A tiny ResNet image encoder (32 px, 16-d) with random weights, saved as `train_image_encoder.py` does."""
        import pyarrow.parquet as pq
        import torch

        from umbert_hf import FashionResNetConfig, FashionResNetModel

        catalogue = next((self.path("ds") / "catalogue").glob("*.parquet"))
        categories = sorted(set(pq.read_table(catalogue, columns=["category"]).column("category").to_pylist()))
        torch.manual_seed(0)
        config = FashionResNetConfig(image_size=32, embedding_dim=16, categories=categories)
        FashionResNetModel(config).save_pretrained(folder)

    def ids(self) -> dict[str, str]:
        """Item ids for the cases: the first catalogue ids per slot, an item of a training outfit, a photo."""
        if self._ids is None:
            import pyarrow.parquet as pq

            ds = self.path("ds")
            table = pq.read_table(next((ds / "catalogue").glob("*.parquet")), columns=["item_id", "category"])
            by_slot: dict[str, list[str]] = {}
            for item_id, category in zip(table.column("item_id").to_pylist(), table.column("category").to_pylist()):
                by_slot.setdefault(category, []).append(item_id)
            train = pq.read_table(next((ds / "outfits").glob("train-*.parquet")))
            first = train.slice(0, 1).to_pylist()[0]
            self._ids = {
                "shoe": by_slot["shoes"][0],
                "top": by_slot["tops"][0],
                "top1": by_slot["tops"][1],
                "accessory": by_slot["accessories"][0],
                "bottom": by_slot["bottoms"][0],
                "strict_item": first["tops"],
                "photo_item": by_slot["tops"][1],
                "train_rows": str(train.num_rows),
            }
        return self._ids


# --------------------------------------------------------------------------------------------------------------------
# one case: run, then judge


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `root`."""
    hashes = {}
    for dirpath, _, filenames in os.walk(root):
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


def named_outputs(case: Case, cdir: Path, argv: list[str]) -> list[str]:
    """Relative paths (to the case folder) of the outputs named on the command line, plus the case's extras."""
    names = []
    for flag in ("--output_dir", "--output", "--output_file", "--render"):
        if flag in argv[1:-1]:
            path = Path(os.path.normpath(cdir / case.cwd / argv[argv.index(flag) + 1]))
            try:
                names.append(str(path.relative_to(cdir)) if path != cdir else "")
            except ValueError:
                pass  # outside the case folder
    return names + list(case.outputs)


@dataclass
class Outcome:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    trace: str | None
    lost: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    problem: str | None = None


def run_case(case: Case, fixtures: BadInputFixtures, tmp_path: Path, monkeypatch, capsys) -> Outcome:
    """Prepare the case folder, run the case in this process from its working folder, and compare the files."""
    cdir = tmp_path / "case"
    (cdir / "cwd").mkdir(parents=True)
    (cdir / "cwd" / "precious.txt").write_text(PRECIOUS)
    (cdir / "mine" / "notes").mkdir(parents=True)
    (cdir / "mine" / "precious.txt").write_text(PRECIOUS)
    (cdir / "mine" / "README.md").write_text("# My project\n\n" + PRECIOUS)
    (cdir / "mine" / "notes" / "plan.md").write_text(PRECIOUS)
    for name in case.fixtures:
        shutil.copytree(fixtures.path(name), cdir / name, symlinks=True)
    needs_ids = case.prepare is not None or any("<" in arg for arg in case.argv) or case.group == "build"
    ids = fixtures.ids() if needs_ids else {}
    case.min_train_rows = int(ids.get("train_rows", 0)) // 2 if case.group == "build" else 0
    if case.prepare is not None:
        case.prepare(cdir, ids)
    argv = [fill(arg, cdir, ids) for arg in case.argv]
    before = snapshot(cdir)

    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")  # outside the case folder
    monkeypatch.chdir(cdir / case.cwd)
    capsys.readouterr()
    rc, trace = invoke(argv)
    stdout, stderr = capsys.readouterr()
    monkeypatch.undo()

    after = snapshot(cdir)
    outputs = named_outputs(case, cdir, argv)
    outcome = Outcome(argv, rc, stdout, stderr, trace)
    outcome.lost = [p for p, d in before.items() if after.get(p) != d and not _under(p, list(case.replaceable))]
    outcome.strays = [p for p in after if p not in before and not _under(p, outputs)]
    if rc == 0 and trace is None:
        checker = case.check or DEFAULT_CHECKS.get(case.group)
        if checker is not None:
            try:
                outcome.problem = checker(Ctx(case, cdir, argv, rc, stdout, stderr))
            except Exception as error:
                outcome.problem = f"the result could not be read: {type(error).__name__}: {error}"
    return outcome


def _lines(text: str) -> list[str]:
    lines = [line.split("\r")[-1].strip() for line in text.splitlines()]
    return [line for line in lines if line]


def assert_outcome(case: Case, outcome: Outcome) -> None:
    """The classifier as an assertion: what a refused input and a control input must each give."""
    stderr_lines = _lines(outcome.stderr)
    shown = "\n".join(stderr_lines[-8:])
    where = f"{case.id}: umbert-hf/{case.argv[0]} {' '.join(outcome.argv[1:])}"
    if outcome.lost:
        pytest.fail(f"{where}\nuser files deleted or changed: {outcome.lost[:5]}\nstderr:\n{shown}")
    if outcome.trace is not None:
        pytest.fail(f"{where}\na traceback instead of a message:\n{outcome.trace}")
    if "Traceback (most recent call last)" in outcome.stderr:
        pytest.fail(f"{where}\na traceback on stderr:\n{outcome.stderr[-4000:]}")
    if outcome.strays:
        pytest.fail(f"{where}\nwrote outside the folders named on the command line: {outcome.strays[:5]}")
    if case.expect == "error" or (case.expect == "either" and outcome.rc != 0):
        assert outcome.rc != 0, (
            f"{where}\nexit 0 on an input that must be refused\nstdout tail: {outcome.stdout[-800:]}"
        )
        assert outcome.rc == 2, f"{where}\nrefused with exit {outcome.rc}, not 2:\n{shown}"
        errors = [line for line in stderr_lines if ERROR_LINE.search(line)]
        if case.usage and not errors:
            assert "usage:" in (outcome.stdout + outcome.stderr).lower(), f"{where}\nexit 2 without usage or error"
            return
        assert len(errors) == 1, f"{where}\n{len(errors)} `error:` lines, not one:\n{shown}"
        assert stderr_lines[-1] == errors[0], f"{where}\nthe `error:` line is not the last line of stderr:\n{shown}"
        return
    assert outcome.rc == 0, f"{where}\na valid input was refused (exit {outcome.rc}):\n{shown}"
    assert not (stderr_lines and ERROR_LINE.search(stderr_lines[-1])), f"{where}\nexit 0 after an error:\n{shown}"
    assert outcome.problem is None, f"{where}\nexit 0 with a wrong result: {outcome.problem}"
