"""Time the Polyvore dataset builder on a raw folder of the full dataset's size, and the synthetic demo.

    python benchmarks/bench_dataset_build.py                      # full size (250,000 items, 68,000 outfits), no images
    python benchmarks/bench_dataset_build.py --num_items 2000 --num_outfits 3000 --with_images   # the demo size

Prints the seconds spent synthesizing the raw folder, then building the dataset with `build_dataset` (the path of
`umbert-hf build`: the `PolyvoreOutfits` builder reads and prepares the raw folder once, every config is written from
that), then the same steps timed one by one; `main` returns them as a dict.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.export import BuildSummary, build_dataset, write_dataset_folder
from dataset_builder.polyvore_outfits import PolyvoreOutfitsConfig
from dataset_builder.prepare import prepare_polyvore
from dataset_builder.raw import read_raw
from dataset_builder.synthetic import synthesize_polyvore


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_items", type=int, default=250_000)
    parser.add_argument("--num_outfits", type=int, default=68_000)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--with_images", action="store_true", help="synthesize and embed images (slow at full size)")
    parser.add_argument("--work_dir", help="where to write (default: a temporary folder, removed afterwards)")
    return parser.parse_args(argv)


def main(argv=None) -> dict[str, float]:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        raw_dir, output_dir, steps_dir = Path(work) / "raw", Path(work) / "dataset", Path(work) / "steps"
        start = time.perf_counter()
        synthesized = synthesize_polyvore(
            raw_dir, args.num_items, args.num_outfits, args.image_size, seed=0, with_images=args.with_images
        )
        synth_seconds = time.perf_counter() - start

        start = time.perf_counter()
        summary = build_dataset(raw_dir, output_dir, with_images=args.with_images)
        build_seconds = time.perf_counter() - start

        # the steps of `PolyvoreOutfits.prepare` and the export, one by one
        start = time.perf_counter()
        config = PolyvoreOutfitsConfig(name="outfits", raw_dir=str(raw_dir), with_images=args.with_images)
        raw = read_raw(raw_dir, config.split_type)
        read_seconds = time.perf_counter() - start
        prepared = prepare_polyvore(raw, config)
        prepare_seconds = time.perf_counter() - start - read_seconds
        steps_dir.mkdir()
        steps_summary = BuildSummary(str(raw_dir), str(steps_dir), config.parameters(), **prepared.report)
        write_dataset_folder(prepared, steps_dir, steps_summary)
        write_seconds = time.perf_counter() - start - read_seconds - prepare_seconds

        kept = sum(summary.outfits[split]["kept"] for split in summary.outfits)
        print(
            f"raw folder: {synthesized['num_items']} items, {synthesized['num_outfits']} outfits, "
            f"images={'yes' if args.with_images else 'no'}"
        )
        print(f"synthesize: {synth_seconds:6.2f} s")
        print(f"build:      {build_seconds:6.2f} s  (build_dataset, end to end)")
        print(f"steps:      read + validate {read_seconds:.2f} s, filter + derive {prepare_seconds:.2f} s, "
              f"write parquet + card {write_seconds:.2f} s")  # fmt: skip
        print(f"kept: {kept} outfits, catalogue {summary.catalogue['total']} items")
    return {
        "num_items": synthesized["num_items"],
        "num_outfits": synthesized["num_outfits"],
        "synthesize_seconds": synth_seconds,
        "build_seconds": build_seconds,
        "read_seconds": read_seconds,
        "prepare_seconds": prepare_seconds,
        "write_seconds": write_seconds,
        "kept_outfits": kept,
        "catalogue_items": summary.catalogue["total"],
    }


if __name__ == "__main__":
    main()
