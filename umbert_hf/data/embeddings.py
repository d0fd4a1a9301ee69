"""The item embeddings table: one row per catalogue item (`item_id`, `category`, `embedding`), stored as parquet.

The table is what `compute_embeddings.py` writes and what pretraining, fine-tuning, evaluation and augmentation
read; users may bring their own (e.g. CLIP embeddings) as long as it has the three columns. Parquet schema metadata
under the key `umbert_hf` holds a JSON dict describing how the embeddings were made (encoders and preprocessing).
"""

import glob
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from transformers.utils import logging

from ..utils.files import atomic_path
from ..utils.paths import first_line

logger = logging.get_logger(__name__)

METADATA_KEY = b"umbert_hf"
REQUIRED_COLUMNS = ("item_id", "category", "embedding")
# Rows per parquet row group of an embeddings table (about 32 MiB of 512-d float32 embeddings).
ROW_GROUP_ROWS = 16_384


@dataclass(eq=False)
class EmbeddingsTable:
    r"""
    An embeddings table in memory.

    Args:
        item_ids: item ids (strings), unique, in table order.
        categories: slot category of each item.
        embeddings: `(num_items, dim)` float32 tensor, row i for `item_ids[i]`.
        metadata: how the embeddings were made (see `compute_embeddings.py`); `{}` when unknown.
        source: where the table comes from, for error messages (e.g. "the embeddings table emb.parquet").
        excluded_categories: `item_id -> category` of the items of the source left out of this table (a catalogue
            keeps only the slot categories), so that an error can tell a left-out item from an unknown one.
    """

    item_ids: list[str]
    categories: list[str]
    embeddings: torch.FloatTensor
    metadata: dict = field(default_factory=dict)
    source: str = field(default="the embeddings table", repr=False)
    excluded_categories: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.embeddings.dim() != 2:
            raise ValueError(f"`embeddings` must be 2-D (items, dim), got shape {tuple(self.embeddings.shape)}.")
        if not len(self.item_ids) == len(self.categories) == self.embeddings.shape[0]:
            raise ValueError(
                f"Lengths differ: {len(self.item_ids)} item ids, {len(self.categories)} categories, "
                f"{self.embeddings.shape[0]} embeddings."
            )
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def embedding_dim(self) -> int:
        return self.embeddings.shape[1]

    @property
    def index(self) -> dict[str, int]:
        """`item_id -> row`."""
        if self._index is None:
            self._index = {item_id: row for row, item_id in enumerate(self.item_ids)}
        return self._index

    def rows(self, item_ids: Sequence[str]) -> torch.LongTensor:
        """Row of each item id; `KeyError` naming the first unknown ones."""
        index = self.index
        missing = [item_id for item_id in item_ids if item_id not in index]
        if missing:
            raise KeyError(f"{len(missing)} item id(s) not in the embeddings table, e.g. {missing[:5]}.")
        return torch.tensor([index[item_id] for item_id in item_ids], dtype=torch.long)

    def category_rows(self) -> dict[str, torch.LongTensor]:
        """Rows of the items of each category, in table order."""
        rows: dict[str, list[int]] = {}
        for row, category in enumerate(self.categories):
            rows.setdefault(category, []).append(row)
        return {category: torch.tensor(indices, dtype=torch.long) for category, indices in rows.items()}

    def save(self, path: str | os.PathLike) -> str:
        return write_embeddings_table(path, self.item_ids, self.categories, self.embeddings, self.metadata)


def write_embeddings_table(
    path: str | os.PathLike,
    item_ids: Sequence[str],
    categories: Sequence[str],
    embeddings: torch.Tensor | np.ndarray,
    metadata: dict | None = None,
) -> str:
    """Write the table as one parquet file, atomically (a temporary file renamed over `path`).

    `metadata` must be JSON-serialisable; it is stored in the parquet schema metadata under `umbert_hf`.
    Returns the path written.
    """
    path = os.fspath(path)
    embeddings = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    # Validate through the same checks as a table in memory.
    table = EmbeddingsTable(list(item_ids), list(categories), torch.from_numpy(embeddings), dict(metadata or {}))
    _check_values(path, table.item_ids, table.categories, embeddings)

    dim = embeddings.shape[1]
    embedding_column = pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), dim)
    schema_metadata = {METADATA_KEY: json.dumps(table.metadata, sort_keys=True).encode()}
    arrow_table = pa.table(
        {
            "item_id": pa.array(table.item_ids, pa.string()),
            "category": pa.array(table.categories, pa.string()),
            "embedding": embedding_column,
        }
    ).replace_schema_metadata(schema_metadata)

    with atomic_path(path) as temporary:
        # Row groups of a bounded size: the writer encodes one at a time, so its buffers do not grow with the table.
        pq.write_table(arrow_table, temporary, row_group_size=ROW_GROUP_ROWS)
    return path


