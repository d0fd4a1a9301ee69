"""Command line of the dataset builder: `build` a Hub-layout dataset from a raw Polyvore folder, `synthesize` one,
or `convert-mango` the MANGO datathon outfits into one."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from umbert_hf.utils.paths import run_command

from .config import DEFAULT_CATEGORIES
from .export import build_dataset, push_to_hub
from .mango import convert_mango
from .synthetic import synthesize_polyvore

EXIT_OK, EXIT_FAILURE = 0, 1

_EPILOG = """\
examples:
  # a small synthetic raw folder in the official Polyvore Outfits format, then the dataset
  python -m dataset_builder synthesize --output_dir synthetic_polyvore --num_items 2000 --num_outfits 3000
  python -m dataset_builder build --raw_dir synthetic_polyvore --output_dir polyvore_umbert

  # the real download, disjoint splits, bags counted as accessories, pushed to the Hub
  python -m dataset_builder build --raw_dir polyvore_outfits --output_dir polyvore_disjoint \\
      --split_type disjoint --category_map bags=accessories --push_to_hub USER/polyvore-umbert

  # real MANGO outfits (a checkout of vascoG/datathon-fme-2023-mango) in the raw format, then the dataset
  python -m dataset_builder convert-mango --source datathon-fme-2023-mango --output_dir mango_raw
  python -m dataset_builder build --raw_dir mango_raw --output_dir mango_umbert --category_map bags=accessories

  # then, in Python:  datasets.load_dataset("polyvore_umbert", "outfits")

