"""The full pipeline at Polyvore Outfits size, end to end: wall time, throughput, peak memory and disk of every stage.

    python benchmarks/full_size.py --output full_size_250k.json                  # 250,000 items, 68,000 outfits
    python benchmarks/full_size.py --scale 0.1 --output full_size_25k.json       # 25,000 items, 6,800 outfits

It synthesises a raw Polyvore folder of `--num_items` items and `--num_outfits` outfits with `--image_size` photos,
then runs every stage as a user would, each in its own process (`python -m dataset_builder ...`,
`python training_scripts/X.py ...`, `python -m umbert_hf.apps.cli complete ...`) with the scripts' defaults except:

- image encoder: the ResNet-18 at 64 px as the demo trains it, `--num_train_epochs 1 --max_train_steps N`
  (N = `--image_encoder_steps`, 140 by default: 8,960 images), validated on its usual tenth of the catalogue;
- embeddings: every catalogue item, through that encoder and all-MiniLM-L6-v2 over the titles
  (`--embedding_recipe trained`, the demo's recipe); `--embedding_recipe default` runs the script's own default
  (frozen EfficientNet-Lite0 at 224 px + MiniLM), about 20 images/s on 2 CPU cores;
- fine-tuning: `--num_train_epochs 1`, with `--max_train_steps N` when `--finetune_steps N` is given;
- evaluation: the model, then `--baseline random` and `--baseline context_mean`, on the test split;
- `complete`: one test outfit with its accessory blank; app start-up: `build_app(model, dataset)`, not launched.

For each stage it records the wall time, the throughput, the peak resident memory of the stage's process (exact:
`ru_maxrss` of `os.wait4` on the child, which also covers the children it waited for), the bytes on disk of what it
wrote (its outputs and the growth of the `datasets` cache), and the load average before it starts (the machine may
be shared). Then it counts the FLOPs of every model stage on one batch (`torch.utils.flop_counter.FlopCounterMode`)
and the aten operations it dispatches, times that batch on this CPU, and estimates the time on one GPU (see
`gpu_estimate`). It prints a Markdown table; `--output` writes everything as JSON.

The work folder (`--work_dir`, default a new temporary folder) holds a marker file: an existing folder without it is
refused, and it is removed at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umbert_hf.utils.files import write_json  # noqa: E402
from umbert_hf.utils.paths import check_output, run_command  # noqa: E402

MARKER = ".umbert_full_size_benchmark"
DATASETS_CACHE = "hf_datasets_cache"
# The assumed GPU: an H100/H200-class accelerator at a realistic share of its dense peak (see `gpu_estimate`).
GPU_PEAK_FLOPS = {"fp32": 67e12, "bf16": 989e12}
GPU_EFFICIENCY = 0.35
GPU_SECONDS_PER_OP = 8e-6  # eager PyTorch on a GPU: launch and dispatch cost of one aten operation


@dataclass
class Stage:
    """One command of the pipeline: what it runs, what it writes, and what its throughput counts."""

    name: str
    argv: list[str]
    outputs: list[str]
    unit: str = "items"
    count: int = 0  # filled once known (after the build, the image encoder, ...)
    record: dict = field(default_factory=dict)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_items", type=int, default=250_000, help="Raw items (scaled by --scale).")
    parser.add_argument("--num_outfits", type=int, default=68_000, help="Raw outfits (scaled by --scale).")
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply both counts, e.g. 0.1 for 25k / 6.8k.")
    parser.add_argument("--image_size", type=int, default=64, help="Side of the synthetic photos.")
    parser.add_argument("--image_encoder_steps", type=int, default=140, help="--max_train_steps of the image encoder.")
    parser.add_argument(
        "--finetune_steps", type=int, default=None, help="--max_train_steps of fine-tuning (default: one whole epoch)."
    )
    parser.add_argument("--embedding_recipe", choices=("trained", "default"), default="trained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work_dir", default=None, help="A new folder for every output (default: a temporary one).")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder afterwards.")
    parser.add_argument("--output", default=None, help="Write the records as JSON.")
    parser.add_argument("--no_gpu_estimate", action="store_true", help="Skip the FLOP count and the GPU estimate.")
    args = parser.parse_args(argv)
    args.num_items, args.num_outfits = round(args.num_items * args.scale), round(args.num_outfits * args.scale)
    if min(args.num_items, args.num_outfits, args.image_size, args.image_encoder_steps, args.finetune_steps or 1) < 1:
        parser.error("the counts, --image_size and the step bounds must be positive.")
    return args


# --- measuring -----------------------------------------------------------------------------------------------------


def disk_bytes(path: Path) -> int:
    """Bytes of the files under `path` (or of the file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(entry.stat().st_size for entry in path.rglob("*") if entry.is_file() and not entry.is_symlink())


class RssSampler(threading.Thread):
    """Samples the anonymous and the file-backed parts of a process's RSS (`/proc/PID/status`) until it ends.

    The peak of `os.wait4` is exact but counts both: file pages (memory-mapped arrow files, shared libraries) are
    the page cache's, which the kernel takes back under pressure; anonymous pages are the process's own memory.
    """

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.path, self.interval = f"/proc/{pid}/status", interval
        self.peaks = {"RssAnon": 0, "RssFile": 0}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                with open(self.path) as status:
                    for line in status:
                        name, _, value = line.partition(":")
                        if name in self.peaks:
                            self.peaks[name] = max(self.peaks[name], int(value.split()[0]))  # KiB
            except (OSError, ValueError):
                return
            self.done.wait(self.interval)


def run_measured(argv: list[str], log: Path, env: dict) -> dict:
    """Run `argv` in a child process; its wall time and exact peak RSS (`os.wait4`). Raises on a non-zero exit."""
    began = time.perf_counter()
    with open(log, "w") as output:
        child = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        sampler = RssSampler(child.pid)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        sampler.done.set()
        sampler.join()
    seconds = time.perf_counter() - began
    child.returncode = os.waitstatus_to_exitcode(status)  # wait4 reaped it: tell Popen
    if child.returncode != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(argv[:4])} ... exited with {child.returncode}:\n{tail}")
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "peak_rss_anon_mib": sampler.peaks["RssAnon"] / 1024,  # sampled every 0.2 s
        "peak_rss_file_mib": sampler.peaks["RssFile"] / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def run_stage(stage: Stage, work: Path, env: dict) -> None:
    cache = work / DATASETS_CACHE
    cache_before = disk_bytes(cache) if cache.exists() else 0
    load = os.getloadavg()
    print(f"[full_size] {stage.name}: {' '.join(stage.argv[1:])}", flush=True)
    measured = run_measured(stage.argv, work / "logs" / f"{stage.name.replace(' ', '_')}.log", env)
    written = sum(disk_bytes(work / output) for output in stage.outputs if (work / output).exists())
    cache_growth = (disk_bytes(cache) if cache.exists() else 0) - cache_before
    stage.record = {
        **measured,
        "load_average_before": [round(value, 2) for value in load],
        "disk_mib": (written + cache_growth) / 2**20,
        "datasets_cache_mib": cache_growth / 2**20,
    }
    print(
        f"[full_size] {stage.name}: {measured['seconds']:.1f} s, peak RSS {measured['peak_rss_mib']:.0f} MiB",
        flush=True,
    )


