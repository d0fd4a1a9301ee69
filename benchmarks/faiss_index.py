"""Million-item catalogues: exact per-category search against a FAISS index (`umbert_hf.faiss_index`).

    python benchmarks/faiss_index.py                  # 1,000,000 items per category, hidden 128, 10,000 queries
    python benchmarks/faiss_index.py --items_per_category 100000 --data gaussian
    python benchmarks/faiss_index.py --index IVF4096,Flat --knob nprobe=8,32,128 --output ivf.json

Items and queries are random and seeded. `--data spectrum` (the default) draws them from a Gaussian whose variance
along the i-th of `hidden_size` random orthogonal directions is proportional to 1/i, the roughly power-law spectrum of
learned embeddings; `--data gaussian` draws isotropic N(0, I), the worst case of every approximate index (a nearest
neighbour is hardly nearer than any other item). Queries are fresh draws, as a model's predictions are not items.

Measured: the exact `CategoryIndex.top_k` (queries/s); for each FAISS index, its build time, its size (the bytes
`FaissCategoryIndex.save` writes), the growth of the process's resident memory while building it, the time to load
the saved index (fingerprint check included) against building it again, and at each value of its main knob (HNSW
`efSearch`, IVF `nprobe`) recall@10 against exact (the share of the exact top-k rows found), queries/s, and the
speed-up over exact search timed again at that value (`--exact_sample` queries, in slices alternating with the
index's, so that both see the same load). Each search sends 1,000 queries at once, as a batch of `complete` does.
"""

import argparse
import functools
import gc
import json
import os
import platform
import re
import resource
import sys
import tempfile
import time

import torch

from umbert_hf.faiss_index import DEFAULT_FAISS_FACTORY, DEFAULT_FAISS_PARAMETERS, FaissCategoryIndex, import_faiss
from umbert_hf.retrieval import DISTANCES, CategoryIndex
from umbert_hf.utils.files import write_json
from umbert_hf.utils.paths import check_output, run_command

