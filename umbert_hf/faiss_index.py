"""The choice of search index, and approximate per-category search on FAISS for catalogues of millions of items.

`build_index(..., index="exact" | "faiss" | "auto" | "<FAISS factory string>")` returns an object with the contract of
`retrieval.CategoryIndex`: exact search stays the default and the reference. `FaissCategoryIndex` answers `top_k`
from one FAISS index per category; `rank` and `score` (the metrics' honest ranks) stay exact. faiss is optional
(`pip install 'umbert-hf[faiss]'`) and imported on first use. This module travels with the model's remote code beside
`retrieval.py` (relative imports only).
"""

import hashlib
import json
import os
import re

import torch
from transformers.utils import logging

from .retrieval import DEFAULT_MAX_BLOCK_ELEMENTS, CategoryIndex

logger = logging.get_logger(__name__)

INDEX_KINDS = ("exact", "faiss", "auto")
# `index="faiss"`: a graph index that needs no training, searched wide enough for recall@10 >= 0.95 at 1M items of a
# catalogue-like spectrum (docs/performance.md, "Million-item catalogues").
DEFAULT_FAISS_FACTORY = "HNSW32"
DEFAULT_FAISS_PARAMETERS = "efConstruction=100,efSearch=224"
# `index="auto"` searches a category on FAISS from this many items on, exactly below it (or when faiss is missing).
# Measured in docs/performance.md: from about there, the default HNSW answers 10 times the exact queries/s.
AUTO_FAISS_MIN_ITEMS = 500_000
FAISS_INSTALL = "pip install 'umbert-hf[faiss]'"
_METADATA_FILE = "faiss_index.json"
# The folder of a saved model (or Hub repo) that holds its FAISS index (`save_pretrained` writes it).
SAVED_INDEX_FOLDER = "faiss_index"
_FORMAT_VERSION = 1


def import_faiss():
    """The `faiss` module, or a one-line `ValueError` saying how to install it."""
    try:  # in a `try`: transformers then does not require faiss to load a saved model's code
        import faiss
    except ImportError:
        raise ValueError(f"The FAISS index needs the faiss package: {FAISS_INSTALL}.") from None
    return faiss


def faiss_available() -> bool:
    """Whether faiss can be imported."""
    try:
        import_faiss()
    except ValueError:
        return False
    return True


def _faiss_message(error: BaseException) -> str:
    """FAISS's C++ error without its source location: 'Error in <signature> at <file>:<line>: <what>'."""
    line = next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return re.sub(r"^Error in .*? at \S+:\d+: (Error: '.*?' failed: )?", "", line)


