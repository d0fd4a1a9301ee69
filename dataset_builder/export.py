"""Writing a built Polyvore dataset as a Hub-layout folder (parquet + dataset card), atomically; pushing it to the Hub."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData
from transformers.utils import logging

from umbert_hf.utils.files import atomic_path, clean_stale_temporaries
from umbert_hf.utils.hub import push_folder_to_hub
from umbert_hf.utils.paths import check_output

from .config import DEFAULT_CATEGORIES
from .polyvore_outfits import _CITATION, _HOMEPAGE, PolyvoreOutfits
from .prepare import CONFIG_NAMES, CONFIG_SPLITS, SPLITS, PreparedPolyvore, PreparedSplit
from .raw import PolyvoreFormatError

logger = logging.get_logger(__name__)

SUMMARY_FILE = "build_summary.json"
SYNTHETIC_MARKER = "synthetic_latents.json"
# the file that marks a folder as written by a command: `--overwrite` replaces only such a folder
MARKER_COMMANDS = {
    SUMMARY_FILE: "build",
    SYNTHETIC_MARKER: "synthesize",
    "mango_import.json": "convert-mango",
    "csv_import.json": "convert-csv",
}
IMAGE_ROWS_PER_GROUP = 100  # small row groups keep image parquet files streamable
MAX_SHARD_BYTES = 500 * 1024 * 1024


@dataclass
class BuildSummary:
    """What a build read, kept and dropped (and why), with the builder parameters. `str()` gives a readable report."""

    raw_dir: str
    output_dir: str
    parameters: dict
    items: dict
    references: dict
    outfits: dict
    catalogue: dict
    items_per_split: dict
    fitb: dict
    compatibility: dict
    synthetic: bool = False
    shared_set_ids: dict = field(default_factory=dict)  # "train-test" -> set ids in both splits

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        """The `build_summary.json` text: no local paths (only the raw folder's name), so builds are reproducible."""
        data = self.to_dict()
        data.pop("output_dir")
        data["raw_dir"] = Path(self.raw_dir).name
        return json.dumps(data, indent=2) + "\n"

    def __str__(self) -> str:
        slots = self.parameters["categories"]
        lines = [
            f"Polyvore Outfits build: {self.raw_dir} -> {self.output_dir}",
            "parameters: " + ", ".join(f"{key}={value}" for key, value in self.parameters.items()),
            f"items: {self.items['read']} read, {self.items['in_slot_categories']} in slot categories, "
            f"{self.items['missing_image']} dropped for a missing image, "
            f"{self.items['unreadable_image']} for an unreadable image",
            f"references: {self.references['missing_item']} to items absent from the metadata, "
            f"{self.references['bad_image']} to items with a bad image (dropped)",
        ]
        for split in SPLITS:
            report = self.outfits[split]
            dropped = ", ".join(f"{reason} {count}" for reason, count in report["dropped"].items())
            lacking = ", ".join(f"{slot} {count}" for slot, count in report["lacking_slot"].items())
            lines.append(
                f"outfits {split}: {report['read']} read, {report['kept']} kept; dropped: {dropped}; lacking: {lacking}"
            )
        lines.append(
            "catalogue: "
            + ", ".join(f"{slot} {self.catalogue[slot]}" for slot in slots)
            + f" (total {self.catalogue['total']})"
        )
        shared = {pair: count for pair, count in self.shared_set_ids.items() if count}
        if shared:
            lines.append(
                "warning: set ids in two splits (the same outfit in both; --strict refuses it): "
                + ", ".join(f"{pair} {count}" for pair, count in shared.items())
            )
        for split, report in self.fitb.items():
            unresolved = sum(report["official_unresolved"].values())
            lines.append(
                f"fitb {split}: {report['rows']} questions ({report['official']} official, "
                f"{report['generated']} generated; {unresolved} official questions unresolved)"
            )
        for split, report in self.compatibility.items():
            unresolved = sum(report["official_negatives_unresolved"].values())
            lines.append(
                f"compatibility {split}: {report['positives']} positives, {report['official_negatives']} official "
                f"negatives, {report['swap_negatives']} swap negatives ({unresolved} official negatives unresolved)"
            )
        return "\n".join(lines)


def build_dataset(
    raw_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    split_type: str = "nondisjoint",
    categories=DEFAULT_CATEGORIES,
    category_map: dict[str, str] | None = None,
    with_images: bool = True,
    full_catalogue: bool = False,
    seed: int = 0,
    strict: bool = False,
    overwrite: bool = False,
    num_proc: int | None = None,
) -> BuildSummary:
    """Build every config (`catalogue`, `outfits`, `fitb`, `compatibility`) from a raw Polyvore Outfits folder into
    `output_dir`, loadable with `datasets.load_dataset(output_dir, CONFIG)`.

    The rows are those the `PolyvoreOutfits` builder generates: it reads and prepares the raw folder once, and every
    config is written from that preparation. Raises `PolyvoreFormatError` (a `ValueError`) on bad input; the output
    folder only appears once complete. `num_proc` processes check the images (the same folder for any value).
    """
    try:
        # a builder touches its `datasets` cache when constructed; the export writes none, so give it a throwaway one
        with tempfile.TemporaryDirectory() as cache_dir:
            builder = PolyvoreOutfits(
                config_name="outfits",
                cache_dir=cache_dir,
                raw_dir=str(raw_dir),
                split_type=split_type,
                categories=categories,
                category_map=category_map,
                with_images=with_images,
                full_catalogue=full_catalogue,
                seed=seed,
                strict=strict,
            )
    except ValueError as error:
        if isinstance(error, PolyvoreFormatError):
            raise
        raise PolyvoreFormatError(str(error)) from error
    output = Path(output_dir)
    clean_stale_temporaries(output)  # first: it may put back a folder that a killed --overwrite had moved aside
    check_output_dir(output, overwrite, {"raw_dir": raw_dir}, marker=SUMMARY_FILE)
    prepared = builder.prepare(num_proc)
    raw = prepared.raw
    logger.info(
        "read %d items and %d train outfits from %s", len(raw.item_category), len(raw.outfits["train"]), raw_dir
    )
    summary = BuildSummary(
        raw_dir=str(raw_dir),
        output_dir=str(output),
        parameters=builder.config.parameters(),
        synthetic=(Path(raw_dir) / SYNTHETIC_MARKER).is_file(),
        **prepared.report,
    )
    with atomic_output_dir(output, overwrite=overwrite, inputs={"raw_dir": raw_dir}, marker=SUMMARY_FILE) as folder:
        write_dataset_folder(prepared, folder, summary)
    logger.info("wrote %s", output)
    return summary


# What each command writes (relative paths, fnmatch patterns): --overwrite replaces a folder holding nothing else.
WRITTEN_FILES = {
    SUMMARY_FILE: ("README.md", SUMMARY_FILE, "*/*.parquet"),
    SYNTHETIC_MARKER: ("*.json", "categories.csv", "images/*", "nondisjoint/*", "disjoint/*"),
    "mango_import.json": ("*.json", "categories.csv", "images/*", "nondisjoint/*"),
    "csv_import.json": ("*.json", "categories.csv", "images/*", "nondisjoint/*"),
}


def check_output_dir(
    output: Path, overwrite: bool, inputs: Mapping[str, str | os.PathLike | None] | None = None, marker: str = ""
) -> None:
    """Refuse an output folder that could touch what the user owns (`umbert_hf.utils.paths.check_output`): with
    `overwrite`, only a folder holding the command's `marker` and nothing it does not write is replaced."""
    command = f"`{MARKER_COMMANDS[marker]}`" if marker in MARKER_COMMANDS else "this command"
    check_output(
        output, inputs, overwrite=overwrite, markers=(marker,), written=WRITTEN_FILES.get(marker), command=command
    )


@contextlib.contextmanager
def atomic_output_dir(
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    marker: str = "",
):
    """Yield a temporary folder beside `output_dir`; move it into place only when the block completes.

    On any failure (or interrupt) the temporary folder is removed and an existing `output_dir` is left untouched.
    With `overwrite`, the old folder is moved aside and removed only once the new one is in place; it must hold
    `marker` (the file the command writes). The output never overlaps the `inputs` (flag -> path).
    Leftovers of killed runs beside `output_dir` are removed first (`clean_stale_temporaries`).
    """
    output = Path(output_dir)
    clean_stale_temporaries(output)
    check_output_dir(output, overwrite, inputs, marker)
    with atomic_path(output, folder=True) as temporary:
        yield temporary
        check_output_dir(output, overwrite, inputs, marker)  # it may have appeared meanwhile


def _write_parquet(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def _shard_name(split: str, shard: int, num_shards: int) -> str:
    return f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"


def _write_catalogue_with_images(catalogue: PreparedSplit, features: datasets.Features, folder: Path) -> int:
    """Write the catalogue in shards of about `MAX_SHARD_BYTES` of images; return the bytes of its arrow tables."""
    schema = features.arrow_schema
    sizes = [catalogue.image_path(item_id).stat().st_size for item_id in catalogue.columns["item_id"]]
    shards, start, running = [], 0, 0
    for end, size in enumerate(sizes, start=1):
        running += size
        if running >= MAX_SHARD_BYTES and end < len(sizes):
            shards.append((start, end))
            start, running = end, 0
    shards.append((start, len(sizes)))
    num_bytes = 0
    for shard, (first, last) in enumerate(shards):
        path = folder / catalogue.config_name / _shard_name(catalogue.name, shard, len(shards))
        path.parent.mkdir(parents=True, exist_ok=True)
        with pq.ParquetWriter(path, schema) as writer:
            for batch in catalogue.batches(IMAGE_ROWS_PER_GROUP, first, last):
                table = pa.Table.from_pydict(batch, schema=schema)
                num_bytes += table.nbytes
                writer.write_table(table)
    return num_bytes


def write_dataset_folder(prepared: PreparedPolyvore, folder: Path, summary: BuildSummary) -> None:
    """Write `<config>/<split>-00000-of-00001.parquet` for every config and split (the rows the builder generates),
    the card and the summary."""
    split_bytes = {}
    for config_name in CONFIG_NAMES:
        features = prepared.features(config_name)
        for split in prepared.splits(config_name):
            if split.images_dir is not None:
                num_bytes = _write_catalogue_with_images(split, features, folder)
            else:
                table = pa.Table.from_pydict(split.columns, schema=features.arrow_schema)
                num_bytes = table.nbytes
                _write_parquet(table, folder / config_name / _shard_name(split.name, 0, 1))
            split_bytes[config_name, split.name] = num_bytes
    (folder / "README.md").write_text(dataset_card(prepared, summary, split_bytes), encoding="utf-8")
    (folder / SUMMARY_FILE).write_text(summary.to_json(), encoding="utf-8")


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return name
    return "1M<n<10M"


def _card_yaml(prepared: PreparedPolyvore, summary: BuildSummary, split_bytes: dict) -> str:
    if summary.synthetic:  # generated by this project's code, no Polyvore content
        licence = {"license": "apache-2.0"}
    else:
        licence = {"license": "other", "license_name": "polyvore-outfits-research-only", "license_link": _HOMEPAGE}
    card_data = DatasetCardData(
        pretty_name="Polyvore Outfits (umBERT slots)" + (" — synthetic" if summary.synthetic else ""),
        **licence,
        language=["en"],
        task_categories=["image-feature-extraction", "text-retrieval"],
        tags=["fashion", "outfit-compatibility", "polyvore", "fill-in-the-blank", "umbert"]
        + (["synthetic"] if summary.synthetic else []),
        size_categories=[_size_category(summary.catalogue["total"])],
    )
    card_data["configs"] = [
        {
            "config_name": config_name,
            "data_files": [
                {"split": split, "path": f"{config_name}/{split}-*.parquet"} for split in CONFIG_SPLITS[config_name]
            ],
            **({"default": True} if config_name == "outfits" else {}),
        }
        for config_name in CONFIG_NAMES
    ]
    infos = {}
    for config_name in CONFIG_NAMES:
        splits = datasets.SplitDict()
        for split in prepared.splits(config_name):
            splits.add(
                datasets.SplitInfo(
                    name=split.name, num_bytes=split_bytes[config_name, split.name], num_examples=split.num_rows
                )
            )
        infos[config_name] = datasets.DatasetInfo(features=prepared.features(config_name), splits=splits)
    DatasetInfosDict(infos).to_dataset_card_data(card_data)
    return card_data.to_yaml()


def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def dataset_card(prepared: PreparedPolyvore, summary: BuildSummary, split_bytes: dict) -> str:
    """The README.md of the built folder: YAML (configs, dataset_info) and the card text."""
    slots = list(prepared.categories)
    parameters = summary.parameters
    mapping = ", ".join(f"{semantic} → {slot}" for semantic, slot in parameters["category_map"].items())
    outfit_rows = [
        [
            split,
            summary.outfits[split]["read"],
            summary.outfits[split]["kept"],
            sum(summary.outfits[split]["dropped"].values()),
            *[summary.items_per_split[split][slot] for slot in slots],
        ]
        for split in SPLITS
    ]
    fitb_rows = [
        [split, report["rows"], report["official"], report["generated"], sum(report["official_unresolved"].values())]
        for split, report in summary.fitb.items()
    ]
    compatibility_rows = [
        [split, report["positives"], report["official_negatives"], report["swap_negatives"]]
        for split, report in summary.compatibility.items()
    ]
    if summary.synthetic:
        source = (
            "**Synthetic data.** The raw folder was written by `python -m dataset_builder synthesize` "
            "(procedural item images and titles following hidden compatibility rules) in the official "
            "Polyvore Outfits format. It contains no Polyvore data; it exists so that tests and demos run "
            "without the download."
        )
        licence = (
            "The synthetic data is generated by umbert-hf and shares its Apache-2.0 licence. The real Polyvore "
            "Outfits dataset, whose format it mimics, is for research use only."
        )
    else:
        source = (
            f"Built from the official Polyvore Outfits download ({_HOMEPAGE}), `{parameters['split_type']}` splits, "
            "by `python -m dataset_builder build` from the umbert-hf project."
        )
        licence = (
            "Polyvore Outfits is released for **research purposes only**: no commercial use, and the images "
            "remain the property of their owners. This derived dataset carries the same restriction."
        )
    body = f"""
# Polyvore Outfits for outfit completion (umBERT)

{source}

Each kept outfit holds exactly one item of each slot category: **{", ".join(slots)}**.

## Loading

```python
from datasets import load_dataset

outfits = load_dataset("PATH_OR_REPO", "outfits")          # train / validation / test
catalogue = load_dataset("PATH_OR_REPO", "catalogue")["train"]
fitb = load_dataset("PATH_OR_REPO", "fitb")                # validation / test
compatibility = load_dataset("PATH_OR_REPO", "compatibility")  # train / validation / test
```

## Configs

- `catalogue` (`train`): `item_id`, `category` (slot), `semantic_category`, `title`{", `image` (embedded JPEG bytes)" if prepared.with_images else " (built without images)"}.
  {"Every item of the slot categories (`full_catalogue`)." if parameters["full_catalogue"] else "Every item that appears in a kept outfit of any split."}
- `outfits` (`train`/`validation`/`test`, the official `train`/`valid`/`test`): `outfit_id` (the Polyvore `set_id`) and one item id per slot.
- `fitb` (`validation`/`test`): one question per kept outfit: `blank` (slot), 4 `candidates` of the blank's category, `label` (index of the right one). The official `fill_in_blank_*.json` question is used when it resolves to a full slot outfit with the blank in a slot and every candidate in the catalogue; otherwise the blank slot is drawn with seed {parameters["seed"]} and the 3 negatives are drawn from the items of the same category in the same split.
- `compatibility` (`train`/`validation`/`test`): `label` (1 compatible, 0 not) and one item id per slot. Positives are the split's kept outfits; negatives are the official `compatibility_*.txt` negatives that resolve to full slot outfits of catalogue items, topped up to as many negatives as positives with random same-category outfits (every slot swapped for a random item of its category in the split), seed {parameters["seed"]}.

## Filtering rule

An item's slot is given by its `semantic_category` through the map {mapping}. An outfit is kept when it has at least one item of every slot; when it has several items of one slot, the one with the lowest `index` is kept. References to items absent from the metadata{" and items whose image is missing or unreadable" if prepared.with_images else ""} are dropped (and counted) before the rule is applied.

## Counts

Outfits per split, with the number of distinct items of each slot category:

{_markdown_table(["split", "read", "kept", "dropped", *slots], outfit_rows)}

Catalogue: {", ".join(f"{slot} {summary.catalogue[slot]}" for slot in slots)} (total {summary.catalogue["total"]}).

Fill in the blank:

{_markdown_table(["split", "questions", "official", "generated", "official unresolved"], fitb_rows)}

Compatibility:

{_markdown_table(["split", "positives", "official negatives", "swap negatives"], compatibility_rows)}

Build parameters and every drop reason are in `build_summary.json`.

## Licence

{licence}

## Citation

```bibtex
{_CITATION.rstrip()}
```
"""
    return "---\n" + _card_yaml(prepared, summary, split_bytes) + "\n---\n" + body


def push_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload Polyvore Outfits dataset built with umbert-hf",
):
    """Create the dataset repo `repo_id` if needed and upload the built folder; returns the commit info."""
    return push_folder_to_hub(
        output_dir, repo_id, repo_type="dataset", token=token, private=private, commit_message=commit_message
    )


__all__ = [
    "BuildSummary",
    "check_output_dir",
    "atomic_output_dir",
    "build_dataset",
    "dataset_card",
    "push_to_hub",
    "write_dataset_folder",
]
