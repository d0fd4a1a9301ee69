"""Catalogue embedding extraction: image and text embeddings of every catalogue item, batched and multi-process.

Images are decoded and resized in DataLoader workers (to `uint8`), normalised on the model's device, and embedded
in batches. Under `accelerate launch` each process embeds a contiguous share of the catalogue and the shares are
gathered, so every process ends with the complete table in catalogue order (the script writes it once).
"""

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import datasets
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers.utils import logging

from .embeddings import EmbeddingsTable
from .image_processing import ImageDecodeError, ImagePreprocessing, load_image_encoder, read_image

logger = logging.get_logger(__name__)

MISSING_IMAGE_POLICIES = ("impute", "drop", "error")
METADATA_FORMAT_VERSION = 1


class NoReadableImagesError(RuntimeError):
    """Not a single catalogue image could be read."""


@dataclass
class ExtractionStats:
    """What one extraction saw and how fast it went (`items_per_second`: the whole catalogue over the wall time)."""

    num_items: int = 0
    num_missing: int = 0
    missing_item_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        return self.num_items / self.seconds if self.seconds > 0 else float("nan")


def load_catalogue(dataset: str | os.PathLike | datasets.Dataset, cache_dir: str | None = None) -> datasets.Dataset:
    """The `catalogue` config's `train` split of a built dataset folder or Hub id (or a `Dataset` as is)."""
    if isinstance(dataset, datasets.Dataset):
        return dataset
    catalogue = datasets.load_dataset(os.fspath(dataset), "catalogue", cache_dir=cache_dir)["train"]
    missing = [name for name in ("item_id", "category") if name not in catalogue.column_names]
    if missing:
        raise ValueError(f"{dataset}: the catalogue lacks column(s) {missing} (found {catalogue.column_names}).")
    return catalogue


