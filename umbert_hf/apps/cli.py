"""The `umbert-hf` command: complete outfits, synthesise, convert (MANGO) and build datasets, augment, run the demo
and the web app."""

import argparse
import os
import sys
from collections import ChainMap
from collections.abc import MutableMapping, Sequence

from ..utils.paths import check_output, first_line, run_command
from .loading import catalogue_details, load_model

EXAMPLES = """examples:
  umbert-hf synthesize --output_dir raw --num_items 2000 --num_outfits 3000
  umbert-hf build --raw_dir raw --output_dir dataset
  umbert-hf convert-mango --source datathon-fme-2023-mango --output_dir mango_raw
  umbert-hf convert-csv --products products.csv --outfits outfits.csv --output_dir shop_raw --id_column sku \\
      --category_column family --category_map Shoes=shoes Tops=tops --outfit_id_column look --outfit_item_column sku
  umbert-hf complete --model demo_output/umbert --outfit shoes=123 tops=456 accessories=? bottoms=789 --top_k 5
  umbert-hf complete --model demo_output/umbert --outfit shoes=123 tops=? accessories=321 bottoms=789 --diversity 0.3
  umbert-hf complete --model USER/umbert-polyvore --outfit shoes=? tops=my_top.jpg accessories=1 bottoms=2 \\
      --render completion.png --dataset dataset
  umbert-hf score --model demo_output/umbert --outfit shoes=123 tops=456 accessories=321 bottoms=789
  umbert-hf augment --dataset dataset --embeddings embeddings.parquet --k 5 --output_dir dataset_augmented
  umbert-hf demo --output_dir demo_output
  umbert-hf app --model demo_output/umbert --dataset demo_output/dataset --port 7860
  umbert-hf app --model USER/umbert-polyvore --dataset USER/polyvore --write_space my_space
"""

BLANK_MARKERS = ("?", "")


def parse_outfit(assignments: Sequence[str]) -> dict[str, str | None]:
    """`["shoes=1", "tops=?"]` -> `{"shoes": "1", "tops": None}`; a value that is a file stays a path (a photo)."""
    outfit: dict[str, str | None] = {}
    for assignment in assignments:
        slot, separator, value = assignment.partition("=")
        slot, value = slot.strip(), value.strip()
        if not separator or not slot:
            raise ValueError(f"--outfit: expected SLOT=ITEM_ID, SLOT=IMAGE_FILE or SLOT=?, got {assignment!r}.")
        if slot in outfit:
            raise ValueError(f"--outfit: slot {slot!r} is given twice.")
        outfit[slot] = None if value in BLANK_MARKERS else value
    return outfit


def load_searching_model(args: argparse.Namespace):
    """`load_model`, searching the catalogue as `--index` / `--index_parameters` say (default: as the model was saved)."""
    model = load_model(args.model, args.trust_remote_code)
    if args.index is not None or args.index_parameters is not None:
        from ..training.outfit import apply_index_flags

        apply_index_flags(model, args.index, args.index_parameters)
    return model


def add_index_flags(command: argparse.ArgumentParser) -> None:
    """`--index` and `--index_parameters`: how a command searches the catalogue (`UmBertModel.set_search_index`)."""
    command.add_argument(
        "--index",
        default=None,
        help="How to search the catalogue: exact, faiss, auto or a FAISS factory string such as HNSW32 (pip install "
        "'umbert-hf[faiss]'). Default: as the model was saved (exact unless set).",
    )
    command.add_argument(
        "--index_parameters", default=None, help="FAISS settings, e.g. efSearch=256 (see docs/performance.md)."
    )


