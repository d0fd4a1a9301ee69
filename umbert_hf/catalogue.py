"""The retrieval catalogue of umBERT and WumBERT, and outfit completion: `OutfitCatalogueMixin`.

The catalogue (item ids, slot categories, embeddings and standardisation statistics) lives in the model's buffers,
so `save_pretrained` / `from_pretrained` keep it. This module travels with the model's remote code (relative imports
only); embedding a user's photo needs the package (`umbert_hf.data.model_image_encoder`), imported on first use.
"""

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers.utils import logging

from .faiss_index import SAVED_INDEX_FOLDER, FaissCategoryIndex, build_index, saved_index_folder
from .retrieval import (
    CategoryIndex,
    check_diversity,
    distinct_rows,
    diversity_pool_size,
    maximal_marginal_relevance,
    pairwise_scores,
)

logger = logging.get_logger(__name__)


def _photo(value: Any) -> Any | None:
    """The photo a context value gives, or None: a PIL image, a `pathlib.Path` (any `os.PathLike`), or
    `{"image": <PIL image or path>}`. A bare string is never a photo: it is an item id, and ids may come from users,
    so a string naming a file must not make the model read that file."""
    if isinstance(value, Mapping) and set(value) == {"image"}:
        value = value["image"]
        return value if isinstance(value, (str, os.PathLike)) or type(value).__module__.startswith("PIL.") else None
    return value if isinstance(value, os.PathLike) or type(value).__module__.startswith("PIL.") else None