DATA = ("spectrum", "gaussian")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items_per_category", type=int, default=1_000_000)
    parser.add_argument("--categories", type=int, default=1, help="Categories; queries are spread evenly over them.")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--k", type=int, default=10, help="Neighbours per query: recall@k against exact.")
    parser.add_argument("--data", choices=DATA, default="spectrum")
    parser.add_argument("--distance", choices=DISTANCES, default="euclidean")
    parser.add_argument(
        "--index",
        nargs="+",
        default=["faiss", "IVF4096,Flat"],
        help="FAISS index factory strings to measure; `faiss` is the package's default index (`index='faiss'`), "
        "measured at its own settings first, then along the sweep.",
    )
    parser.add_argument(
        "--parameters",
        help="FAISS settings applied before each index is built, e.g. efConstruction=80 (default: FAISS's own).",
    )
    parser.add_argument(
        "--knob",
        help="The sweep, as NAME=V1,V2,... (e.g. efSearch=16,64,256), for every HNSW or IVF --index; default: "
        "efSearch 16-1024 for HNSW, nprobe 1-512 for IVF; other indexes (Flat) are measured once.",
    )
    parser.add_argument(
        "--exact_sample",
        type=int,
        default=500,
        help="Exact search is timed again on this many queries at each knob value, in slices alternating with the "
        "index's, for the speed-up (a shared machine's load drifts).",
    )
    parser.add_argument(
        "--reuse_dir",
        help="Save each index built here, and load it from here next time instead of building it again (same items, "
        "factory and parameters; its build figures are then those of the run that built it).",
    )
    parser.add_argument(
        "--recall_floor",
        type=float,
        help="Exit with an error when the package's default index (`--index faiss`) finds less than this share of "
        "the exact top-k at its own settings (e.g. 0.95).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="Also write the figures to this JSON file.")
    args = parser.parse_args(argv)
    for name in ("items_per_category", "categories", "hidden_size", "queries", "k", "exact_sample"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.knob is not None and (args.knob.count("=") != 1 or not args.knob.split("=")[1]):
        parser.error(f"--knob must read NAME=V1,V2,..., got {args.knob!r}.")
    return args


def knob_sweep(factory: str, knob: str | None) -> tuple[str | None, list[str]]:
    """(knob name, values) swept for one factory string: `knob` for HNSW and IVF indexes, nothing for others."""
    if knob is not None and ("HNSW" in factory or "IVF" in factory):
        name, values = knob.split("=")
        return name, values.split(",")
    if "HNSW" in factory:
        return "efSearch", ["16", "32", "64", "128", "256", "512", "1024"]
    if "IVF" in factory:
        return "nprobe", ["1", "4", "16", "32", "64", "128", "256", "512"]
    return None, [""]


def catalogue(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(items, categories, queries, query categories), seeded."""
    generator = torch.Generator().manual_seed(args.seed)
    num_items = args.items_per_category * args.categories
    if args.data == "spectrum":
        spread = torch.arange(1, args.hidden_size + 1, dtype=torch.float32).rsqrt()  # variance 1/i
        rotation = torch.linalg.qr(torch.randn(args.hidden_size, args.hidden_size, generator=generator))[0]
        transform = spread[:, None] * rotation  # (hidden, hidden)
    else:
        transform = torch.eye(args.hidden_size)
    items = torch.randn(num_items, args.hidden_size, generator=generator) @ transform
    queries = torch.randn(args.queries, args.hidden_size, generator=generator) @ transform
    categories = torch.arange(num_items) % args.categories
    query_categories = torch.arange(args.queries) % args.categories
    return items, categories, queries, query_categories


def resident_bytes() -> int:
    """The process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_resident_bytes()


def peak_resident_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def recall(found: torch.Tensor, exact: torch.Tensor) -> float:
    """Mean share of each query's exact top-k rows that `found` holds (rows -1 count as misses)."""
    hits = (found[:, :, None] == exact[:, None, :]).any(dim=1).sum(dim=1)
    return float(hits.double().mean() / exact.shape[1])


def interleaved(index, exact, queries, query_categories, k: int, sample: int, rounds: int = 10):
    """(rows found for every query, the index's seconds, exact search's seconds on the first `sample` queries), timed
    in alternating slices so that both see the same load of the shared machine."""
    rows, index_seconds, exact_seconds = [], 0.0, 0.0
    for chunk, exact_chunk in zip(
        torch.arange(queries.shape[0]).tensor_split(rounds), torch.arange(sample).tensor_split(rounds)
    ):
        (_, found), seconds = timed(functools.partial(index.top_k, queries[chunk], query_categories[chunk], k))
        rows.append(found)
        index_seconds += seconds
        if exact_chunk.numel():
            _, seconds = timed(functools.partial(exact.top_k, queries[exact_chunk], query_categories[exact_chunk], k))
            exact_seconds += seconds
    return torch.cat(rows), index_seconds, exact_seconds


def build_index_figures(args, factory, parameters, items, categories) -> tuple[FaissCategoryIndex, dict]:
    """Build one index and measure it (build time, memory, save and load), or load it from `--reuse_dir` where an
    earlier run saved it, with that run's figures."""
    folder = None
    if args.reuse_dir:
        name = re.sub(r"[^\w.=-]+", "_", f"{factory}-{parameters}-{args.distance}")
        folder = os.path.join(args.reuse_dir, name)
        try:
            index = FaissCategoryIndex.load(folder, items, categories, args.distance)
            with open(os.path.join(folder, "build_figures.json"), encoding="utf-8") as file:
                figures = json.load(file)
            print(f"{factory} ({parameters}): loaded from {folder}; figures of the run that built it", flush=True)
            return index, figures
        except (OSError, ValueError):
            pass  # not there yet, or built from other items: build it
    gc.collect()
    before = resident_bytes()
    index, build_seconds = timed(
        lambda: FaissCategoryIndex(items, categories, args.distance, factory=factory, parameters=parameters).build()
    )
    growth = resident_bytes() - before
    with tempfile.TemporaryDirectory(prefix="faiss-bench-", dir=os.environ.get("TMPDIR")) as temporary:
        target = folder or temporary
        _, save_seconds = timed(lambda: index.save(target))
        size = sum(os.path.getsize(os.path.join(target, name)) for name in os.listdir(target))
        loaded, load_seconds = timed(lambda: FaissCategoryIndex.load(target, items, categories, args.distance))
        del loaded
    _, fingerprint_seconds = timed(lambda: [index._fingerprint(c) for c in range(index.num_categories)])
    figures = {
        "build_seconds": build_seconds,
        "index_bytes": size,
        "rss_growth_bytes": growth,
        "save_seconds": save_seconds,
        "load_seconds": load_seconds,
        "load_fingerprint_seconds": fingerprint_seconds,
    }
    if folder:
        write_json(os.path.join(folder, "build_figures.json"), figures)
    print(
        f"{factory} ({parameters}): built in {build_seconds:.1f} s, {size / 2**20:,.0f} MiB saved, RSS "
        f"+{growth / 2**20:,.0f} MiB; save {save_seconds:.1f} s, load {load_seconds:.1f} s (of which fingerprint "
        f"{fingerprint_seconds:.1f} s)",
        flush=True,
    )
    return index, figures


def measure_index(args, factory, items, categories, queries, query_categories, exact, exact_rows) -> dict:
    """Build (or reuse) and sweep one FAISS index (`faiss`: the package's default, at its own settings first)."""
    default = factory == "faiss"
    factory, parameters = (DEFAULT_FAISS_FACTORY, DEFAULT_FAISS_PARAMETERS) if default else (factory, args.parameters)
    index, built = build_index_figures(args, factory, parameters, items, categories)
    figures = {"factory": factory, "package_default": default, "build_parameters": parameters, **built, "sweep": []}
    name, values = knob_sweep(factory, args.knob)
    sample = min(args.exact_sample, queries.shape[0])
    settings = [f"{name}={value}" for value in values] if name else [None]
    for setting in [parameters] * default + settings:
        if setting:
            index.set_parameters(setting)
        index.top_k(queries[:100], query_categories[:100], args.k)  # warm-up
        rows, seconds, exact_seconds = interleaved(index, exact, queries, query_categories, args.k, sample)
        point = {
            "parameters": setting,
            "recall_at_k": recall(rows, exact_rows),
            "queries_per_second": queries.shape[0] / seconds,
            "exact_queries_per_second": sample / exact_seconds,
            "speedup": queries.shape[0] / seconds / (sample / exact_seconds),
        }
        figures["sweep"].append(point)
        print(
            f"  {setting or '(defaults)':16s} recall@{args.k} {point['recall_at_k']:.4f}  "
            f"{point['queries_per_second']:10,.0f} queries/s  {point['speedup']:6.1f}x exact "
            f"({point['exact_queries_per_second']:,.0f} queries/s beside it)",
            flush=True,
        )
    return figures


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.output:  # checked first: a refused file costs no computation
        check_output(args.output, flag="--output", kind="file", overwrite=True)
    faiss = import_faiss()
    items, categories, queries, query_categories = catalogue(args)
    print(
        f"{args.items_per_category:,} items x {args.categories} categories, hidden {args.hidden_size}, "
        f"{args.queries:,} queries, {args.data} data, {args.distance}; torch {torch.get_num_threads()} threads, "
        f"faiss {faiss.__version__} {faiss.omp_get_max_threads()} threads",
        flush=True,
    )
    exact = CategoryIndex(items, categories, args.distance)
    for category in range(args.categories):
        exact.keys(category)  # key norms prepared once, as the model's cached index does
    exact.top_k(queries[:16], query_categories[:16], args.k)  # warm-up
    (_, exact_rows), exact_seconds = timed(lambda: exact.top_k(queries, query_categories, args.k))
    print(f"exact: {args.queries / exact_seconds:,.0f} queries/s ({exact_seconds:.1f} s)", flush=True)
    results = {
        "items_per_category": args.items_per_category,
        "categories": args.categories,
        "hidden_size": args.hidden_size,
        "queries": args.queries,
        "k": args.k,
        "data": args.data,
        "distance": args.distance,
        "seed": args.seed,
        "machine": f"{platform.machine()}, torch {torch.get_num_threads()} threads, "
        f"faiss {faiss.__version__} {faiss.omp_get_max_threads()} threads",
        "exact_queries_per_second": args.queries / exact_seconds,
        "indexes": [
            measure_index(args, factory, items, categories, queries, query_categories, exact, exact_rows)
            for factory in args.index
        ],
    }
    results["peak_rss_bytes"] = peak_resident_bytes()
    floor_failures = [
        f"{figures['factory']} ({figures['build_parameters']}): recall@{args.k} {figures['sweep'][0]['recall_at_k']:.4f}"
        for figures in results["indexes"]
        if args.recall_floor is not None
        and figures["package_default"]
        and figures["sweep"][0]["recall_at_k"] < args.recall_floor
    ]
    print(f"peak RSS {results['peak_rss_bytes'] / 2**30:.2f} GiB")
    if args.output:
        write_json(args.output, results)
    if floor_failures:
        raise SystemExit(f"below the recall floor {args.recall_floor}: {'; '.join(floor_failures)}")
    return results


if __name__ == "__main__":
    sys.exit(run_command(main))