class FaissCategoryIndex(CategoryIndex):
    """`CategoryIndex` whose `top_k` searches one FAISS index per category, built on first use (or by `build`).

    Scores keep the exact convention (minus the Euclidean distance, or the cosine similarity) and rows are catalogue
    rows; a place the index leaves empty (an IVF index probing too few lists) is row -1 with a NaN score, as `pad`
    pads. What stays exact: a query with a NaN or infinite value is answered by the exact search (so it gets what
    exact search gives it), and `rank` and `score` are the exact, honest ones of `CategoryIndex`. Items with equal
    scores come in the order the FAISS index returns them, which is not specified: keep `rank` for metrics.

    Args:
        embeddings, categories, distance, num_categories: as `CategoryIndex`. The FAISS indexes hold float32 copies
            of the embeddings (unit-normalised for cosine), searched on the CPU.
        factory: a FAISS index factory string: "Flat" (exact), "HNSW32", "IVF4096,Flat", "IVF4096,PQ32", ...
            Indexes that need training (IVF, PQ) train on their category's items.
        parameters: FAISS `ParameterSpace` settings of every category's index, set before it is built: the search
            knob ("efSearch=128" for HNSW, "nprobe=32" for IVF) and build settings ("efConstruction=80"), joined by
            commas. None keeps FAISS's defaults (efConstruction 40, efSearch 16, nprobe 1: fast, low recall).
        min_items: categories with fewer items are searched exactly (no FAISS index is built for them).
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        categories: torch.Tensor,
        distance: str = "euclidean",
        num_categories: int | None = None,
        factory: str = DEFAULT_FAISS_FACTORY,
        parameters: str | None = DEFAULT_FAISS_PARAMETERS,
        min_items: int = 0,
    ):
        super().__init__(embeddings, categories, distance, num_categories)
        self.min_items = min_items
        self._faiss = import_faiss()
        if not isinstance(factory, str) or not factory.strip():
            raise ValueError(f"The FAISS index factory must be a non-empty string, got {factory!r}.")
        self.factory = factory
        self._indexes: list = [None] * self.num_categories
        self.parameters = None
        self._new_index()  # a bad factory string fails here, not at the first search
        self.set_parameters(parameters)

    def _new_index(self):
        """An empty FAISS index of the factory, for the distance (inner product of unit vectors for cosine)."""
        faiss = self._faiss
        metric = faiss.METRIC_INNER_PRODUCT if self.distance == "cosine" else faiss.METRIC_L2
        try:
            return faiss.index_factory(self.embeddings.shape[1], self.factory, metric)
        except RuntimeError as error:
            raise ValueError(f"Bad FAISS index factory string {self.factory!r}: {_faiss_message(error)}.") from None

    def _apply_parameters(self, index, parameters: str) -> None:
        try:
            self._faiss.ParameterSpace().set_index_parameters(index, parameters)
        except RuntimeError as error:
            raise ValueError(
                f"Bad FAISS parameters {parameters!r} for a {self.factory!r} index: {_faiss_message(error)}."
            ) from None

    def set_parameters(self, parameters: str | None) -> None:
        """Change the search knob (e.g. "efSearch=256", "nprobe=64") of every category's index, built or not (a
        build setting such as efConstruction changes only the indexes built from now on)."""
        if parameters is not None:
            self._apply_parameters(self._new_index(), parameters)  # checked before anything changes
            for index in self._indexes:
                if index is not None:
                    self._apply_parameters(index, parameters)
        self.parameters = parameters

    def _index_keys(self, category: int):
        """(items, dim) float32 C-contiguous numpy array of one category's keys, as FAISS searches them."""
        keys = self.embeddings[self.rows[category]].detach().to("cpu", torch.float32)
        if self.distance == "cosine":
            keys = torch.nn.functional.normalize(keys, dim=1)
        return keys.contiguous().numpy()

    def uses_faiss(self, category: int) -> bool:
        """Whether one category is searched on FAISS: it has items, at least `min_items`."""
        size = self.rows[category].numel()
        return size > 0 and size >= self.min_items

    def faiss_index(self, category: int):
        """The FAISS index of one category (built, and trained when the factory needs it, on first use)."""
        if self._indexes[category] is None:
            size = self.rows[category].numel()
            if not self.uses_faiss(category):
                raise ValueError(f"Category {category} ({size} items) is searched exactly, without a FAISS index.")
            keys = self._index_keys(category)
            index = self._new_index()
            if self.parameters is not None:
                self._apply_parameters(index, self.parameters)
            try:
                if not index.is_trained:
                    index.train(keys)
                index.add(keys)
            except RuntimeError as error:
                raise ValueError(
                    f"Cannot build a {self.factory!r} FAISS index on category {category} ({size} items): "
                    f"{_faiss_message(error)}."
                ) from None
            self._indexes[category] = index
        return self._indexes[category]

    def build(self) -> "FaissCategoryIndex":
        """Build every category's index now (otherwise each is built at its first search); returns self."""
        for category in range(self.num_categories):
            if self.uses_faiss(category):
                self.faiss_index(category)
        return self

    def _search(
        self, category: int, queries: torch.Tensor, k: int, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scores, catalogue rows)` from the category's FAISS index; non-finite queries searched exactly."""
        if not self.uses_faiss(category):
            return super()._search(category, queries, k, max_block_elements)
        finite = torch.isfinite(queries).all(dim=1)
        if not bool(finite.all()):
            scores = queries.new_empty(queries.shape[0], k, dtype=self.embeddings.dtype)
            rows = torch.empty(queries.shape[0], k, dtype=torch.long, device=self.embeddings.device)
            scores[~finite], rows[~finite] = super()._search(category, queries[~finite], k, max_block_elements)
            if bool(finite.any()):
                scores[finite], rows[finite] = self._search(category, queries[finite], k, max_block_elements)
            return scores, rows
        found = queries.detach().to("cpu", torch.float32)
        if self.distance == "cosine":
            found = torch.nn.functional.normalize(found, dim=1)
        distances, positions = self.faiss_index(category).search(found.contiguous().numpy(), k)
        distances, positions = torch.from_numpy(distances), torch.from_numpy(positions)
        scores = distances if self.distance == "cosine" else -distances.clamp_min(0).sqrt()
        empty = positions < 0
        scores = scores.masked_fill(empty, float("nan")).to(self.embeddings.device, self.embeddings.dtype)
        rows = self.rows[category].cpu()[positions.clamp_min(0)].masked_fill(empty, -1)
        return scores, rows.to(self.embeddings.device)

    # ----- saving and loading -----------------------------------------------------------------------------------

    def _fingerprint(self, category: int) -> str:
        """sha256 of one category's embeddings (float32 bytes): a saved index answers for exactly these items."""
        keys = self.embeddings[self.rows[category]].detach().to("cpu", torch.float32).contiguous()
        return hashlib.sha256(keys.numpy().tobytes()).hexdigest()

    def save(self, directory: str | os.PathLike) -> None:
        """Write every category's index (built first when needed) to `directory`, with what it was built from.

        Loading a saved HNSW index is much faster than building it again (docs/performance.md): e.g. 1M x 128 items.
        The metadata file is removed first and written last, so a folder whose writing was cut short does not load. Save into a
        temporary folder renamed into place (the package's `utils.files.install_folder`, as model folders are
        written) to keep an older index intact until the new one is complete.
        """
        self.build()
        os.makedirs(directory, exist_ok=True)
        metadata_path = os.path.join(directory, _METADATA_FILE)
        if os.path.exists(metadata_path):
            os.remove(metadata_path)  # an older index no longer loads while the new one is being written
        categories = []
        for category, index in enumerate(self._indexes):
            if index is None:
                categories.append(None)
                continue
            name = f"category_{category}.faiss"
            self._faiss.write_index(index, os.path.join(directory, name))
            size = self.rows[category].numel()
            categories.append({"file": name, "size": size, "sha256": self._fingerprint(category)})
        metadata = {
            "format": _FORMAT_VERSION,
            "factory": self.factory,
            "parameters": self.parameters,
            "distance": self.distance,
            "min_items": self.min_items,
            "dim": self.embeddings.shape[1],
            "categories": categories,
        }
        with open(metadata_path, "w", encoding="utf-8") as file:
            json.dump(metadata, file, indent=2)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        embeddings: torch.Tensor,
        categories: torch.Tensor,
        distance: str = "euclidean",
        num_categories: int | None = None,
    ) -> "FaissCategoryIndex":
        """The index `save` wrote to `directory`, over these embeddings and categories.

        Raises `ValueError` with one line when the folder holds no saved index, or one built from other items (other
        embeddings, categories, distance or size), so the caller can build a new one instead.
        """
        path = os.path.join(directory, _METADATA_FILE)
        try:
            with open(path, encoding="utf-8") as file:
                metadata = json.load(file)
        except (OSError, ValueError) as error:
            raise ValueError(f"No saved FAISS index in {os.fspath(directory)!r} ({error}).") from None
        if not isinstance(metadata, dict) or metadata.get("format") != _FORMAT_VERSION:
            raise ValueError(f"{path}: not a saved FAISS index of this version.")
        if metadata.get("distance") != distance:
            raise ValueError(f"{path}: the saved index is for {metadata.get('distance')!r}, not {distance!r}.")
        min_items = metadata.get("min_items")
        if isinstance(min_items, bool) or not isinstance(min_items, int):
            raise ValueError(f"{path}: not a saved FAISS index of this version.")
        index = cls(embeddings, categories, distance, num_categories, metadata.get("factory"), None, min_items)
        saved = metadata.get("categories")
        if metadata.get("dim") != embeddings.shape[1] or not isinstance(saved, list) or len(saved) != len(index.rows):
            raise ValueError(f"{path}: the saved index was built for other embeddings (size or categories differ).")
        for category, entry in enumerate(saved):
            size = index.rows[category].numel()
            if entry is None and not index.uses_faiss(category):
                continue
            if entry is None or entry.get("size") != size or entry.get("sha256") != index._fingerprint(category):
                raise ValueError(f"{path}: category {category} was saved from other items than these.")
            try:
                loaded = index._faiss.read_index(os.path.join(directory, os.path.basename(entry["file"])))
            except RuntimeError as error:
                raise ValueError(
                    f"{path}: cannot read category {category}'s index ({_faiss_message(error)})."
                ) from None
            if loaded.ntotal != size or loaded.d != embeddings.shape[1]:
                raise ValueError(f"{path}: category {category}'s index file holds other items than these.")
            index._indexes[category] = loaded
        index.set_parameters(metadata.get("parameters"))
        return index


def saved_index_folder(name_or_path: str, subfolder: str = "", revision: str | None = None) -> str | None:
    """The local folder of the FAISS index saved with a model (a folder, or a Hub repo: its `faiss_index/` files are
    fetched, or taken from the cache offline), or None when there is none to be had (then the index is built)."""
    local = os.path.join(name_or_path, subfolder, SAVED_INDEX_FOLDER)
    if os.path.isdir(name_or_path):
        return local if os.path.isfile(os.path.join(local, _METADATA_FILE)) else None
    try:
        from huggingface_hub import snapshot_download

        pattern = "/".join(part for part in (subfolder, SAVED_INDEX_FOLDER, "*") if part)
        snapshot = snapshot_download(name_or_path, revision=revision, allow_patterns=[pattern])
    except Exception as error:  # offline, no such repo, no index in it: the index is built instead
        logger.info("No saved FAISS index for %s (%s); it is built instead.", name_or_path, error)
        return None
    found = os.path.join(snapshot, subfolder, SAVED_INDEX_FOLDER)
    return found if os.path.isfile(os.path.join(found, _METADATA_FILE)) else None


def build_index(
    embeddings: torch.Tensor,
    categories: torch.Tensor,
    distance: str = "euclidean",
    num_categories: int | None = None,
    index: str = "exact",
    parameters: str | None = None,
) -> CategoryIndex:
    """The per-category search index every caller asks: exact (the default and the reference) or on FAISS.

    Args:
        embeddings, categories, distance, num_categories: as `CategoryIndex`.
        index: `"exact"`; `"faiss"` (`DEFAULT_FAISS_FACTORY` searched with `DEFAULT_FAISS_PARAMETERS`); a FAISS
            index factory string (e.g. "HNSW32", "IVF4096,Flat"); or `"auto"`: FAISS's default index when a category
            holds at least `AUTO_FAISS_MIN_ITEMS` items and faiss is installed (then only such categories are searched on
            FAISS), exact search otherwise.
        parameters: FAISS settings ("efSearch=256", "nprobe=32", "efConstruction=80,efSearch=128"); for `"faiss"`
            and `"auto"` they default to `DEFAULT_FAISS_PARAMETERS`, for a factory string to FAISS's own defaults.

    Returns:
        A `CategoryIndex`, or a `FaissCategoryIndex` (same `top_k` contract; `rank` stays exact).
    """
    if not isinstance(index, str):
        raise ValueError(f"`index` must be one of {INDEX_KINDS} or a FAISS factory string, got {index!r}.")
    if index == "exact":
        return CategoryIndex(embeddings, categories, distance, num_categories)
    if index == "auto":
        largest = int(torch.bincount(categories.flatten()).max()) if categories.numel() else 0
        if largest < AUTO_FAISS_MIN_ITEMS:
            return CategoryIndex(embeddings, categories, distance, num_categories)
        if not faiss_available():
            logger.warning(
                "A category holds %d items; searched exactly, as faiss is missing (%s).", largest, FAISS_INSTALL
            )
            return CategoryIndex(embeddings, categories, distance, num_categories)
    minimum = AUTO_FAISS_MIN_ITEMS if index == "auto" else 0
    if index in ("faiss", "auto"):
        index, parameters = DEFAULT_FAISS_FACTORY, parameters or DEFAULT_FAISS_PARAMETERS
    return FaissCategoryIndex(embeddings, categories, distance, num_categories, index, parameters, minimum)


__all__ = [
    "AUTO_FAISS_MIN_ITEMS",
    "DEFAULT_FAISS_FACTORY",
    "DEFAULT_FAISS_PARAMETERS",
    "INDEX_KINDS",
    "SAVED_INDEX_FOLDER",
    "FaissCategoryIndex",
    "build_index",
    "faiss_available",
    "import_faiss",
    "saved_index_folder",
]