# --- the pipeline --------------------------------------------------------------------------------------------------


def first_test_outfit(dataset: Path) -> dict[str, str]:
    import pyarrow.parquet as pq

    table = pq.read_table(next((dataset / "outfits").glob("test-*.parquet")))
    return {name: str(table.column(name)[0]) for name in table.column_names if name != "outfit_id"}


def pipeline(args: argparse.Namespace, work: Path) -> list[Stage]:
    """The stages in order; `count`s are filled by `fill_counts` once the earlier stages have written their files."""
    python, seed = sys.executable, str(args.seed)
    scripts = ROOT / "training_scripts"
    raw, dataset, encoder, embeddings = work / "raw", work / "dataset", work / "image_encoder", work / "emb.parquet"
    model, evaluation = work / "umbert", work / "eval"
    encoders = []
    if args.embedding_recipe == "trained":
        from umbert_hf.data.extraction import bundled_text_encoder

        encoders = ["--image_encoder", str(encoder)]
        if bundled_text_encoder():
            encoders += ["--text_encoder", bundled_text_encoder()]
    stages = [
        Stage(
            "synthesize",
            [python, "-m", "dataset_builder", "synthesize", "--output_dir", str(raw), "--seed", seed]
            + ["--num_items", str(args.num_items), "--num_outfits", str(args.num_outfits)]
            + ["--image_size", str(args.image_size)],
            ["raw"],
        ),
        Stage(
            "build",
            [python, "-m", "dataset_builder", "build", "--raw_dir", str(raw), "--output_dir", str(dataset)],
            ["dataset"],
        ),
        Stage(
            "image encoder",
            [python, str(scripts / "train_image_encoder.py"), "--encoder", "resnet", "--dataset", str(dataset)]
            + ["--output_dir", str(encoder), "--image_size", "64", "--num_train_epochs", "1"]
            + ["--max_train_steps", str(args.image_encoder_steps), "--seed", seed],
            ["image_encoder"],
            unit="images",
        ),
        Stage(
            "embeddings",
            [python, str(scripts / "compute_embeddings.py"), "--dataset", str(dataset), *encoders]
            + ["--output", str(embeddings), "--seed", seed, "--no_progress"],
            ["emb.parquet"],
        ),
        Stage(
            "fine-tuning",
            [python, str(scripts / "finetune.py"), "--embeddings", str(embeddings), "--dataset", str(dataset)]
            + ["--output_dir", str(model), "--num_train_epochs", "1", "--seed", seed]
            + (["--max_train_steps", str(args.finetune_steps)] if args.finetune_steps else []),
            ["umbert"],
            unit="outfits",
        ),
        Stage(
            "evaluate umBERT",
            [python, str(scripts / "evaluate.py"), "--model_name_or_path", str(model), "--dataset", str(dataset)]
            + ["--split", "test", "--output_file", str(evaluation / "umbert_test.json"), "--seed", seed],
            ["eval/umbert_test.json"],
            unit="outfits",
        ),
    ]
    for baseline in ("random", "context_mean"):
        stages.append(
            Stage(
                f"evaluate {baseline}",
                [python, str(scripts / "evaluate.py"), "--baseline", baseline, "--dataset", str(dataset)]
                + ["--embeddings", str(embeddings), "--split", "test", "--seed", seed]
                + ["--output_file", str(evaluation / f"{baseline}_test.json")],
                [f"eval/{baseline}_test.json"],
                unit="outfits",
            )
        )
    stages.append(Stage("complete", [], [], unit="outfits"))  # its outfit comes from the built dataset
    app = (
        "import sys; from umbert_hf.apps.app import build_app; "
        "page = build_app(sys.argv[1], sys.argv[2]); print('app built:', type(page).__name__)"
    )
    stages.append(Stage("app start-up", [python, "-c", app, str(model), str(dataset)], [], unit="items"))
    return stages