def default_num_workers(num_processes: int = 1, device: torch.device | str = "cpu") -> int:
    """DataLoader workers per process for image loading.

    On an accelerator, every core but the feeding one loads (at most 8). On the CPU the model's threads already use
    every core and a loader process takes one from them: none with two cores or fewer per process (loading is then
    about a tenth of the work and cheapest in-process), else a quarter of the cores (at most 4).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_process = max(1, cores // max(1, num_processes))
    if torch.device(device).type != "cpu":
        return max(0, min(8, per_process - 1))
    return 0 if per_process <= 2 else min(4, per_process // 4)


def shard_bounds(num_items: int, num_processes: int, process_index: int) -> tuple[int, int]:
    """Contiguous `[start, end)` share of one process: equal sizes `ceil(n / p)` except the last ones."""
    per_process = math.ceil(num_items / num_processes) if num_items else 0
    start = min(num_items, process_index * per_process)
    return start, min(num_items, start + per_process)


class CatalogueImages(torch.utils.data.Dataset):
    """Decoded, resized `uint8` images of some catalogue rows, for DataLoader workers.

    Items are dicts `{"pixels": uint8 (3, size, size), "readable": bool}` (plus `"labels"` when `labels` is given);
    a missing or corrupt image gives zeros and `readable=False` instead of failing the run.
    """

    def __init__(
        self,
        catalogue: datasets.Dataset,
        rows: Sequence[int],
        transform: Callable,
        image_size: int,
        labels: Sequence[int] | None = None,
    ):
        # Undecoded column: workers decode the bytes themselves so a corrupt image is counted, not fatal.
        self.images = catalogue.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
        self.rows = list(rows)
        self.transform = transform
        self.labels = labels
        self.blank = torch.zeros(3, image_size, image_size, dtype=torch.uint8)

    def __len__(self) -> int:
        return len(self.rows)

    def _item(self, row: int, image) -> dict:
        try:
            item = {"pixels": self.transform(read_image(image)), "readable": True}
        except ImageDecodeError:
            item = {"pixels": self.blank, "readable": False}
        if self.labels is not None:
            item["labels"] = self.labels[row]
        return item

    def __getitem__(self, index: int) -> dict:
        row = self.rows[index]
        return self._item(row, self.images[row]["image"])

    def __getitems__(self, indices: list[int]) -> list[dict]:
        """A whole batch of rows in one `datasets` read (the DataLoader calls this when it exists)."""
        rows = [self.rows[index] for index in indices]
        return [self._item(row, image) for row, image in zip(rows, self.images[rows]["image"])]


def _gather_shards(accelerator, tensor: torch.Tensor, num_items: int) -> torch.Tensor:
    """Concatenate every process's contiguous share (padded to equal size for the collective) in catalogue order."""
    if accelerator is None or accelerator.num_processes == 1:
        return tensor
    per_process = math.ceil(num_items / accelerator.num_processes)
    padded = tensor.new_zeros((per_process, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = accelerator.gather(padded.to(accelerator.device)).cpu()  # (processes * per_process, ...)
    pieces = []
    for process in range(accelerator.num_processes):
        start, end = shard_bounds(num_items, accelerator.num_processes, process)
        pieces.append(gathered[process * per_process : process * per_process + end - start])
    return torch.cat(pieces)


@torch.no_grad()
def extract_image_embeddings(
    model,
    catalogue: datasets.Dataset,
    *,
    preprocessing: ImagePreprocessing | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    accelerator=None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.BoolTensor, ExtractionStats]:
    """Image embeddings of every catalogue row (in order), on every process.

    Args:
        model: a `FashionResNetModel` or `SsimAutoEncoderModel` (anything with `get_image_embeddings`).
        catalogue: the catalogue split, with an `image` column.
        preprocessing: defaults to the model config's.
        batch_size: images per forward pass (per process).
        num_workers: DataLoader workers per process; default `default_num_workers`.
        accelerator: an `accelerate.Accelerator` to share the work between processes; `None` for one process.
        progress: show a progress bar on the local main process.

    Returns:
        `(embeddings (num_items, dim) float32, readable (num_items,) bool, stats)`; rows of unreadable images are
        zeros.
    """
    if "image" not in catalogue.column_names:
        raise ValueError("The catalogue has no `image` column (was the dataset built without images?).")
    preprocessing = preprocessing or ImagePreprocessing.from_config(model.config)
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    num_workers = default_num_workers(num_processes, device) if num_workers is None else num_workers
    num_items = len(catalogue)
    start, end = shard_bounds(num_items, num_processes, process_index)

    images = CatalogueImages(
        catalogue, range(start, end), preprocessing.load_transform(train=False), preprocessing.image_size
    )
    loader = DataLoader(
        images,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    model = model.to(device).eval()
    show = progress and (accelerator is None or accelerator.is_local_main_process)
    began = time.perf_counter()
    embeddings, readable = [], []
    autocast = accelerator.autocast() if accelerator is not None else torch.autocast(device.type, enabled=False)
    with autocast, tqdm(total=len(images), desc="Embedding images", unit="img", disable=not show) as bar:
        for batch in loader:
            pixel_values = preprocessing.normalize(batch["pixels"].to(device, non_blocking=True))
            embeddings.append(model.get_image_embeddings(pixel_values).float().cpu())
            readable.append(batch["readable"])
            bar.update(len(batch["readable"]))
    dim = model.config.embedding_dim
    local_embeddings = torch.cat(embeddings) if embeddings else torch.zeros(0, dim)
    local_readable = torch.cat(readable) if readable else torch.zeros(0, dtype=torch.bool)

    all_embeddings = _gather_shards(accelerator, local_embeddings, num_items)
    all_readable = _gather_shards(accelerator, local_readable.to(torch.uint8), num_items).bool()
    all_embeddings[~all_readable] = 0.0
    item_ids = list(catalogue["item_id"]) if "item_id" in catalogue.column_names else list(range(num_items))
    missing_rows = torch.nonzero(~all_readable).flatten().tolist()
    stats = ExtractionStats(
        num_items=num_items,
        num_missing=len(missing_rows),
        missing_item_ids=[item_ids[row] for row in missing_rows],
        seconds=time.perf_counter() - began,
    )
    return all_embeddings, all_readable, stats


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states over the non-padding tokens: `(batch, tokens, dim) -> (batch, dim)`."""
    mask = attention_mask.unsqueeze(-1).to(last_hidden_state.dtype)  # (batch, tokens, 1)
    return (last_hidden_state * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


@torch.no_grad()
def extract_text_embeddings(
    text_encoder: str | os.PathLike,
    texts: Sequence[str | None],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    accelerator=None,
    progress: bool = True,
) -> tuple[torch.Tensor, ExtractionStats]:
    """Mean-pooled embeddings of `texts` (in order, on every process) from a local `transformers` text encoder.

    Args:
        text_encoder: folder (or Hub id, when online) of a model loadable by `AutoModel` and `AutoTokenizer`, e.g.
            sentence-transformers/all-MiniLM-L6-v2.
        texts: one text per item; `None` counts as empty.
        max_length: token limit per text.
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(os.fspath(text_encoder))
    model = AutoModel.from_pretrained(os.fspath(text_encoder))
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    start, end = shard_bounds(len(texts), num_processes, process_index)
    shard = ["" if text is None else str(text) for text in texts[start:end]]

    def tokenize(batch: list[str]) -> dict:
        return tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")

    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=tokenize)
    model = model.to(device).eval()
    show = progress and (accelerator is None or accelerator.is_local_main_process)
    began = time.perf_counter()
    embeddings = []
    with tqdm(total=len(shard), desc="Embedding titles", unit="text", disable=not show) as bar:
        for batch in loader:
            batch = {name: value.to(device) for name, value in batch.items()}
            hidden = model(**batch).last_hidden_state  # (batch, tokens, hidden)
            embeddings.append(mean_pool(hidden, batch["attention_mask"]).float().cpu())
            bar.update(hidden.shape[0])
    dim = model.config.hidden_size
    local = torch.cat(embeddings) if embeddings else torch.zeros(0, dim)
    stats = ExtractionStats(num_items=len(texts), seconds=time.perf_counter() - began)
    return _gather_shards(accelerator, local, len(texts)), stats


def _impute_by_category(embeddings: torch.Tensor, readable: torch.BoolTensor, categories: list[str]) -> torch.Tensor:
    """Replace unreadable rows by the mean of the readable rows of the same category (or of all)."""
    embeddings = embeddings.clone()
    overall = embeddings[readable].mean(dim=0)
    category_rows: dict[str, list[int]] = {}
    for row, category in enumerate(categories):
        category_rows.setdefault(category, []).append(row)
    for rows in category_rows.values():
        rows = torch.tensor(rows)
        good = rows[readable[rows]]
        fill = embeddings[good].mean(dim=0) if len(good) else overall
        embeddings[rows[~readable[rows]]] = fill
    return embeddings


def _name_or_path(name_or_path: str | os.PathLike) -> str:
    """Local folders are recorded as absolute paths (the table is read from other working folders); Hub ids as given.

    Such paths are only meaningful on this machine: `shareable_metadata` reduces them before they reach a model's
    config, which is shared (pushed to the Hub, copied elsewhere).
    """
    name_or_path = os.fspath(name_or_path)
    return os.path.abspath(name_or_path) if os.path.exists(name_or_path) else name_or_path


def is_local_path(name_or_path: str | os.PathLike) -> bool:
    """Whether a dataset or encoder reference is a path of this machine (absolute or existing), not a Hub id."""
    name_or_path = os.fspath(name_or_path)
    return os.path.isabs(name_or_path) or os.path.exists(name_or_path)


def shareable_name(name_or_path: str | os.PathLike | None) -> str | None:
    """A Hub id as given; a local path reduced to its base name (a machine-local path breaks once shared or moved)."""
    if name_or_path is None or not os.fspath(name_or_path):
        return None
    name_or_path = os.fspath(name_or_path)
    return os.path.basename(os.path.normpath(name_or_path)) if is_local_path(name_or_path) else name_or_path


def shareable_metadata(metadata: dict) -> dict:
    """A copy of embeddings metadata fit for a model's `config.json`: no machine-local paths.

    `dataset`, `image_encoder` and `text_encoder` keep their Hub id or only their folder's base name, and so does any
    other absolute path in the metadata (nested values included); everything else is kept as is.
    """

    def clean(value):
        if isinstance(value, str):
            return shareable_name(value) if os.path.isabs(value) else value
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    shared = clean(dict(metadata))
    for key in ("dataset", "image_encoder", "text_encoder"):
        if isinstance(shared.get(key), str):
            shared[key] = shareable_name(shared[key])
    return shared


def compute_catalogue_embeddings(
    dataset: str | os.PathLike | datasets.Dataset,
    *,
    image_encoder: str | os.PathLike | None = None,
    text_encoder: str | os.PathLike | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    text_max_length: int = 128,
    normalize: bool | None = None,
    missing_images: str = "impute",
    accelerator=None,
    progress: bool = True,
    cache_dir: str | None = None,
) -> tuple[EmbeddingsTable, dict]:
    """The embeddings table of every catalogue item, with metadata recording how it was made.

    Args:
        dataset: a built dataset folder / Hub id, or the catalogue `Dataset` itself.
        image_encoder: folder or Hub id of a trained `fashion-resnet` / `ssim-autoencoder`.
        text_encoder: folder or Hub id of a `transformers` text encoder, mean-pooled over each item's `title`.
        normalize: L2-normalise each part; default: only when both encoders are given (the parts are then
            concatenated, image first).
        missing_images: what to do with items whose image is missing or corrupt: `"impute"` (the mean image
            embedding of their category), `"drop"` (leave them out of the table) or `"error"`.
        accelerator: share the work between `accelerate` processes; every process gets the complete table.

    Returns:
        `(table, report)`: the table (catalogue order) and a dict of counts and speeds.

    Raises:
        NoReadableImagesError: an image encoder was given but no image could be read.
    """
    if image_encoder is None and text_encoder is None:
        raise ValueError("Give an image encoder, a text encoder, or both.")
    if missing_images not in MISSING_IMAGE_POLICIES:
        raise ValueError(f"`missing_images` must be one of {MISSING_IMAGE_POLICIES}, got {missing_images!r}.")
    catalogue = load_catalogue(dataset, cache_dir=cache_dir)
    if len(catalogue) == 0:
        raise ValueError(f"{dataset}: the catalogue is empty.")
    item_ids = [str(item_id) for item_id in catalogue["item_id"]]
    categories = list(catalogue["category"])
    normalize = (image_encoder is not None and text_encoder is not None) if normalize is None else normalize
    keep = torch.ones(len(item_ids), dtype=torch.bool)
    parts, report = [], {"num_items": len(item_ids)}
    metadata = {
        "format_version": METADATA_FORMAT_VERSION,
        "dataset": _name_or_path(dataset) if not isinstance(dataset, datasets.Dataset) else None,
        "normalized": normalize,
        "parts": [],
    }

    if image_encoder is not None:
        model = load_image_encoder(os.fspath(image_encoder))
        preprocessing = ImagePreprocessing.from_config(model.config)
        embeddings, readable, stats = extract_image_embeddings(
            model,
            catalogue,
            preprocessing=preprocessing,
            batch_size=batch_size,
            num_workers=num_workers,
            accelerator=accelerator,
            progress=progress,
        )
        report.update(
            images_per_second=stats.items_per_second,
            image_seconds=stats.seconds,
            missing_images=stats.num_missing,
            missing_image_examples=stats.missing_item_ids[:10],
        )
        if stats.num_missing == len(item_ids):
            raise NoReadableImagesError(
                f"None of the {len(item_ids)} catalogue images of {dataset} could be read (missing or corrupt)."
            )
        if stats.num_missing:
            message = (
                f"{stats.num_missing} of {len(item_ids)} catalogue images are missing or corrupt, e.g. item(s) "
                f"{stats.missing_item_ids[:5]}"
            )
            if missing_images == "error":
                raise ValueError(message + ".")
            if accelerator is None or accelerator.is_main_process:
                action = ": imputed with their category mean." if missing_images == "impute" else ": dropped."
                logger.warning(message + action)
            if missing_images == "impute":
                embeddings = _impute_by_category(embeddings, readable, categories)
            else:
                keep &= readable
        parts.append(embeddings)
        metadata["parts"].append("image")
        metadata.update(
            image_encoder=_name_or_path(image_encoder),
            image_encoder_type=model.config.model_type,
            image_embedding_dim=embeddings.shape[1],
            image_preprocessing=preprocessing.to_dict(),
            missing_images=stats.num_missing,
            missing_image_policy=missing_images,
        )

    if text_encoder is not None:
        titles = catalogue["title"] if "title" in catalogue.column_names else [None] * len(item_ids)
        embeddings, stats = extract_text_embeddings(
            text_encoder,
            titles,
            batch_size=batch_size,
            max_length=text_max_length,
            accelerator=accelerator,
            progress=progress,
        )
        report.update(texts_per_second=stats.items_per_second, text_seconds=stats.seconds)
        parts.append(embeddings)
        metadata["parts"].append("text")
        metadata.update(
            text_encoder=_name_or_path(text_encoder),
            text_embedding_dim=embeddings.shape[1],
            text_pooling="mean",
            text_field="title",
            text_max_length=text_max_length,
        )

    if normalize:
        parts = [torch.nn.functional.normalize(part, dim=1) for part in parts]
    embeddings = torch.cat(parts, dim=1)[keep]
    kept_rows = torch.nonzero(keep).flatten().tolist()
    metadata["embedding_dim"] = embeddings.shape[1]
    metadata["num_items"] = len(kept_rows)
    table = EmbeddingsTable(
        [item_ids[row] for row in kept_rows], [categories[row] for row in kept_rows], embeddings, metadata
    )
    report["num_rows"] = len(table)
    return table, report


def embed_new_items(
    metadata: dict,
    images: Sequence | None = None,
    titles: Sequence[str | None] | None = None,
    batch_size: int = 64,
    image_encoder=None,
) -> torch.Tensor:
    """Embed items that are not in the catalogue (e.g. a user's photo) the way a table was made.

    Args:
        metadata: the table's metadata (`EmbeddingsTable.metadata`, or `UmBertConfig.embedding_metadata`): which
            encoders, which preprocessing, whether the parts were normalised.
        images: one image per item (PIL, bytes, path) when the table has an image part.
        image_encoder: the image encoder (model, folder or Hub id) to use instead of the metadata's. A model's config
            keeps only the base name of a local encoder: give `model.load_image_encoder()` then.
        titles: one title per item for a text part. Without titles, the text part is zeros: with normalised parts
            that leaves Euclidean and cosine rankings to the image part alone.

    Returns:
        `(num_items, embedding_dim)` float32, comparable with the table's rows.
    """
    from .image_processing import encode_images

    parts = metadata.get("parts") or []
    if not parts:
        raise ValueError("The embeddings metadata does not say how the embeddings were made (no `parts`).")
    count = len(images) if images is not None else len(titles) if titles is not None else 0
    embeddings = []
    for part in parts:
        if part == "image":
            encoder = image_encoder if image_encoder is not None else metadata.get("image_encoder")
            if images is None or encoder is None or (isinstance(encoder, str) and not encoder):
                raise ValueError("The table has an image part: give `images` (and metadata with `image_encoder`).")
            embeddings.append(
                encode_images(
                    encoder,
                    list(images),
                    batch_size=batch_size,
                    preprocessing=metadata.get("image_preprocessing"),
                )
            )
        elif part == "text":
            if titles is None:
                logger.warning("No titles given: the text part of these embeddings is zeros.")
                embeddings.append(torch.zeros(count, int(metadata["text_embedding_dim"])))
            else:
                text_embeddings, _ = extract_text_embeddings(
                    metadata["text_encoder"],
                    list(titles),
                    batch_size=batch_size,
                    max_length=int(metadata.get("text_max_length", 128)),
                    progress=False,
                )
                embeddings.append(text_embeddings)
        else:
            raise ValueError(f"Unknown embeddings part {part!r} in the metadata.")
    if metadata.get("normalized"):
        embeddings = [torch.nn.functional.normalize(part, dim=1) for part in embeddings]
    return torch.cat(embeddings, dim=1)


__all__ = [
    "CatalogueImages",
    "ExtractionStats",
    "MISSING_IMAGE_POLICIES",
    "NoReadableImagesError",
    "compute_catalogue_embeddings",
    "default_num_workers",
    "embed_new_items",
    "extract_image_embeddings",
    "extract_text_embeddings",
    "is_local_path",
    "load_catalogue",
    "mean_pool",
    "shard_bounds",
    "shareable_metadata",
    "shareable_name",
]