def read_embeddings_table(path: str | os.PathLike) -> EmbeddingsTable:
    """Read and validate an embeddings table.

    Args:
        path: a parquet file, a folder of parquet files (e.g. a Hub dataset repo, read in sorted file order), or a
            folder written by `datasets.Dataset.save_to_disk`.

    Raises:
        FileNotFoundError: nothing at `path`.
        ValueError: a missing or malformed column, duplicated ids, or non-finite values; the message names the file
            and the column.
    """
    path = os.fspath(path)
    arrow_table, metadata = _read_arrow(path)
    missing = [name for name in REQUIRED_COLUMNS if name not in arrow_table.column_names]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; an embeddings table needs {list(REQUIRED_COLUMNS)} "
            f"(found {arrow_table.column_names})."
        )
    if arrow_table.num_rows == 0:
        raise ValueError(f"{path}: the embeddings table is empty.")
    item_ids = _string_column(path, arrow_table, "item_id")
    categories = _string_column(path, arrow_table, "category")
    embeddings = _embedding_column(path, arrow_table, item_ids)
    del arrow_table
    # Arrow's allocator keeps freed pages for reuse: without this, the decoded table (twice the embeddings) stays
    # resident for the whole run.
    pa.default_memory_pool().release_unused()
    _check_values(path, item_ids, categories, embeddings)
    return EmbeddingsTable(
        item_ids, categories, torch.from_numpy(embeddings), metadata, source=f"the embeddings table {path}"
    )