def fill_counts(stage: Stage, work: Path, num_items: int) -> None:
    """What the stage's throughput counts, from the files the pipeline wrote so far."""
    summary = json.loads((work / "dataset" / "build_summary.json").read_text()) if (work / "dataset").exists() else {}
    catalogue = summary.get("catalogue", {}).get("total", 0)
    if stage.name in ("synthesize", "build"):
        stage.count = num_items  # raw items written, then read
    elif stage.name == "image encoder":
        metrics = json.loads((work / "image_encoder" / "metrics.json").read_text())
        stage.count = metrics["global_step"] * 64 + metrics["num_validation_images"]  # trained, then validated
        stage.record["steps"] = metrics["global_step"]
    elif stage.name in ("embeddings", "app start-up"):
        stage.count = catalogue
    elif stage.name == "fine-tuning":
        metrics = json.loads((work / "umbert" / "metrics.json").read_text())
        stage.count = summary["outfits"]["train"]["kept"]
        stage.record["steps"] = metrics["global_step"]
        # Where the stage's time went, as the run itself measured it (`metrics.json`).
        for name in ("train_runtime", "validation_runtime", "final_evaluation_runtime", "baselines_runtime"):
            stage.record[name] = metrics.get(name)
    elif stage.name.startswith("evaluate"):
        stage.count = summary["outfits"]["test"]["kept"]
        # The work that ranking defines: every test outfit's item ranked among every item of its category.
        slots = [name for name in summary.get("catalogue", {}) if name != "total"]
        stage.record["ranked_pairs"] = stage.count * sum(summary["catalogue"][slot] for slot in slots)
    elif stage.name == "complete":
        stage.count = 1
    if stage.record.get("seconds"):
        stage.record["per_second"] = stage.count / stage.record["seconds"]