def run_complete(args: argparse.Namespace) -> int:
    from .rendering import CompletionRow, render_completions

    outfit = parse_outfit(args.outfit)
    if not 0 <= args.diversity <= 1:
        raise ValueError(f"--diversity must be in [0, 1] (0: rank by relevance alone), got {args.diversity}.")
    if args.render:
        photos = {f"outfit {slot}": value for slot, value in outfit.items()}
        check_output(
            args.render,
            {"model": args.model, "dataset": args.dataset, **photos},
            flag="--render",
            kind="file",
            overwrite=args.overwrite,
        )
    model = load_searching_model(args)
    titles, catalogue_images = catalogue_details(args.dataset)
    images = ChainMap({}, catalogue_images)  # the user's photos go into the first map
    query = outfit_query(model, outfit, images, args.trust_remote_code)
    suggestions = model.complete([query], top_k=args.top_k, diversity=args.diversity)[0]
    blank = next(slot for slot, value in outfit.items() if value is None)
    print(f"Suggestions for {blank}:")
    for rank, entry in enumerate(suggestions, start=1):
        title = titles.get(entry["item_id"], "")
        print(f"{rank:3d}. {entry['item_id']:>14s}  score {entry['score']:9.4f}  {title}")
    if args.render:
        if not images:
            raise ValueError("--render needs --dataset DIR (built with images) to draw the items.")
        row = CompletionRow(outfit=outfit, blank=blank, suggestions=[entry["item_id"] for entry in suggestions])
        path = render_completions([row], images, args.render, slots=model.config.categories)
        print(f"Wrote {path}")
    return 0


def outfit_query(model, outfit: dict[str, str | None], photos: MutableMapping, trust_remote_code: bool = False) -> dict:
    """The outfit for `model`: a value naming a file that is no item id is the user's photo, decoded (the command
    line says so, not the string) and kept in `photos` under its file name."""
    from ..data.image_processing import decode_image

    if trust_remote_code:  # the image encoder may ship its own code too (e.g. Marqo/marqo-fashionSigLIP)
        model.set_image_encoder_source(None, trust_remote_code=True)
    query: dict = {}
    for slot, value in outfit.items():
        query[slot] = value
        if value is not None and value not in model.catalogue_item_id_list and os.path.isfile(value):
            try:
                query[slot] = decode_image(value)
            except ValueError as error:
                raise ValueError(f"--outfit {slot}={value}: not a readable image ({error}).") from None
            photos[value] = query[slot]
    return query


def run_score(args: argparse.Namespace) -> int:
    """How well a complete outfit goes together (`score_outfit`): each slot's percentile, the weakest slot and
    replacements for it."""
    outfit = parse_outfit(args.outfit)
    model = load_searching_model(args)
    titles, _ = catalogue_details(args.dataset)
    result = model.score_outfit([outfit_query(model, outfit, {}, args.trust_remote_code)], top_k=args.top_k)[0]
    print(f"Outfit score: {result['score']:.1f} / 100 (100: every item is the model's first choice; 50: random items)")
    for slot, entry in result["slots"].items():
        where = f"rank {entry['rank']:g} of {entry['candidates']}"
        print(f"{slot:>14s}  {entry['percentile']:5.1f}  {where:>18s}  {outfit[slot]}")
    weakest = result["weakest"]
    print(f"Weakest: {weakest['slot']}; replacements:")
    for rank, entry in enumerate(weakest["replacements"], start=1):
        print(f"{rank:3d}. {entry['item_id']:>14s}  score {entry['score']:9.4f}  {titles.get(entry['item_id'], '')}")
    return 0


def run_app(args: argparse.Namespace) -> int:
    """Start the web app (`umbert_hf.apps.app`), or with --write_space write the files of a Hugging Face Space."""
    import importlib.util

    if args.write_space:
        from .app import write_space

        written = write_space(args.write_space, args.model, args.dataset)
        print(f"Wrote {', '.join(str(path) for path in written)}")
        return 0
    if importlib.util.find_spec("gradio") is None:
        raise ValueError("the app needs Gradio: pip install 'umbert-hf[app]'.")
    if args.top_k < 1 or not 0 < args.port < 65536:
        raise ValueError(f"--top_k must be at least 1 and --port in 1..65535, got {args.top_k} and {args.port}.")
    from .app import build_app

    model = load_searching_model(args)
    try:
        demo = build_app(model, args.dataset, top_k=args.top_k)
    except ValueError as error:
        raise ValueError(f"--dataset {args.dataset!r}: {first_line(error)}") from None
    try:
        demo.launch(server_name=args.host, server_port=args.port)
    except OSError as error:  # the port is taken, or the host cannot be bound
        raise ValueError(f"--host {args.host} --port {args.port}: {first_line(error)}") from None
    return 0


def _delegate_dataset_builder(argv: list[str]) -> int:
    from dataset_builder.cli import run

    return run(argv, prog="umbert-hf")


def _delegate_augment(argv: list[str]) -> int:
    from ..data.augment import main as augment_main

    return augment_main(argv)


