"""Command line of the dataset builder: `build` a Hub-layout dataset from a raw Polyvore folder, `synthesize` one,
`convert-csv` any products and outfits tables into one, or `convert-mango` the MANGO datathon outfits."""

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
from .tables import convert_csv

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

  # your own catalogue: a products table and an outfits table (CSV, TSV, parquet), then the dataset
  python -m dataset_builder convert-csv --products products.csv --outfits outfits.csv --output_dir shop_raw \\
      --id_column sku --category_column family --category_map Shoes=shoes Tops=tops Bags=accessories \\
      Trousers=bottoms --title_columns name colour --image_column photo \\
      --outfit_id_column look --outfit_item_column sku
  python -m dataset_builder build --raw_dir shop_raw --output_dir shop_umbert

  # then, in Python:  datasets.load_dataset("polyvore_umbert", "outfits")

exit codes: 0 done, 2 bad input or usage (one `error:` line naming the file and field), 1 a failed push to the Hub,
130 interrupted (nothing half-written is left).
"""


def _category_map(text: str) -> tuple[str, str]:
    semantic, separator, slot = (part.strip() for part in text.partition("="))
    if not separator or not semantic:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SEMANTIC=SLOT, e.g. bags=accessories")
    return semantic, slot


def _value_map(text: str) -> tuple[str, str]:
    value, separator, slot = (part.strip() for part in text.rpartition("="))
    if not separator or not value:
        raise argparse.ArgumentTypeError(f"{text!r}: expected VALUE=SLOT, e.g. Footwear=shoes (VALUE=: never a slot)")
    return value, slot


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
        "synthesize a raw folder in the official format, or convert your own products and outfits tables (or the "
        "MANGO datathon outfits) into one.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="{build,synthesize,convert-csv,convert-mango}"
    )

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
    build.add_argument(
        "--num_proc",
        type=_positive_int,
        default=None,
        help="processes that check the images (the slowest part of a large build); the output is the same",
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

    add_convert_csv_parser(commands)

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


# the flags of convert-csv passed as they are to `convert_csv` (the same names)
CONVERT_CSV_OPTIONS = (
    "id_column",
    "category_column",
    "category_map",
    "title_columns",
    "image_column",
    "image_root",
    "outfit_id_column",
    "outfit_item_column",
    "outfit_items_column",
    "item_separator",
    "split_column",
    "seed",
    "encoding",
    "delimiter",
    "overwrite",
)


def add_convert_csv_parser(commands) -> argparse.ArgumentParser:
    """The flags of `convert-csv` (`dataset_builder.tables.convert_csv`)."""
    parser = commands.add_parser(
        "convert-csv",
        help="your products and outfits tables (CSV, TSV, parquet) -> raw folder in the Polyvore Outfits format",
        description="Convert a products table and an outfits table into a raw Polyvore Outfits folder: item "
        "metadata (categories mapped to slots, titles from text columns), categories, a seeded 80/10/10 split or "
        "the one of a split column, checked and copied photos (see docs/data.md, 'Your own catalogue'). The folder "
        "appears only once complete; the inputs are never modified. @FILE reads more arguments from FILE, one per "
        "line (e.g. a long --category_map).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        fromfile_prefix_chars="@",
    )
    files = parser.add_argument_group("files")
    files.add_argument("--products", required=True, help="the products table: .csv, .tsv, .parquet, .jsonl (.gz)")
    files.add_argument("--outfits", required=True, help="the outfits table (may be the products table itself)")
    files.add_argument("--output_dir", required=True, help="the raw folder to write (must not exist)")
    files.add_argument("--encoding", default="utf-8", help="of the text tables (%(default)s; a BOM is accepted)")
    files.add_argument("--delimiter", help="of the CSV tables (default: ',' for .csv, tab for .tsv)")
    products = parser.add_argument_group("products table")
    products.add_argument("--id_column", required=True, help="the product id (it names the photo file)")
    products.add_argument("--category_column", required=True, help="the category (or family) mapped to slots")
    products.add_argument(
        "--category_map",
        nargs="+",
        type=_value_map,
        default=[],
        metavar="VALUE=SLOT",
        help="send a category value to a slot (or any semantic category), e.g. Footwear=shoes 'Hats, caps=accessories'; "
        "values are compared ignoring case, accents and punctuation; VALUE= never fills a slot. Unmapped values "
        "never fill a slot and are counted",
    )
    products.add_argument(
        "--title_columns", nargs="+", default=[], metavar="COLUMN", help="text columns joined into the title "
        "(default: the category)"
    )  # fmt: skip
    products.add_argument("--image_column", help="the photo path, relative to --image_root (none: no photos)")
    products.add_argument("--image_root", help="the folder of the photos (default: the products table's folder)")
    outfits = parser.add_argument_group("outfits table (one of --outfit_item_column and --outfit_items_column)")
    outfits.add_argument(
        "--outfit_id_column", help="the outfit id (needed with --outfit_item_column; else outfits are numbered by row)"
    )
    outfits.add_argument("--outfit_item_column", help="one row per outfit member: the product id of the row")
    outfits.add_argument(
        "--outfit_items_column", help="one row per outfit: its product ids in one cell (a list, or split on "
        "--item_separator)"
    )  # fmt: skip
    outfits.add_argument("--item_separator", default=";", help="between the ids of --outfit_items_column (%(default)s)")
    outfits.add_argument(
        "--split_column", help="train / valid (validation, val, dev) / test of each outfit, instead of the seeded split"
    )
    parser.add_argument(
        "--seed", type=_positive_int, default=0, help="seed of the 80/10/10 split; same seed, same bytes"
    )
    parser.add_argument("--no_images", action="store_true", help="copy no photos (no images/ folder)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing output folder written by convert-csv"
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


def _counts(counts: dict) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items() if count) or "none"


def _print_csv_summary(summary: dict, prog: str, seconds: float) -> None:
    outfits = summary["outfits"]
    split = f"split column {summary['columns']['split']!r}" if summary["seed"] is None else f"seed {summary['seed']}"
    photos = "no photos"
    if summary["with_images"]:
        converted = f" ({summary['photos_converted']} converted to JPEG)" if summary["photos_converted"] else ""
        photos = f"photos: {summary['photos_copied']} copied{converted}, {summary['missing_photos']} missing"
    print(
        f"wrote {summary['output_dir']}: {summary['products']} products, {sum(outfits.values())} outfits (train "
        f"{outfits['train']}, valid {outfits['valid']}, test {outfits['test']}; {split}), {summary['outfit_items']} "
        f"outfit items; {photos} [{seconds:.1f}s]"
    )
    print(f"products per semantic category: {_counts(summary['products_per_semantic_category'])}")
    if summary["unmapped_categories"]:
        print(
            f"unmapped (never a slot; map them with --category_map VALUE=SLOT): {_counts(summary['unmapped_categories'])}"
        )
    if summary["unused_category_map"]:
        print(f"--category_map values no product has: {', '.join(summary['unused_category_map'])}")
    print(f"skipped: {_counts(summary['skipped'])}")
    if summary["missing_photos"]:
        print(f"missing photos: {_counts(summary['photo_problems'])} (urls are not downloaded: give local paths)")
    empty = [slot for slot in DEFAULT_CATEGORIES if not summary["products_per_semantic_category"].get(slot)]
    if empty:
        print(
            f"warning: no product in the slots {', '.join(empty)}: map a category to each, or build with --categories"
        )
    images = "" if summary["photos_copied"] else " --no_images"
    print(f"next: {prog} build --raw_dir {shlex.quote(summary['output_dir'])} --output_dir DATASET" + images)


def run(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the command line, raising a user error (`ValueError`, `OSError`) for `run_command` to print.

    `prog` names the command in usage messages, e.g. "umbert-hf" when that console script delegates here.
    """
    args = build_parser(prog).parse_args(argv)
    start = time.perf_counter()
    if args.command == "convert-csv":
        options = {name: getattr(args, name) for name in CONVERT_CSV_OPTIONS}
        summary = convert_csv(args.products, args.outfits, args.output_dir, with_images=not args.no_images, **options)
        _print_csv_summary(summary, prog or "umbert-hf", time.perf_counter() - start)
        return EXIT_OK
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
        num_proc=args.num_proc,
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