def run_pipeline(args: argparse.Namespace, work: Path) -> list[Stage]:
    env = {
        **os.environ,
        "HF_DATASETS_CACHE": str(work / DATASETS_CACHE),  # the arrow caches of this run, counted and removed with it
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
    }
    (work / "logs").mkdir()
    stages = pipeline(args, work)
    for stage in stages:
        if stage.name == "complete":
            outfit = first_test_outfit(work / "dataset")
            blank = "accessories" if "accessories" in outfit else next(iter(outfit))
            assignments = [f"{slot}={'?' if slot == blank else item}" for slot, item in outfit.items()]
            stage.argv = [sys.executable, "-m", "umbert_hf.apps.cli", "complete", "--model", str(work / "umbert")]
            stage.argv += ["--outfit", *assignments, "--top_k", "5", "--dataset", str(work / "dataset")]
        run_stage(stage, work, env)
        fill_counts(stage, work, args.num_items)
    return stages


# --- the table -----------------------------------------------------------------------------------------------------


def markdown_table(stages: list[Stage], estimate: dict | None = None) -> str:
    header = "| stage | wall time (s) | throughput | peak RSS (MiB) | of it anon. / file | disk written (MiB) | load before |"
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if estimate:
        header += " GFLOP | est. one GPU (s) |"
        rule += "---:|---:|"
    lines = [header, rule]
    for stage in stages:
        record = stage.record
        throughput = f"{record.get('per_second', 0):,.1f} {stage.unit}/s" if stage.name != "complete" else "1 outfit"
        if record.get("ranked_pairs") and record.get("seconds"):
            throughput += f" ({record['ranked_pairs'] / record['seconds'] / 1e6:,.0f} M ranked pairs/s)"
        line = (
            f"| {stage.name} | {record['seconds']:,.1f} | {throughput} | {record['peak_rss_mib']:,.0f} | "
            f"{record['peak_rss_anon_mib']:,.0f} / {record['peak_rss_file_mib']:,.0f} | "
            f"{record['disk_mib']:,.1f} | {record['load_average_before'][0]:.1f} |"
        )
        if estimate:
            gpu = estimate["stages"].get(stage.name, {})
            flops = gpu.get("gflop")
            line += f" {flops:,.1f} |" if flops else " - |"
            line += f" {gpu['gpu_seconds']:,.1f} |" if "gpu_seconds" in gpu else " - |"
        lines.append(line)
    return "\n".join(lines)


def prepare_work_dir(args: argparse.Namespace) -> Path:
    if args.work_dir is None:
        work = Path(tempfile.mkdtemp(prefix="umbert_full_size_"))
    else:
        work = check_output(args.work_dir, existing="replace", overwrite=True, markers=(MARKER,), command="full_size")
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
    (work / MARKER).touch()
    return work


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.output:
        check_output(args.output, flag="--output", kind="file", overwrite=True)
    work = prepare_work_dir(args)
    print(
        f"[full_size] {args.num_items} items, {args.num_outfits} outfits, {args.image_size} px, in {work}", flush=True
    )
    try:
        stages = run_pipeline(args, work)
        estimate = None if args.no_gpu_estimate else gpu_estimate(stages, work)
        result = {
            "num_items": args.num_items,
            "num_outfits": args.num_outfits,
            "image_size": args.image_size,
            "image_encoder_steps": args.image_encoder_steps,
            "finetune_steps": args.finetune_steps,
            "embedding_recipe": args.embedding_recipe,
            "machine": {
                "processor": platform.processor() or platform.machine(),
                "cpu_cores": len(os.sched_getaffinity(0)),
                "python": platform.python_version(),
            },
            "stage_order": [stage.name for stage in stages],
            "stages": {stage.name: {"unit": stage.unit, "count": stage.count, **stage.record} for stage in stages},
            "commands": {stage.name: stage.argv[1:] for stage in stages},
            "gpu_estimate": estimate,
        }
        print("\n" + markdown_table(stages, estimate))
        if args.output:
            write_json(args.output, result)
    finally:
        if not args.keep and (work / MARKER).exists():
            shutil.rmtree(work)
    return result