def read_embeddings_metadata(path: str | os.PathLike) -> dict:
    """The metadata of an embeddings table in a parquet file, read from its footer alone (no rows); empty when there
    is none or the file cannot be read (`read_embeddings_table` then says why)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return {}
    try:
        return _decode_metadata(path, pq.read_schema(path).metadata)
    except (OSError, ValueError, pa.ArrowException):
        return {}


def recorded_image_encoder_folder(metadata: dict) -> str | None:
    """The local folder of the image encoder that made a table (`metadata["image_encoder"]`), when it exists here."""
    encoder = (metadata or {}).get("image_encoder")
    return encoder if isinstance(encoder, str) and os.path.isabs(encoder) and os.path.isdir(encoder) else None


def _read_arrow(path: str) -> tuple[pa.Table, dict]:
    if os.path.isfile(path):
        return _read_parquet_files(path, [path])
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No embeddings table at {path}.")
    if os.path.isfile(os.path.join(path, "state.json")) or os.path.isfile(os.path.join(path, "dataset_dict.json")):
        return _read_saved_dataset(path)
    files = sorted(glob.glob(os.path.join(path, "**", "*.parquet"), recursive=True))
    if not files:
        raise FileNotFoundError(f"{path} is a folder without parquet files or a saved `datasets` dataset.")
    return _read_parquet_files(path, files)


def _read_parquet_files(path: str, files: list[str]) -> tuple[pa.Table, dict]:
    tables = []
    for file in files:
        try:
            tables.append(pq.read_table(file, memory_map=True))  # no second copy of the file in memory
        except (pa.ArrowException, OSError) as error:
            raise ValueError(f"{file}: not a readable parquet file ({first_line(error)}).") from error
    metadata = _decode_metadata(file=files[0], schema_metadata=tables[0].schema.metadata)
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    except pa.ArrowException as error:
        raise ValueError(f"{path}: the parquet files have incompatible schemas ({first_line(error)}).") from error
    return table, metadata


def _read_saved_dataset(path: str) -> tuple[pa.Table, dict]:
    import datasets

    try:
        dataset = datasets.load_from_disk(path)
    except (OSError, ValueError) as error:  # a damaged folder: `datasets` and pyarrow errors may span lines
        raise ValueError(f"{path}: not a readable saved `datasets` dataset ({first_line(error)}).") from error
    if isinstance(dataset, datasets.DatasetDict):
        if len(dataset) != 1 and "train" not in dataset:
            raise ValueError(f"{path}: a dataset with splits {list(dataset)}; expected one split or 'train'.")
        dataset = dataset["train"] if "train" in dataset else next(iter(dataset.values()))
    table = dataset.flatten_indices().data.table if dataset._indices is not None else dataset.data.table
    metadata = _decode_metadata(path, table.schema.metadata)
    if not metadata and dataset.info.description:
        try:
            metadata = json.loads(dataset.info.description)
        except json.JSONDecodeError:
            metadata = {}
    return table, metadata if isinstance(metadata, dict) else {}


def _decode_metadata(file: str, schema_metadata: dict | None) -> dict:
    raw = (schema_metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{file}: the `umbert_hf` parquet metadata is not valid JSON ({first_line(error)})."
        ) from error
    return metadata if isinstance(metadata, dict) else {}


def _string_column(path: str, table: pa.Table, name: str) -> list[str]:
    column = table.column(name)
    if column.null_count:
        raise ValueError(f"{path}: column '{name}' has {column.null_count} null value(s).")
    if name == "item_id" and pa.types.is_integer(column.type):
        logger.warning(f"{path}: column '{name}' holds integers; converting them to strings (ids are strings).")
        return [str(value) for value in column.to_pylist()]
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ValueError(f"{path}: column '{name}' must hold strings, got type {column.type}.")
    return column.to_pylist()


def _embedding_column(path: str, table: pa.Table, item_ids: list[str]) -> np.ndarray:
    """The `embedding` column as one (items, dim) float32 array, checked and copied chunk by chunk.

    Each chunk (a parquet row group) is copied straight into its rows of the result, so reading a table costs the
    arrow table plus one array: combining the chunks first and converting afterwards held four copies at once
    (1.4 GiB for the 340 MB of a 250,000-item table).
    """
    column = table.column("embedding")
    list_type = column.type
    if not (pa.types.is_list(list_type) or pa.types.is_large_list(list_type) or pa.types.is_fixed_size_list(list_type)):
        raise ValueError(f"{path}: column 'embedding' must hold lists of floats, got type {list_type}.")
    if not (pa.types.is_floating(list_type.value_type) or pa.types.is_integer(list_type.value_type)):
        raise ValueError(f"{path}: column 'embedding' must hold lists of floats, got type {list_type}.")
    dim = list_type.list_size if pa.types.is_fixed_size_list(list_type) else None
    embeddings = None
    offset = 0
    for chunk in column.chunks:
        if chunk.null_count:
            row = offset + chunk.is_null().to_pylist().index(True)
            raise ValueError(f"{path}: column 'embedding' is null for item {item_ids[row]!r} (row {row}).")
        if not pa.types.is_fixed_size_list(list_type) and len(chunk):
            lengths = chunk.value_lengths().to_numpy(zero_copy_only=False)
            dim = int(lengths[0]) if dim is None else dim
            uneven = np.flatnonzero(lengths != dim)
            if len(uneven):
                row = offset + int(uneven[0])
                raise ValueError(
                    f"{path}: column 'embedding' must have a fixed length; item {item_ids[row]!r} (row {row}) has "
                    f"{int(lengths[uneven[0]])} values, the first row {dim}."
                )
        values = chunk.flatten()
        if values.null_count:
            raise ValueError(f"{path}: column 'embedding' contains null values inside the lists.")
        if dim == 0:
            raise ValueError(f"{path}: column 'embedding' holds empty lists.")
        if embeddings is None and dim is not None:
            embeddings = np.empty((len(item_ids), dim), dtype=np.float32)  # writable, as torch tensors must be
        if len(chunk):
            embeddings[offset : offset + len(chunk)] = values.to_numpy(zero_copy_only=False).reshape(len(chunk), dim)
        offset += len(chunk)
    if embeddings is None:
        return np.empty((len(item_ids), dim or 0), dtype=np.float32)
    return embeddings


def _check_values(path: str, item_ids: list[str], categories: list[str], embeddings: np.ndarray) -> None:
    if len(item_ids) == 0:
        raise ValueError(f"{path}: the embeddings table is empty.")
    if embeddings.ndim != 2 or embeddings.shape[1] == 0:
        raise ValueError(f"{path}: column 'embedding' must be (items, dim) with dim > 0, got {embeddings.shape}.")
    if not all(isinstance(item_id, str) and item_id for item_id in item_ids):
        raise ValueError(f"{path}: column 'item_id' must hold non-empty strings.")
    if not all(isinstance(category, str) and category for category in categories):
        raise ValueError(f"{path}: column 'category' must hold non-empty strings.")
    if len(set(item_ids)) != len(item_ids):
        seen, duplicates = set(), []
        for item_id in item_ids:
            if item_id in seen:
                duplicates.append(item_id)
            seen.add(item_id)
        raise ValueError(f"{path}: column 'item_id' has duplicates, e.g. {duplicates[:5]}.")
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise ValueError(f"{path}: column 'embedding' has NaN or infinite values, e.g. item {item_ids[row]!r}.")


__all__ = [
    "EmbeddingsTable",
    "METADATA_KEY",
    "read_embeddings_metadata",
    "read_embeddings_table",
    "recorded_image_encoder_folder",
    "write_embeddings_table",
]