def _first_line(error: BaseException) -> str:
    """The first line of an error's message (this file travels with remote code, without the package's helpers)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _check_layer_count(folder: str, name: str) -> None:
    """A local folder's config declares as many layers as its weights hold, checked before the model is built: an
    edited `num_hidden_layers: 20000` would otherwise allocate gigabytes before the weights fail to load."""
    config_file, weights = os.path.join(folder, "config.json"), os.path.join(folder, "model.safetensors")
    if not (os.path.isfile(config_file) and os.path.isfile(weights)):
        return  # a Hub id, or sharded weights: the load itself checks
    try:
        with open(config_file, encoding="utf-8") as file:
            declared = json.load(file).get("num_hidden_layers")
        with safe_open(weights, framework="pt") as opened:
            keys = list(opened.keys())
    except (OSError, ValueError, SafetensorError):
        return  # unreadable: the load names the problem
    stored = {match.group(1) for key in keys if (match := re.match(r"encoder\.layers\.layers\.(\d+)\.", key))}
    if stored and declared != len(stored):
        raise ValueError(
            f"{name}: config.json declares num_hidden_layers={declared!r} but the weights hold {len(stored)} layers; "
            "the folder is damaged or was edited."
        )


def _image_encoders():
    """`umbert_hf.data.model_image_encoder`, or `ValueError` when the package is not installed (remote code)."""
    try:  # in a `try`: transformers then does not require umbert_hf to load a saved folder's code
        from umbert_hf.data import model_image_encoder
    except ImportError as error:
        raise ValueError("Embedding photos needs the umbert-hf package: pip install umbert-hf.") from error
    return model_image_encoder


class OutfitCatalogueMixin:
    """Catalogue storage, retrieval and `complete` for a model with `config.categories`, an `encoder` and a forward
    taking `inputs_embeds` and `masked_positions`. Subclasses say where the catalogue embeddings live
    (`get_catalogue_embeddings`, `_store_catalogue_embeddings`): a buffer (umBERT) or the item table (WumBERT)."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing a model that cannot be loaded exactly (a damaged or edited
        folder): missing, unexpected or mis-shaped weights, and non-finite weights or catalogue, raise one
        `ValueError` instead of answering with random weights or NaN scores (`check_loaded_model`)."""
        wants_info = kwargs.pop("output_loading_info", False)
        name = str(pretrained_model_name_or_path)
        _check_layer_count(os.path.join(name, kwargs.get("subfolder") or ""), name)
        try:
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs
            )
        except RuntimeError as error:  # transformers' size-mismatch error points at a report on stderr
            raise ValueError(f"{name}: the weights do not fit the config ({_first_line(error)})") from None
        for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
            if info.get(kind):
                keys = sorted(str(key) for key in info[kind])
                raise ValueError(
                    f"{name}: the weights file does not match the config ({kind.replace('_', ' ')}: {keys[:3]}); "
                    "the folder is damaged or was edited."
                )
        model.check_loaded(name)
        # Where a FAISS index saved with the model would be: loaded (not rebuilt) at the first search that needs it.
        model._saved_index_source = (name, kwargs.get("subfolder") or "", kwargs.get("revision"))
        return (model, info) if wants_info else model

    def check_loaded(self, name: str) -> None:
        """`ValueError` naming what is wrong with a loaded model: a non-finite weight or catalogue embedding, a spread
        that is not positive, a slot index out of range, or item ids that are not UTF-8."""
        for tensor_name, tensor in [*self.named_parameters(), *self.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise ValueError(f"{name}: {tensor_name} holds NaN or infinite values; the model is damaged.")
        if not bool((self.embedding_scale > 0).all()):
            raise ValueError(
                f"{name}: embedding_scale is {self.embedding_scale.tolist()}, not positive; the model is damaged."
            )
        categories = self.catalogue_categories
        if categories.numel() and not bool(((categories >= 0) & (categories < self.config.num_categories)).all()):
            raise ValueError(f"{name}: catalogue_categories holds a slot index out of range; the model is damaged.")
        try:
            self._catalogue_cache = None
            if self.catalogue_item_ids.shape[0]:
                self._catalogue()
        except UnicodeDecodeError as error:
            raise ValueError(
                f"{name}: the catalogue's item ids are not UTF-8 ({error.reason}); the model is damaged."
            ) from None

    def _register_catalogue_buffers(self) -> None:
        """Buffers saved in the safetensors file: item ids as padded UTF-8 bytes, category index, embeddings."""
        size, id_length = self.config.catalogue_size, self.config.catalogue_id_length
        self.register_buffer("catalogue_item_ids", torch.zeros(size, id_length, dtype=torch.uint8))
        self.register_buffer("catalogue_categories", torch.zeros(size, dtype=torch.long))
        # Standardisation of embeddings: (x - embedding_mean) / embedding_scale, set from the catalogue.
        self.register_buffer("embedding_mean", torch.zeros(self.config.embedding_size))
        self.register_buffer("embedding_scale", torch.ones(1))
        self._catalogue_cache: dict[str, Any] | None = None
        self._catalogue_cache_key: tuple | None = None

    def get_catalogue_embeddings(self) -> torch.Tensor:
        """(catalogue_size, hidden) embeddings of the catalogue items, used for context lookup and retrieval."""
        raise NotImplementedError

    def _store_catalogue_embeddings(self, embeddings: torch.Tensor) -> None:
        raise NotImplementedError

    def set_catalogue(self, item_ids: Sequence[str], embeddings: torch.Tensor, categories: Sequence[str]) -> None:
        """Store the retrieval catalogue: item ids (str), their embeddings (N, hidden) and slot names.

        Saved by `save_pretrained` and restored by `from_pretrained`, so a loaded model completes outfits with real
        item ids. Raises `ValueError` for mismatched lengths, wrong embedding size, NaN or infinite embeddings (named
        by item id: one such row would poison the standardisation statistics and every ranking), duplicate ids,
        unknown categories, or a slot category with no items.
        """
        item_ids = list(item_ids)
        categories = list(categories)
        # A copy: the caller keeps its tensor, and one made under `torch.inference_mode` becomes a normal tensor.
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32).clone()
        if not all(isinstance(item_id, str) for item_id in item_ids):
            bad = next(item_id for item_id in item_ids if not isinstance(item_id, str))
            raise ValueError(f"Catalogue item ids must be strings, got {bad!r} ({type(bad).__name__}).")
        # Ids are stored as NUL-padded bytes: an id with a NUL would read back as another one ("a\0" as "a").
        bad = next((item_id for item_id in item_ids if "\0" in item_id), None)
        if bad is not None:
            raise ValueError(f"Catalogue item ids must hold no NUL character, got {bad!r}.")
        if embeddings.dim() != 2 or embeddings.shape[1] != self.config.embedding_size:
            raise ValueError(
                f"Catalogue embeddings must be (num_items, embedding_size={self.config.embedding_size}), "
                f"got shape {tuple(embeddings.shape)}."
            )
        if not len(item_ids) == len(categories) == embeddings.shape[0]:
            raise ValueError(
                f"Catalogue lengths differ: {len(item_ids)} item ids, {len(categories)} categories, "
                f"{embeddings.shape[0]} embeddings."
            )
        finite = torch.isfinite(embeddings).all(dim=1)
        if not bool(finite.all()):
            bad_rows = torch.nonzero(~finite).squeeze(1).tolist()
            raise ValueError(
                f"Catalogue embedding of item {item_ids[bad_rows[0]]!r} contains NaN or infinite values "
                f"({len(bad_rows)} such item(s)); recompute or drop them."
            )
        if len(set(item_ids)) != len(item_ids):
            seen: set[str] = set()
            duplicate = next(item_id for item_id in item_ids if item_id in seen or seen.add(item_id))
            raise ValueError(f"Catalogue item ids must be unique, got {duplicate!r} more than once.")
        slot_index = {name: index for index, name in enumerate(self.config.categories)}
        unknown = sorted(set(categories) - set(slot_index))
        if unknown:
            raise ValueError(f"Unknown catalogue categories {unknown}; the model's slots are {self.config.categories}.")
        empty = [name for name in self.config.categories if name not in set(categories)]
        if empty:
            raise ValueError(f"The catalogue has no items of category {empty[0]!r}; every slot needs candidates.")
        mean = embeddings.mean(dim=0)
        scale = (embeddings - mean).pow(2).mean().sqrt().clamp_min(1e-8).view(1)
        # Finite but huge values (1e30) overflow the squared spread: every score would be NaN and the loss 0.
        if not bool(torch.isfinite(mean).all() and torch.isfinite(scale).all()):
            largest = embeddings.abs().amax(dim=1).argsort(descending=True)[:3].tolist()
            raise ValueError(
                f"Catalogue embeddings too large to standardise (their spread overflows): e.g. items "
                f"{[item_ids[row] for row in largest]} reach {float(embeddings.abs().max()):.3g}; rescale the table."
            )

        encoded = [item_id.encode("utf-8") for item_id in item_ids]
        id_length = max(1, max(len(raw) for raw in encoded))
        id_bytes = torch.zeros(len(encoded), id_length, dtype=torch.uint8)
        flat = torch.frombuffer(bytearray(b"".join(raw.ljust(id_length, b"\0") for raw in encoded)), dtype=torch.uint8)
        id_bytes.copy_(flat.view(len(encoded), id_length))
        device = self.catalogue_categories.device
        self.catalogue_item_ids = id_bytes.to(device)
        self.catalogue_categories = torch.tensor([slot_index[name] for name in categories], device=device)
        self._store_catalogue_embeddings(embeddings.to(device))
        if self.config.standardize_embeddings:
            self.embedding_mean = mean.to(device)
            self.embedding_scale = scale.to(device)
        self.config.catalogue_size = len(item_ids)
        self.config.catalogue_id_length = id_length
        self._catalogue_cache = None

    def _catalogue(self) -> dict[str, Any]:
        """Id -> row lookup, decoded once and rebuilt whenever the buffers change."""
        key = (
            self.catalogue_item_ids.data_ptr(),
            self.catalogue_item_ids._version,
            self.catalogue_categories.data_ptr(),
            self.catalogue_categories._version,
        )
        if self._catalogue_cache is None or self._catalogue_cache_key != key:
            if self.catalogue_item_ids.shape[0] == 0:
                raise ValueError("The model has no catalogue: call `set_catalogue(item_ids, embeddings, categories)`.")
            raw = self.catalogue_item_ids.cpu().numpy().tobytes()
            width = self.catalogue_item_ids.shape[1]
            item_ids = [raw[i : i + width].rstrip(b"\0").decode("utf-8") for i in range(0, len(raw), width)]
            self._catalogue_cache = {
                "item_ids": item_ids,
                "row_of": {item_id: row for row, item_id in enumerate(item_ids)},
            }
            self._catalogue_cache_key = key
        return self._catalogue_cache

    @property
    def catalogue_item_id_list(self) -> list[str]:
        """Catalogue item ids, in catalogue row order."""
        return self._catalogue()["item_ids"]

    def catalogue_rows(self, item_ids: Sequence[str]) -> torch.Tensor:
        """Catalogue row of each item id; `ValueError` naming the first unknown id."""
        row_of = self._catalogue()["row_of"]
        try:
            return torch.tensor([row_of[item_id] for item_id in item_ids], dtype=torch.long)
        except KeyError as error:
            raise ValueError(f"Unknown item id {error.args[0]!r}: it is not in the model's catalogue.") from None

    def catalogue_rows_of_category(self, category: str) -> torch.Tensor:
        """Catalogue rows of one slot category."""
        if category not in self.config.categories:
            raise ValueError(f"Unknown slot {category!r}; the model's slots are {self.config.categories}.")
        return self.catalogue_index().rows[self.config.categories.index(category)]

    def distinct_catalogue_rows(self) -> torch.Tensor:
        """`distinct_rows` of the catalogue embeddings, recomputed only when they change (every step for WumBERT)."""
        cache = self._catalogue()
        embeddings = self.get_catalogue_embeddings()
        key = (embeddings.data_ptr(), embeddings._version, self._catalogue_cache_key)
        if cache.get("distinct_key") != key:
            cache["distinct"], cache["distinct_key"] = distinct_rows(embeddings), key
        return cache["distinct"]

    def catalogue_index(self) -> CategoryIndex:
        """The per-slot search index over the catalogue (`config.search_index`: exact, or FAISS), rebuilt only when
        the embeddings, the catalogue or the index settings change. A FAISS index saved with the model is loaded
        instead of built when it was built from these very items (`FaissCategoryIndex.load` checks)."""
        cache = self._catalogue()
        embeddings = self.get_catalogue_embeddings()
        settings = (self.config.distance, self.config.search_index, self.config.search_index_parameters)
        key = (embeddings.data_ptr(), embeddings._version, *settings, self._catalogue_cache_key)
        if cache.get("index_key") != key:
            index = build_index(
                embeddings,
                self.catalogue_categories,
                self.config.distance,
                num_categories=self.config.num_categories,
                index=self.config.search_index,
                parameters=self.config.search_index_parameters,
            )
            if isinstance(index, FaissCategoryIndex):
                index = self._saved_faiss_index(index)
            cache["index"], cache["index_key"] = index, key
        return cache["index"]

    def _saved_faiss_index(self, fresh: FaissCategoryIndex) -> FaissCategoryIndex:
        """The index saved with the model when it answers for these items with `fresh`'s settings, else `fresh`."""
        source = getattr(self, "_saved_index_source", None)
        folder = None if source is None else saved_index_folder(*source)
        if folder is None:
            return fresh
        try:
            saved = FaissCategoryIndex.load(
                folder, fresh.embeddings, fresh.categories, fresh.distance, num_categories=fresh.num_categories
            )
        except ValueError as error:
            logger.info("The saved FAISS index is not used; building a new one: %s", error)
            return fresh
        if (saved.factory, saved.min_items) != (fresh.factory, fresh.min_items):
            return fresh
        saved.set_parameters(fresh.parameters)
        return saved

    def set_search_index(self, index: str = "exact", parameters: str | None = None) -> None:
        """Search the catalogue with `index` from now on: `"exact"` (the default and the reference), `"faiss"`,
        `"auto"` or a FAISS factory string, with FAISS `parameters` (e.g. `"efSearch=256"`); see
        `faiss_index.build_index`. Recorded in the config, so `save_pretrained` saves it, with the FAISS index
        itself (loading it is much faster than building it again). A bad setting raises `ValueError` and changes
        nothing."""
        previous = (self.config.search_index, self.config.search_index_parameters)
        self.config.search_index, self.config.search_index_parameters = index, parameters
        try:
            self.config._check_values()
            if self.catalogue_item_ids.shape[0]:
                self.catalogue_index()  # a bad factory string or parameter fails here, not at the first search
        except ValueError:
            self.config.search_index, self.config.search_index_parameters = previous
            raise

    def save_search_index(self, save_directory: str | os.PathLike) -> None:
        """Write the FAISS index of the catalogue into `save_directory/faiss_index/` when the model searches on FAISS
        (built first if needed); nothing for exact search."""
        if self.config.search_index == "exact" or not self.catalogue_item_ids.shape[0]:
            return
        index = self.catalogue_index()
        if isinstance(index, FaissCategoryIndex):
            index.save(os.path.join(save_directory, SAVED_INDEX_FOLDER))

    def predict_masked(self, inputs_embeds: torch.Tensor, masked_positions: torch.Tensor) -> torch.Tensor:
        """(batch, hidden) prediction of each outfit's masked slot, in eval mode without gradients."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self(inputs_embeds=inputs_embeds, masked_positions=masked_positions).masked_predictions
        finally:
            self.train(was_training)

    def retrieve(
        self, predictions: torch.Tensor, categories: torch.Tensor, k: int, pad: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k catalogue rows of each prediction among items of its slot category (`categories` are slot indices).

        Returns `(scores, rows)` of shape (batch, min(k, smallest category searched)); one batched search per slot.
        With `pad`, each prediction gets min(k, its category's size) rows, whatever the rest of the batch, padded
        with row -1 and a NaN score (see `CategoryIndex.top_k`).
        """
        return self.catalogue_index().top_k(predictions, categories, k, pad=pad)

    def suggest(
        self, predictions: torch.Tensor, categories: torch.Tensor, k: int, diversity: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scores, rows)`, (batch, k): the suggestions for each prediction, as `complete` and the pipeline give them.

        With `diversity` 0 these are `retrieve(..., pad=True)`. Above 0, the `diversity_pool_size(k)` most relevant
        items are re-ranked by maximal marginal relevance over their embeddings (`maximal_marginal_relevance`), so
        near-copies of an item already suggested move down; each score stays the item's own relevance.
        """
        diversity = check_diversity(diversity)
        if diversity == 0:
            return self.retrieve(predictions, categories, k, pad=True)
        scores, rows = self.retrieve(predictions, categories, diversity_pool_size(k), pad=True)
        embeddings = self.get_catalogue_embeddings().detach()
        picked_scores, picked_rows = [], []
        for start in range(0, len(rows), 256):  # blocks bound the (batch, pool, pool) similarities
            block_scores, block_rows = scores[start : start + 256], rows[start : start + 256]
            picks = maximal_marginal_relevance(
                block_scores,
                embeddings[block_rows.clamp_min(0)],
                block_rows >= 0,
                k,
                diversity,
                self.config.distance,
            )
            found = picks >= 0
            picked_rows.append(torch.where(found, block_rows.gather(1, picks.clamp_min(0)), -1))
            picked_scores.append(torch.where(found, block_scores.gather(1, picks.clamp_min(0)), float("nan")))
        return torch.cat(picked_scores), torch.cat(picked_rows)

    def _outfit_inputs(self, outfits: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate outfits and build (inputs_embeds, masked_positions), one outfit at a time with `outfit_input`."""
        inputs = self.get_catalogue_embeddings().new_zeros(
            len(outfits), len(self.config.categories), self.config.embedding_size
        )
        blanks = []
        for number, outfit in enumerate(outfits):
            inputs[number], blank = self.outfit_input(outfit, number)
            blanks.append(blank)
        return inputs, torch.tensor(blanks, dtype=torch.long, device=inputs.device)

    def outfit_input(self, outfit: Mapping[str, Any], number: int = 0) -> tuple[torch.Tensor, int]:
        """(slots, hidden) context embeddings of one outfit (zeros at the blank) and the blank's slot index.

        The one validation behind `complete` and the `outfit-completion` pipeline: `ValueError` naming outfit `number`
        for an unknown or missing slot, not exactly one blank, or a bad context value (see `_context_embedding`).
        """
        slots = self.config.categories
        unknown = [slot for slot in outfit if slot not in slots]
        if unknown:
            raise ValueError(f"Outfit {number}: unknown slot {unknown[0]!r}; the model's slots are {slots}.")
        missing = [slot for slot in slots if slot not in outfit]
        if missing:
            raise ValueError(f"Outfit {number}: slot {missing[0]!r} is missing; give an item id or None.")
        blank_slots = [slot for slot in slots if outfit[slot] is None]
        if len(blank_slots) != 1:
            raise ValueError(
                f"Outfit {number}: exactly one slot must be None (the blank), got {len(blank_slots)}: {blank_slots}."
            )
        inputs = self.get_catalogue_embeddings().new_zeros(len(slots), self.config.embedding_size)
        for position, slot in enumerate(slots):
            if outfit[slot] is not None:
                inputs[position] = self._context_embedding(outfit[slot], slot, number)
        return inputs, slots.index(blank_slots[0])

    def _context_embedding(self, value: Any, slot: str, number: int) -> torch.Tensor:
        """Embedding of one context item: a catalogue item id, an embedding tensor, or an image (PIL image or path).

        An item id must belong to the slot's category and an embedding must be finite: a shoe in the `tops` slot or a
        NaN would silently give meaningless suggestions, so both raise `ValueError` naming the outfit and slot.
        """
        row_of = self._catalogue()["row_of"]
        if isinstance(value, str) and value in row_of:
            row = row_of[value]
            category = self.config.categories[int(self.catalogue_categories[row])]
            if category != slot:
                raise ValueError(
                    f"Outfit {number}, slot {slot!r}: item {value!r} is of category {category!r}, not {slot!r}; "
                    f"give it in the {category!r} slot."
                )
            return self.get_catalogue_embeddings()[row]
        if isinstance(value, torch.Tensor):
            if value.shape != (self.config.embedding_size,):
                raise ValueError(
                    f"Outfit {number}, slot {slot!r}: embedding must have shape ({self.config.embedding_size},), "
                    f"got {tuple(value.shape)}."
                )
            return self._finite_context(value.to(self.get_catalogue_embeddings()), slot, number, "embedding")
        photo = _photo(value)
        if photo is not None:
            embedding = self.embed_images([photo], categories=[slot])[0].to(self.get_catalogue_embeddings())
            return self._finite_context(embedding, slot, number, "image embedding")
        if isinstance(value, str):
            raise ValueError(
                f"Outfit {number}, slot {slot!r}: unknown item id {value!r} (not in the catalogue; a photo is given "
                'as a PIL image, a pathlib.Path or {"image": path}).'
            )
        raise ValueError(
            f"Outfit {number}, slot {slot!r}: expected an item id (str), a photo (PIL image, pathlib.Path or "
            f'{{"image": path}}), an embedding tensor or None, got {type(value).__name__}.'
        )

    @staticmethod
    def _finite_context(embedding: torch.Tensor, slot: str, number: int, what: str) -> torch.Tensor:
        """`embedding`, or `ValueError` naming the outfit and slot when it holds NaN or infinite values."""
        if not bool(torch.isfinite(embedding).all()):
            raise ValueError(f"Outfit {number}, slot {slot!r}: the {what} contains NaN or infinite values.")
        return embedding

    def set_image_embedder(self, embedder: Callable[[list[Any]], torch.Tensor] | None) -> None:
        """Use `embedder(images) -> (n, hidden)` for image contexts instead of the encoder recorded in the config."""
        self._image_embedder = embedder

    def embed_images(self, images: list[Any], categories: Sequence[str] | None = None) -> torch.Tensor:
        """Embed photos like the catalogue was embedded: with the image encoder and preprocessing in the config.

        The encoder (see `load_image_encoder`) is loaded once, on first use. When the catalogue's embeddings also have
        a title part (photos + titles, the default recipe), a photo has no title: its text part is the mean text part
        of its slot category's catalogue items (`categories`, one per photo), as missing photos are imputed at
        extraction.
        """
        if getattr(self, "_image_embedder", None) is None:
            self._image_embedder = _image_encoders().recorded_image_embedder(self)
        embeddings = self._image_embedder(list(images))
        image_dim, embedding_size = embeddings.shape[-1], self.config.embedding_size
        parts = (self.config.embedding_metadata or {}).get("parts")
        if image_dim < embedding_size and parts == ["image", "text"] and categories is not None:
            embeddings = torch.cat([embeddings, self._mean_text_parts(list(categories), image_dim)], dim=-1)
        elif image_dim < embedding_size and parts == ["image", "text"]:
            raise ValueError("This model's embeddings have a title part: give the slot category of each photo.")
        if embeddings.shape[-1] != embedding_size:
            raise ValueError(f"The image encoder gives {image_dim}-d embeddings, the model expects {embedding_size}.")
        return embeddings

    def _mean_text_parts(self, categories: list[str], image_dim: int) -> torch.Tensor:
        """(len(categories), embedding_size - image_dim): the mean title part of each category's catalogue items."""
        embeddings = self.get_catalogue_embeddings().detach()
        means = {
            category: embeddings[self.catalogue_rows_of_category(category), image_dim:].float().mean(dim=0).cpu()
            for category in set(categories)
        }
        return torch.stack([means[category] for category in categories])

    def set_image_encoder_source(self, name_or_path: str | os.PathLike | None, trust_remote_code: bool = False) -> None:
        """Where the image encoder lives until `save_image_encoder` saves it with the model (not saved in the config).

        A new model records `config.image_encoder = "image_encoder"`, the sub-folder of the model's own folder; until
        it is saved there, photos are embedded with the encoder found here (e.g. the folder it was trained in).
        `trust_remote_code` lets an encoder that ships its own modeling code load (e.g. Marqo/marqo-fashionSigLIP);
        it is never read from the config, which may come from anyone's Hub repo.
        """
        self._image_encoder_source = None if name_or_path is None else os.fspath(name_or_path)
        self._image_encoder_trust_remote_code = trust_remote_code

    def load_image_encoder(self):
        """The image encoder that embedded the catalogue (`umbert_hf.data.model_image_encoder.load_model_image_encoder`):
        a `FashionResNetModel`, `FashionEfficientNetModel`, `SsimAutoEncoderModel`, or any `transformers` image model
        with its processor. Raises `ValueError` with one line when it cannot be loaded."""
        return _image_encoders().load_model_image_encoder(self)

    def save_image_encoder(self, save_directory: str | os.PathLike) -> str | None:
        """Save the image encoder in `save_directory/image_encoder/`, so the model embeds photos wherever its folder
        goes (`umbert_hf.data.model_image_encoder.save_model_image_encoder`); returns the folder written, or None."""
        return _image_encoders().save_model_image_encoder(self, save_directory)

    def complete(
        self, outfits: Sequence[Mapping[str, Any]], top_k: int = 10, diversity: float = 0.0
    ) -> list[list[dict[str, Any]]]:
        """Suggest items for the blank slot of each outfit.

        Args:
            outfits: dicts slot -> item id, embedding tensor or photo (PIL image, `pathlib.Path` or `{"image": path}`;
                a bare string is always an item id), with exactly one slot
                set to None (the blank).
            top_k: number of suggestions per outfit.
            diversity: in [0, 1]; above 0 the suggestions are re-ranked by maximal marginal relevance, so that
                near-copies of an item already suggested move down (`suggest`). 0 (the default) ranks by relevance.

        Returns:
            Per outfit, a list of `{"item_id": str, "score": float}` for the `top_k` catalogue items of the blank's
            category, best first (score: minus the distance, or cosine similarity, to the prediction).

        Raises:
            ValueError: naming the outfit number and slot, for an unknown slot or item id, not exactly one blank, an
                item id of another category than its slot (e.g. a shoe given as `tops`: the model was trained on
                one item per category, so it is refused rather than silently scored), or an embedding of the wrong
                shape or with NaN or infinite values; or for a `diversity` outside [0, 1].
        """
        if isinstance(outfits, Mapping):
            outfits = [outfits]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be at least 1, got {top_k!r} (a whole number).")
        check_diversity(diversity)
        if len(outfits) == 0:
            return []
        inputs_embeds, blanks = self._outfit_inputs(outfits)
        predictions = self.predict_masked(inputs_embeds, blanks)
        scores, rows = self.suggest(predictions, blanks, top_k, diversity)
        item_ids = self.catalogue_item_id_list
        return [
            [{"item_id": item_ids[row], "score": score} for row, score in zip(row_list, score_list) if row >= 0]
            for row_list, score_list in zip(rows.tolist(), scores.tolist())
        ]

    def score_outfit(self, outfits: Sequence[Mapping[str, Any]], top_k: int = 5) -> list[dict[str, Any]]:
        """How well the items of each complete outfit go together, and which one clashes most.

        Each slot is masked in turn and predicted from the others (one batched forward for every slot of every
        outfit); the outfit's own item is then ranked among its category's catalogue items (plus itself when it is a
        photo or an embedding), ties at their mean rank. A slot's `percentile` is 100 when its item ranks first, 0
        when last, and about 50 for a random item; the outfit's `score` is the mean over its slots (0 to 100, on the
        scale of `compatibility_rank_auc` x 100).

        Args:
            outfits: dicts slot -> item id, embedding tensor or photo, as `complete` takes, with no blank.
            top_k: replacements suggested for the weakest slot (its own item left out).

        Returns:
            Per outfit: `{"score", "slots": {slot: {"percentile", "rank", "candidates"}}, "weakest": {"slot",
            "replacements": [{"item_id", "score"}, ...]}}`; the weakest slot is the lowest percentile (the first
            slot on a tie).

        Raises:
            ValueError: naming the outfit and slot, for a blank or missing slot, or a bad value (as `complete`).
        """
        if isinstance(outfits, Mapping):
            outfits = [outfits]
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` must be at least 1, got {top_k!r} (a whole number).")
        if len(outfits) == 0:
            return []
        inputs, own_rows = zip(*(self.scoring_input(outfit, number) for number, outfit in enumerate(outfits)))
        scored = self.score_outfit_inputs(torch.stack(inputs), torch.stack(own_rows), top_k)
        return [self.outfit_score_result(scored, number, top_k) for number in range(len(outfits))]

    def scoring_input(self, outfit: Mapping[str, Any], number: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(slots, hidden) embeddings of one complete outfit and (slots,) the catalogue row of each item given by id
        (-1 for a photo or an embedding): the one validation behind `score_outfit` and the pipeline's scoring."""
        slots = self.config.categories
        unknown = [slot for slot in outfit if slot not in slots]
        if unknown:
            raise ValueError(f"Outfit {number}: unknown slot {unknown[0]!r}; the model's slots are {slots}.")
        inputs = self.get_catalogue_embeddings().new_zeros(len(slots), self.config.embedding_size)
        own_rows = torch.full((len(slots),), -1, dtype=torch.long)
        row_of = self._catalogue()["row_of"]
        for position, slot in enumerate(slots):
            if outfit.get(slot) is None:
                raise ValueError(
                    f"Outfit {number}: slot {slot!r} is blank or missing; `score_outfit` scores complete outfits "
                    "(`complete` fills a blank)."
                )
            inputs[position] = self._context_embedding(outfit[slot], slot, number)
            if isinstance(outfit[slot], str):
                own_rows[position] = row_of[outfit[slot]]
        return inputs, own_rows

    def score_outfit_inputs(
        self, inputs: torch.Tensor, own_rows: torch.Tensor, top_k: int = 5
    ) -> dict[str, torch.Tensor]:
        """The tensors behind `score_outfit`, for (outfits, slots, hidden) `inputs` and (outfits, slots) `own_rows`
        (from `scoring_input`): per slot `percentile`, `rank` and `candidates`, the `weakest` slot index, and
        `top_k + 1` replacement `replacement_rows` / `replacement_scores` (the own item may be among them)."""
        slots, embeddings = self.config.categories, self.get_catalogue_embeddings()
        num_outfits, num_slots = own_rows.shape
        masked = torch.arange(num_slots, device=inputs.device).repeat(num_outfits)  # (outfits * slots,)
        expanded = inputs.repeat_interleave(num_slots, dim=0)  # outfit i's copies are rows i*slots ... i*slots+slots-1
        predictions = self.predict_masked(expanded, masked)
        own = expanded[torch.arange(expanded.shape[0]), masked]
        rows = own_rows.reshape(-1).to(inputs.device)
        percentiles, ranks, sizes = [], [], []
        for start in range(0, predictions.shape[0], 1024):  # blocks bound the (rows, catalogue) score matrix
            block = slice(start, start + 1024)
            scores = pairwise_scores(predictions[block], torch.cat([embeddings, own[block]]), self.config.distance)
            catalogue_scores, own_scores = scores[:, : len(embeddings)], scores[:, len(embeddings) :].diagonal()
            in_catalogue = rows[block] >= 0
            # A catalogue item's own score is its entry in the matrix, so it ties with itself exactly.
            picked = catalogue_scores.gather(1, rows[block].clamp_min(0)[:, None]).squeeze(1)
            own_scores = torch.where(in_catalogue, picked, own_scores)
            in_category = self.catalogue_categories[None, :] == masked[block][:, None]
            better = ((catalogue_scores > own_scores[:, None]) & in_category).sum(dim=1)
            ties = ((catalogue_scores == own_scores[:, None]) & in_category).sum(dim=1) - in_catalogue.long()
            size = in_category.sum(dim=1) + (~in_catalogue).long()  # a photo competes as one more candidate
            rank = better.double() + 1 + ties.clamp_min(0).double() / 2
            rank = torch.where(own_scores.isnan(), size.double(), rank)  # a NaN prediction ranks its item last
            percentiles.append(100 * (size - rank) / (size - 1).clamp_min(1))
            ranks.append(rank)
            sizes.append(size)
        percentile = torch.cat(percentiles).reshape(num_outfits, len(slots))
        weakest = percentile.argmin(dim=1)
        weak_rows = torch.arange(num_outfits, device=weakest.device) * len(slots) + weakest
        replacement_scores, replacement_rows = self.retrieve(predictions[weak_rows], weakest, top_k + 1, pad=True)
        return {
            "percentile": percentile,
            "rank": torch.cat(ranks).reshape(percentile.shape),
            "candidates": torch.cat(sizes).reshape(percentile.shape),
            "own_rows": own_rows,
            "weakest": weakest,
            "replacement_scores": replacement_scores,
            "replacement_rows": replacement_rows,
        }

    def outfit_score_result(self, scored: Mapping[str, torch.Tensor], number: int, top_k: int) -> dict[str, Any]:
        """Outfit `number`'s entry of `score_outfit` from `score_outfit_inputs`' tensors: the weakest slot's own item
        is left out of its `top_k` replacements."""
        slots, item_ids = self.config.categories, self.catalogue_item_id_list
        weakest = int(scored["weakest"][number])
        own_row = int(scored["own_rows"][number, weakest])
        replacements = [
            {"item_id": item_ids[row], "score": score}
            for row, score in zip(
                scored["replacement_rows"][number].tolist(), scored["replacement_scores"][number].tolist()
            )
            if row >= 0 and row != own_row
        ][:top_k]
        return {
            "score": float(scored["percentile"][number].mean()),
            "slots": {
                slot: {
                    "percentile": float(scored["percentile"][number, position]),
                    "rank": float(scored["rank"][number, position]),
                    "candidates": int(scored["candidates"][number, position]),
                }
                for position, slot in enumerate(slots)
            },
            "weakest": {"slot": slots[weakest], "replacements": replacements},
        }

    def standardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map item embeddings to the model's internal space (centred, unit overall spread)."""
        return (embeddings - self.embedding_mean.to(embeddings.dtype)) / self.embedding_scale.to(embeddings.dtype)

    def unstandardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map internal reconstructions back to the space of the item embeddings."""
        return embeddings * self.embedding_scale.to(embeddings.dtype) + self.embedding_mean.to(embeddings.dtype)


__all__ = ["OutfitCatalogueMixin"]