exit codes: 0 done, 2 bad input or usage (one `error:` line naming the file and field), 1 a failed push to the Hub,
130 interrupted (nothing half-written is left).
"""


def _category_map(text: str) -> tuple[str, str]:
    semantic, separator, slot = (part.strip() for part in text.partition("="))
    if not separator or not semantic:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEMANTIC=SLOT, e.g. bags=accessories")
    return semantic, slot


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return value


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog or "python -m dataset_builder",
        description="Polyvore Outfits for umBERT: build a `datasets` folder (parquet + card) from the raw download, "
        "synthesize a raw folder in the official format, or convert the MANGO datathon outfits into one.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{build,synthesize,convert-mango}")

    build = commands.add_parser(
        "build",
        help="raw Polyvore Outfits folder -> dataset folder (catalogue, outfits, fitb, compatibility)",
        description="Build the catalogue, outfits, fitb and compatibility configs as parquet files with a dataset "
        "card, loadable with datasets.load_dataset(OUTPUT_DIR, CONFIG). The folder appears only once complete.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("--raw_dir", required=True, help="the unpacked Polyvore Outfits folder (or a synthetic one)")
    build.add_argument("--output_dir", required=True, help="the dataset folder to write (must not exist)")
    build.add_argument("--split_type", choices=("nondisjoint", "disjoint"), default="nondisjoint")
    build.add_argument(
        "--categories",
        nargs="+",
        default=list(DEFAULT_CATEGORIES),
        metavar="SLOT",
        help="slot categories, in column order (default: %(default)s); commas also separate",
    )
    build.add_argument(
        "--category_map",
        nargs="+",
        type=_category_map,
        default=[],
        metavar="SEMANTIC=SLOT",
        help="send a semantic category to a slot, e.g. bags=accessories; SEMANTIC= leaves it out "
        "(default: each slot takes its own semantic category)",
    )
    build.add_argument("--no_images", action="store_true", help="leave out the catalogue's image column")
    build.add_argument(
        "--full_catalogue", action="store_true", help="catalogue of every item of the slot categories, not only "
        "the items of kept outfits"
    )  # fmt: skip
    build.add_argument("--seed", type=_positive_int, default=0, help="seed of generated FITB questions and negatives")
    build.add_argument(
        "--strict", action="store_true", help="fail on missing items, missing or unreadable images, repeated set ids"
    )
    build.add_argument("--overwrite", action="store_true", help="replace an existing output folder written by build")
    build.add_argument("--push_to_hub", metavar="REPO_ID", help="then upload the folder as a Hub dataset repo")
    build.add_argument("--private", action="store_true", help="with --push_to_hub: create the repo private")
    build.add_argument("--token", help="Hub token (default: the logged-in one)")

    synthesize = commands.add_parser(
        "synthesize",
        help="write a synthetic raw folder in the official Polyvore Outfits format",
        description="Write a synthetic raw Polyvore Outfits folder (metadata, splits, compatibility and FITB files, "
        "images) whose outfits follow hidden compatibility rules (see dataset_builder/synthetic.py).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synthesize.add_argument("--output_dir", required=True, help="the raw folder to write (must not exist)")
    synthesize.add_argument("--num_items", type=_positive_int, default=2000, help="catalogue size (%(default)s)")
    synthesize.add_argument("--num_outfits", type=_positive_int, default=3000, help="outfits (%(default)s)")
    synthesize.add_argument("--image_size", type=_positive_int, default=64, help="image side in pixels (%(default)s)")
    synthesize.add_argument("--seed", type=_positive_int, default=0, help="same seed, same bytes (%(default)s)")
    synthesize.add_argument("--no_images", action="store_true", help="write no images/ folder")
    synthesize.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder written by synthesize"
    )

    mango = commands.add_parser(
        "convert-mango",
        help="MANGO datathon checkout -> raw folder in the official Polyvore Outfits format",
        description="Convert the MANGO datathon 2023 outfits (product_data.csv, outfit_data.csv, photos) into a raw "
        "Polyvore Outfits folder: item metadata, categories, a seeded 80/10/10 nondisjoint split, copied photos "
        "(see dataset_builder/mango.py). The folder appears only once complete.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mango.add_argument("--source", required=True, help="the checkout root (holding datathon/dataset and the photos)")
    mango.add_argument("--output_dir", required=True, help="the raw folder to write (must not exist)")
    mango.add_argument("--seed", type=_positive_int, default=0, help="seed of the split; same seed, same bytes")
    mango.add_argument("--no_images", action="store_true", help="copy no photos (no images/ folder)")
    mango.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder written by convert-mango"
    )
    return parser


def _split_categories(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _print_mango_summary(summary: dict, prog: str, seconds: float) -> None:
    outfits = summary["outfits"]
    skipped = ", ".join(f"{reason} {count}" for reason, count in summary["skipped"].items())
    fabrics = ", ".join(f"{fabric or '(empty)'} {n}" for fabric, n in summary["unknown_fabrics"].items()) or "none"
    print(
        f"wrote {summary['output_dir']}: {summary['products']} products, {sum(outfits.values())} outfits (train "
        f"{outfits['train']}, valid {outfits['valid']}, test {outfits['test']}), {summary['outfit_items']} outfit "
        f"items; photos: {summary['photos_copied']} copied, {summary['missing_photos']} missing [{seconds:.1f}s]"
    )
    print(
        "products per semantic category: "
        + ", ".join(f"{k} {n}" for k, n in summary["products_per_semantic_category"].items())
    )
    print(f"skipped: {skipped}; unknown fabrics: {fabrics}")
    images = "" if summary["with_images"] else " --no_images"
    print(
        f"next: {prog} build --raw_dir {shlex.quote(summary['output_dir'])} --output_dir DATASET "
        "--category_map bags=accessories" + images
    )


def run(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line, raising a user error (`ValueError`, `OSError`) for `run_command` to print.

    `prog` names the command in usage messages, e.g. "umbert-hf" when that console script delegates here.
    """
    args = build_parser(prog).parse_args(argv)
    start = time.perf_counter()
    if args.command == "convert-mango":
        summary = convert_mango(
            args.source, args.output_dir, seed=args.seed, with_images=not args.no_images, overwrite=args.overwrite
        )
        _print_mango_summary(summary, prog or "umbert-hf", time.perf_counter() - start)
        return EXIT_OK
    if args.command == "synthesize":
        # Parameters out of range raise PolyvoreFormatError before anything is written.
        summary = synthesize_polyvore(
            args.output_dir,
            num_items=args.num_items,
            num_outfits=args.num_outfits,
            image_size=args.image_size,
            seed=args.seed,
            with_images=not args.no_images,
            overwrite=args.overwrite,
        )
        splits = "; ".join(
            f"{split_type}: " + ", ".join(f"{stem} {n}" for stem, n in counts.items())
            for split_type, counts in summary["splits"].items()
        )
        print(
            f"wrote {summary['output_dir']}: {summary['num_items']} items ({summary['num_items_in_outfits']} in "
            f"outfits, {summary['mean_outfits_per_item']} outfits per item), {summary['num_outfits']} outfits "
            f"({summary['num_outfits_with_every_slot']} with every slot); {splits} "
            f"[{time.perf_counter() - start:.1f}s]"
        )
        return EXIT_OK
    summary = build_dataset(
        args.raw_dir,
        args.output_dir,
        split_type=args.split_type,
        categories=_split_categories(args.categories),
        category_map=dict(args.category_map) or None,
        with_images=not args.no_images,
        full_catalogue=args.full_catalogue,
        seed=args.seed,
        strict=args.strict,
        overwrite=args.overwrite,
    )
    print(summary)
    print(f"built {args.output_dir} in {time.perf_counter() - start:.1f}s")
    if args.push_to_hub:
        try:
            info = push_to_hub(args.output_dir, args.push_to_hub, token=args.token, private=args.private or None)
        except Exception as error:  # network, auth, ...: the local dataset is complete
            print(f"error: push to {args.push_to_hub} failed ({error}); {args.output_dir} is built", file=sys.stderr)
            return EXIT_FAILURE
        print(f"pushed to {getattr(info, 'commit_url', None) or args.push_to_hub}")
    return EXIT_OK


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line; returns the exit code: 0 done, 2 bad input (one `error: ...` line), 1 a failed push,
    130 interrupted (nothing is left half-written: outputs appear only once complete)."""
    return run_command(lambda arguments: run(arguments, prog), argv, interrupted="interrupted: no output was written")


__all__ = ["build_parser", "main", "run"]