def _delegate_demo(argv: list[str]) -> int:
    from .demo import main as demo_main

    return demo_main(argv)


def add_outfit_command(
    commands, name: str, help_text: str, outfit_help: str, top_k_help: str
) -> argparse.ArgumentParser:
    """A subcommand that runs a model on one outfit given as SLOT=VALUE pairs (`complete`, `score`)."""
    command = commands.add_parser(
        name, help=help_text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    command.add_argument("--model", required=True, help="Saved umBERT/WumBERT folder or Hub repo id.")
    command.add_argument("--outfit", nargs="+", required=True, metavar="SLOT=VALUE", help=outfit_help)
    command.add_argument("--top_k", type=int, default=5, help=top_k_help)
    command.add_argument("--dataset", type=str, default=None, help="Built dataset: titles and images of the items.")
    command.add_argument(
        "--trust_remote_code",
        action="store_true",
        help="Load a model (and its image encoder) with the code in its repo.",
    )
    add_index_flags(command)
    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umbert-hf",
        description="Outfit completion with umBERT and WumBERT.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    complete = add_outfit_command(
        commands,
        "complete",
        "suggest items for the blank slot of an outfit",
        "One per slot: an item id, an image file (embedded with the model's recorded encoder), or ? for the blank.",
        "Suggestions to list.",
    )
    complete.add_argument(
        "--diversity",
        type=float,
        default=0.0,
        help="In [0, 1]: re-rank the suggestions so near-copies of one already listed move down (maximal marginal "
        "relevance; 0, the default, ranks by relevance alone; the README gives a recommended value).",
    )
    complete.add_argument("--render", type=str, default=None, help="Write a PNG of the outfit and the suggestions.")
    complete.add_argument("--overwrite", action="store_true", help="Replace an existing --render file.")
    add_outfit_command(
        commands,
        "score",
        "how well a complete outfit goes together, and which piece clashes",
        "One per slot: an item id or an image file.",
        "Replacements suggested for the weakest slot.",
    )
    app = commands.add_parser(
        "app",
        help="start the outfit completion web app (Gradio), or write it as a Hugging Face Space",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    app.add_argument("--model", required=True, help="Saved umBERT/WumBERT folder or Hub repo id.")
    app.add_argument("--dataset", default=None, help="Built dataset: titles, images and the random test outfits.")
    app.add_argument("--port", type=int, default=7860, help="Port to serve on (default 7860).")
    app.add_argument("--host", default="127.0.0.1", help="Address to serve on (0.0.0.0: every interface).")
    app.add_argument("--top_k", type=int, default=5, help="Suggestions shown at first (the page has a slider).")
    app.add_argument(
        "--write_space",
        metavar="DIR",
        default=None,
        help="Write app.py, requirements.txt and README.md of a Hugging Face Space to DIR instead of serving.",
    )
    app.add_argument("--trust_remote_code", action="store_true", help="Load a model with the code in its repo.")
    add_index_flags(app)
    for name, help_text in (
        ("synthesize", "write a synthetic raw folder in the Polyvore Outfits format"),
        ("build", "build the outfits dataset (parquet + card) from a raw Polyvore Outfits folder"),
        ("convert-mango", "write the MANGO datathon outfits as a raw Polyvore Outfits folder"),
        ("convert-csv", "write your products and outfits tables (CSV, parquet) as a raw Polyvore Outfits folder"),
        ("augment", "add nearest-neighbour swapped outfits as an outfits_augmented config (WumBERT)"),
        ("demo", "run the whole pipeline on synthetic data and complete a few outfits"),
    ):
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


DELEGATES = {
    "synthesize": lambda argv: _delegate_dataset_builder(["synthesize", *argv]),
    "build": lambda argv: _delegate_dataset_builder(["build", *argv]),
    "convert-mango": lambda argv: _delegate_dataset_builder(["convert-mango", *argv]),
    "convert-csv": lambda argv: _delegate_dataset_builder(["convert-csv", *argv]),
    "augment": _delegate_augment,
    "demo": _delegate_demo,
}


def _run(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATES:
        return DELEGATES[argv[0]](argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"app": run_app, "score": run_score}.get(args.command, run_complete)(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The `umbert-hf` console script; returns the exit status (a user error: one `error: ...` line and 2)."""
    return run_command(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
