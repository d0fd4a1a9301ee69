"""Time the Polyvore dataset builder on a raw folder of the full dataset's size, and the synthetic demo.

    python benchmarks/bench_dataset_build.py                      # full size (250,000 items, 68,000 outfits), no images
    python benchmarks/bench_dataset_build.py --num_items 2000 --num_outfits 3000 --with_images   # the demo size

Prints the seconds spent synthesizing the raw folder, then reading, filtering and writing the dataset.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.export import BuildSummary, write_dataset_folder  # noqa: E402
from dataset_builder.polyvore_outfits import PolyvoreOutfitsConfig, prepare_polyvore  # noqa: E402
from dataset_builder.raw import read_raw  # noqa: E402
from dataset_builder.synthetic import synthesize_polyvore  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_items", type=int, default=250_000)
    parser.add_argument("--num_outfits", type=int, default=68_000)
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--with_images", action="store_true", help="synthesize and embed images (slow at full size)")
    parser.add_argument("--work_dir", help="where to write (default: a temporary folder, removed afterwards)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as work:
        raw_dir, output_dir = Path(work) / "raw", Path(work) / "dataset"
        start = time.perf_counter()
        synthesized = synthesize_polyvore(
            raw_dir, args.num_items, args.num_outfits, args.image_size, seed=0, with_images=args.with_images
        )
        synth_seconds = time.perf_counter() - start

        start = time.perf_counter()
        config = PolyvoreOutfitsConfig(name="outfits", raw_dir=str(raw_dir), with_images=args.with_images)
        raw = read_raw(raw_dir, config.split_type)
        read_seconds = time.perf_counter() - start
        prepared = prepare_polyvore(raw, config)
        prepare_seconds = time.perf_counter() - start - read_seconds
        summary = BuildSummary(str(raw_dir), str(output_dir), config.parameters(), **prepared.report)
        output_dir.mkdir()
        write_dataset_folder(prepared, output_dir, summary)
        build_seconds = time.perf_counter() - start
        write_seconds = build_seconds - read_seconds - prepare_seconds

        kept = sum(summary.outfits[split]["kept"] for split in summary.outfits)
        print(
            f"raw folder: {synthesized['num_items']} items, {synthesized['num_outfits']} outfits, "
            f"images={'yes' if args.with_images else 'no'}"
        )
        print(f"synthesize: {synth_seconds:6.2f} s")
        print(f"build:      {build_seconds:6.2f} s  (read + validate {read_seconds:.2f} s, filter + derive "
              f"{prepare_seconds:.2f} s, write parquet + card {write_seconds:.2f} s)")  # fmt: skip
        print(f"kept: {kept} outfits, catalogue {summary.catalogue['total']} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