# --- FLOPs and the GPU estimate -----------------------------------------------------------------------------------


class OpCounter:
    """Counts the aten operations dispatched inside the block (each one a kernel launch on a GPU)."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.ops += 1
                return func(*args, **(kwargs or {}))

        self.ops, self.mode = 0, Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def measure_piece(run, repeats: int = 2) -> dict:
    """FLOPs and aten operations of one call of `run()`, and its least wall time over `repeats` calls after a
    warm-up (`cpu_seconds`: seconds on this CPU)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as flops, OpCounter() as ops:
        run()
    times = []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    torch.manual_seed(0)
    return {"flops": flops.get_total_flops(), "ops": ops.ops, "cpu_seconds": min(times[1:])}


def marginal_and_fixed(small: dict, large: dict, small_count: int, large_count: int) -> tuple[dict, dict]:
    """From one piece measured on two sizes: the cost of `large_count - small_count` more, and the fixed cost."""
    keys = ("flops", "ops", "cpu_seconds")
    extra = {key: max(0, large[key] - small[key]) for key in keys}
    share = small_count / (large_count - small_count)
    fixed = {key: max(0, small[key] - extra[key] * share) for key in keys}
    return {**extra, "per": large_count - small_count}, {**fixed, "per": 1}


def model_pieces(work: Path) -> dict[str, dict]:
    """One batch of every model computation of the pipeline, measured (`measure_piece`), with what it is per."""
    import dataclasses

    import pyarrow.parquet as pq
    import torch
    from accelerate import Accelerator
    from transformers import AutoModel

    from umbert_hf.data.extraction import CatalogueImages, TextEncoder, bundled_text_encoder, load_catalogue_dataset
    from umbert_hf.data.image_processing import ImagePreprocessing
    from umbert_hf.data.outfit_data import load_outfit_data
    from umbert_hf.evaluation.metrics import context_mean_predictor, model_predictor, random_predictor
    from umbert_hf.training.outfit import catalogue_of_model, evaluate_split, training_step_for

    torch.manual_seed(0)
    pieces, batch = {}, 64
    encoder = AutoModel.from_pretrained(work / "image_encoder")
    preprocessing = ImagePreprocessing.from_config(encoder.config)
    size = preprocessing.image_size
    pixels = preprocessing.normalize(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8))
    labels = torch.randint(0, len(encoder.config.id2label), (batch,))

    def encoder_step():
        encoder.zero_grad()
        encoder(pixels, labels=labels).loss.backward()

    encoder.train()
    pieces["image encoder step"] = {**measure_piece(encoder_step), "per": batch}
    encoder.eval()
    with torch.no_grad():
        pieces["image forward"] = {**measure_piece(lambda: encoder.get_image_embeddings(pixels)), "per": batch}

    catalogue = load_catalogue_dataset(work / "dataset")
    rows = list(range(min(256, len(catalogue))))
    images = CatalogueImages(catalogue, rows, preprocessing.load_transform(train=False), size)
    began = time.perf_counter()
    images.__getitems__(list(range(len(rows))))
    pieces["image decode"] = {"flops": 0, "ops": 0, "cpu_seconds": time.perf_counter() - began, "per": len(rows)}

    text_encoder = bundled_text_encoder()
    if text_encoder:
        titles = pq.read_table(next((work / "dataset" / "catalogue").glob("*.parquet")), columns=["title"])
        encoder_text = TextEncoder.from_pretrained(text_encoder)
        tokens = encoder_text.tokenize(titles.column("title").to_pylist()[:batch])
        with torch.no_grad():
            pieces["title forward"] = {**measure_piece(lambda: encoder_text.embed(tokens)), "per": batch}

    model = AutoModel.from_pretrained(work / "umbert")
    slots = list(model.config.categories)
    step = training_step_for("fill_in_the_blank", model)
    categories = model.catalogue_categories
    outfits = torch.stack(
        [torch.nonzero(categories == slot).flatten()[torch.randint(0, int((categories == slot).sum()), (batch,))]
         for slot in range(len(slots))],
        dim=1,
    )  # fmt: skip

    def finetune_step():
        model.zero_grad()
        step(model, outfits).backward()

    model.train()
    pieces["umbert step"] = {**measure_piece(finetune_step), "per": batch}
    model.eval()

    # Evaluation of the first test outfits (with the same share of the FITB and compatibility questions), at two
    # sizes: the difference is the cost per outfit, the rest the index built once per evaluation (`evaluate_split`).
    full = load_outfit_data(work / "dataset", catalogue_of_model(model), slots, splits=("test",))
    large = min(256, len(full.outfits["test"].rows))
    small = max(1, large // 2)

    def first_outfits(count: int):
        data, test = dataclasses.replace(full), full.outfits["test"]
        share = count / len(test.rows)

        def head(records, *names):
            keep = max(1, round(len(getattr(records, names[0])) * share))
            return dataclasses.replace(records, **{name: getattr(records, name)[:keep] for name in names})

        data.outfits = {"test": dataclasses.replace(test, rows=test.rows[:count], outfit_ids=test.outfit_ids[:count])}
        data.fitb = {split: head(questions, "outfit_rows", "blanks", "candidates", "labels")
                     for split, questions in full.fitb.items()}  # fmt: skip
        data.compatibility = {split: head(records, "rows", "labels") for split, records in full.compatibility.items()}
        return data

    accelerator = Accelerator(cpu=True)
    embeddings = model.get_catalogue_embeddings().detach()
    distance = model.config.distance
    predictors = {
        "evaluate umBERT": model_predictor(model),
        "evaluate random": random_predictor(embeddings),
        "evaluate context_mean": context_mean_predictor(),
    }
    with torch.no_grad():
        for name, predict in predictors.items():
            measured = []
            for count in (small, large):
                data = first_outfits(count)
                run = lambda data=data, predict=predict: evaluate_split(  # noqa: E731
                    accelerator, predict, data, "test", embeddings, distance, 256
                )
                measured.append(measure_piece(run, repeats=1))
            pieces[name], pieces[f"{name} index"] = marginal_and_fixed(*measured, small, large)
        query = {slot: model.catalogue_item_id_list[int(outfits[0, s])] for s, slot in enumerate(slots)}
        query[slots[-1]] = None
        pieces["complete"] = {**measure_piece(lambda: model.complete([query], top_k=5)), "per": 1}
    return pieces


def gpu_estimate(stages: list[Stage], work: Path) -> dict:
    """FLOPs of every stage and its estimated time on one GPU.

    Each model computation is measured on one batch (`model_pieces`: FLOPs with `FlopCounterMode`, aten operations
    dispatched, CPU seconds here) and multiplied by the number of such batches in the stage. Then for a stage:

    - `cpu_compute_seconds`: the batches' time on this CPU; `decode_seconds`: its images decoded and resized at the
      rate measured here (the data loader does that on the CPU, with or without a GPU);
    - `other_seconds`: the stage's wall time minus those two: process start-up and imports, reading parquet, Python,
      saving. A GPU does not shorten it. On a shared machine the two wall times come from different moments, so the
      difference is noisy: it is never taken below `floor`, the wall time of the `complete` stage (a process that
      imports the package and loads a model and the dataset: the least any stage does besides its compute);
    - `gpu_compute_seconds`: FLOPs / (`GPU_EFFICIENCY` x the fp32 peak of `GPU_PEAK_FLOPS`; the scripts train in
      fp32 by default) plus `GPU_SECONDS_PER_OP` per aten operation (eager launches dominate small batches);
    - `gpu_seconds`: `other_seconds` + max(`gpu_compute_seconds`, `decode_seconds`) (loader workers overlap decoding
      with the GPU's work).

    Stages without model compute (synthesize, build, app start-up) take the same time.
    """
    pieces = model_pieces(work)
    by_name = {stage.name: stage for stage in stages}
    decode_rate = pieces["image decode"]["per"] / pieces["image decode"]["cpu_seconds"]

    def batches(piece: str, items: float) -> tuple[str, float]:
        # A piece not measured (no bundled text encoder without the `text` extra) is left out below.
        return piece, items / pieces[piece]["per"] if piece in pieces else 0.0

    encoder_stage = by_name["image encoder"]
    encoder_metrics = json.loads((work / "image_encoder" / "metrics.json").read_text())
    catalogue = by_name["embeddings"].count
    test_outfits = by_name["evaluate umBERT"].count
    summary = json.loads((work / "dataset" / "build_summary.json").read_text())
    validation_outfits = summary["outfits"]["validation"]["kept"]
    work_of = {  # stage -> [(piece, how many times)], images decoded
        "image encoder": (
            [("image encoder step", encoder_stage.record["steps"]),
             batches("image forward", encoder_metrics["num_validation_images"])],
            encoder_stage.count,
        ),
        "embeddings": ([batches("image forward", catalogue), batches("title forward", catalogue)], catalogue),
        # fine-tuning evaluates the validation split after its epoch, then the test split and both baselines
        "fine-tuning": (
            [("umbert step", by_name["fine-tuning"].record["steps"]),
             batches("evaluate umBERT", validation_outfits + test_outfits), ("evaluate umBERT index", 2),
             batches("evaluate random", test_outfits), ("evaluate random index", 1),
             batches("evaluate context_mean", test_outfits), ("evaluate context_mean index", 1)],
            0,
        ),
        **{name: ([batches(name, test_outfits), (f"{name} index", 1)], 0)
           for name in ("evaluate umBERT", "evaluate random", "evaluate context_mean")},
        "complete": ([("complete", 1)], 0),
    }  # fmt: skip
    peak = GPU_EFFICIENCY * GPU_PEAK_FLOPS["fp32"]
    floor = by_name["complete"].record["seconds"]
    estimate = {}
    for stage in stages:
        wall = stage.record["seconds"]
        parts, images = work_of.get(stage.name, ([], 0))
        parts = [(piece, times) for piece, times in parts if piece in pieces]
        flops = sum(pieces[piece]["flops"] * times for piece, times in parts)
        ops = sum(pieces[piece]["ops"] * times for piece, times in parts)
        cpu_compute = sum(pieces[piece]["cpu_seconds"] * times for piece, times in parts)
        decode = images / decode_rate
        other = wall if not parts else max(floor, wall - cpu_compute - decode)
        gpu_compute = flops / peak + ops * GPU_SECONDS_PER_OP
        estimate[stage.name] = {
            "gflop": flops / 1e9,
            "aten_ops": ops,
            "cpu_compute_seconds": cpu_compute,
            "decode_seconds": decode,
            "other_seconds": other,
            "gpu_compute_seconds": gpu_compute,
            "gpu_seconds": other + max(gpu_compute, decode),
            "read_mib": sum(disk_bytes(work / name) for name in stage_inputs(stage.name) if (work / name).exists())
            / 2**20,
        }
    return {
        "assumptions": {
            "gpu_peak_flops": GPU_PEAK_FLOPS,
            "efficiency": GPU_EFFICIENCY,
            "precision": "fp32 (the scripts' default)",
            "seconds_per_aten_op": GPU_SECONDS_PER_OP,
            "decode_images_per_second": decode_rate,
            "other_seconds_floor": floor,
        },
        "pieces": pieces,
        "stages": estimate,
    }


def stage_inputs(name: str) -> list[str]:
    """What each stage reads from the work folder (the bytes it moves besides what it writes)."""
    if name == "build":
        return ["raw"]
    if name in ("image encoder", "embeddings"):
        return ["dataset"]
    if name in ("fine-tuning", "evaluate random", "evaluate context_mean"):
        return ["dataset", "emb.parquet"]
    if name in ("evaluate umBERT", "complete", "app start-up"):
        return ["dataset", "umbert"]
    return []


if __name__ == "__main__":
    sys.exit(run_command(main))
