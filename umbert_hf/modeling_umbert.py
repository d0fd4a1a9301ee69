"""umBERT and WumBERT: BERT-like encoders over the item embeddings of an outfit, with a retrieval catalogue."""

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_umbert import UmBertConfig, WumBertConfig
from .masking import mask_slots
from .retrieval import CategoryIndex, pairwise_scores

logger = logging.get_logger(__name__)

# Largest inverse temperature of the contrastive loss, as in CLIP.
MAX_LOGIT_SCALE = math.log(100.0)
# Sub-folder of a saved model holding the image encoder of its catalogue (`config.image_encoder` names it).
IMAGE_ENCODER_FOLDER = "image_encoder"


@dataclass
class UmBertOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Reconstruction (MSE), contrastive (InfoNCE) or combined loss, as set by `config.loss_type`.
    reconstructions (`torch.FloatTensor` of shape `(batch_size, num_slots, hidden_size)`):
        The decoded item embedding of every slot, masked slot included.
    last_hidden_state (`torch.FloatTensor` of shape `(batch_size, num_slots, hidden_size)`):
        Encoder output before the per-slot decoders.
    masked_predictions (`torch.FloatTensor` of shape `(batch_size, hidden_size)`, *optional*):
        The reconstruction of each outfit's masked slot, returned when `masked_positions` is provided.
    """

    loss: torch.FloatTensor | None = None
    reconstructions: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    masked_predictions: torch.FloatTensor | None = None


class UmBertSlotDecoders(nn.Module):
    """One MLP per slot (hidden -> decoder_hidden -> embedding), applied to all slots at once with batched weights."""

    def __init__(self, config: UmBertConfig):
        super().__init__()
        slots, hidden, inner = config.num_categories, config.hidden_size, config.decoder_hidden_size
        self.up_weight = nn.Parameter(torch.empty(slots, hidden, inner))
        self.up_bias = nn.Parameter(torch.zeros(slots, inner))
        self.down_weight = nn.Parameter(torch.empty(slots, inner, config.embedding_size))
        self.down_bias = nn.Parameter(torch.zeros(slots, config.embedding_size))
        self.activation = nn.GELU() if config.hidden_act == "gelu" else nn.ReLU()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (batch, slots, hidden) -> (batch, slots, inner) -> (batch, slots, embedding)
        inner = torch.einsum("bsh,shi->bsi", hidden_states, self.up_weight) + self.up_bias
        return torch.einsum("bsi,sih->bsh", self.activation(inner), self.down_weight) + self.down_bias


class UmBertBackbone(nn.Module):
    """Input projection (when the item embeddings are wider than the encoder), MASK tokens, optional category
    embeddings, the transformer encoder and the per-slot decoders."""

    def __init__(self, config: UmBertConfig):
        super().__init__()
        self.config = config
        self.input_projection = (
            nn.Linear(config.embedding_size, config.hidden_size)
            if config.embedding_size != config.hidden_size
            else None
        )
        self.mask_embeddings = nn.Parameter(torch.empty(config.num_categories, config.hidden_size))
        self.category_embeddings = (
            nn.Embedding(config.num_categories, config.hidden_size) if config.use_category_embeddings else None
        )
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_attention_heads,
            dim_feedforward=config.intermediate_size,
            dropout=config.hidden_dropout_prob,
            activation=config.hidden_act,
            layer_norm_eps=config.layer_norm_eps,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=config.num_hidden_layers, enable_nested_tensor=False)
        self.decoders = UmBertSlotDecoders(config)
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / config.contrastive_temperature)), requires_grad=config.learn_temperature
        )

    def forward(
        self, inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.input_projection is not None:
            inputs_embeds = self.input_projection(inputs_embeds)  # (batch, slots, embedding) -> (batch, slots, hidden)
        if masked_positions is not None:
            inputs_embeds = mask_slots(inputs_embeds, masked_positions, self.mask_embeddings)
        if self.category_embeddings is not None:
            inputs_embeds = inputs_embeds + self.category_embeddings.weight.unsqueeze(0)
        last_hidden_state = self.encoder(inputs_embeds)  # (batch, slots, hidden)
        return self.decoders(last_hidden_state), last_hidden_state


def _similarity_logits(predictions: torch.Tensor, targets: torch.Tensor, distance: str) -> torch.Tensor:
    """(rows, rows) similarities on a scale that does not depend on the embedding size or spread.

    The scores of `retrieval.pairwise_scores`. Cosine similarity lies in [-1, 1]. The Euclidean score is minus the
    squared distance divided by twice the targets' mean squared deviation (the expected squared distance between two
    random targets), so a random pair scores about -1 and a perfect prediction 0, whatever the dimension: without
    that normalisation, 384-d embeddings give logits in the thousands, the softmax saturates and only the hardest
    negative gets a gradient.
    """
    if distance == "cosine":
        return pairwise_scores(predictions, targets, distance)
    spread = 2 * (targets - targets.mean(dim=0)).pow(2).sum(dim=-1).mean().detach().clamp_min(1e-12)
    return pairwise_scores(predictions, targets, distance, squared=True) / spread  # (rows, rows)


def contrastive_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    row_categories: torch.Tensor,
    logit_scale: torch.Tensor,
    distance: str,
) -> torch.Tensor:
    """InfoNCE: each prediction must pick its own target among the batch's targets of the same category.

    Targets of another category are excluded, and so are exact copies of the true target (the same item in another
    outfit of the batch), which would otherwise count as negatives.
    """
    logits = _similarity_logits(predictions, targets, distance) * logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    rows = torch.arange(predictions.shape[0], device=predictions.device)
    _, item_index = torch.unique(targets.detach(), dim=0, return_inverse=True)
    same_item = (item_index[:, None] == item_index[None, :]) & (rows[:, None] != rows[None, :])
    other_category = row_categories[:, None] != row_categories[None, :]
    logits = logits.masked_fill(same_item | other_category, torch.finfo(logits.dtype).min)
    return nn.functional.cross_entropy(logits.float(), rows)


def catalogue_contrastive_loss(
    predictions: torch.Tensor,
    target_rows: torch.Tensor,
    row_categories: torch.Tensor,
    keys: torch.Tensor,
    key_categories: torch.Tensor,
    logit_scale: torch.Tensor,
    distance: str,
    distinct: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE against the whole catalogue: each prediction must pick its target row among every item of its category.

    Items whose embedding equals the target's (the same garment in another listing) are excluded, as in
    `contrastive_loss`; so are items of other categories. `distinct` (one id per distinct key, see `distinct_rows`)
    saves recomputing it when the keys do not change.
    """
    logits = _similarity_logits(predictions, keys, distance) * logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    if distinct is None:
        distinct = distinct_rows(keys)
    copies = distinct[None, :] == distinct[target_rows][:, None]  # (rows, catalogue)
    copies[torch.arange(target_rows.shape[0], device=keys.device), target_rows] = False
    other_category = key_categories[None, :] != row_categories[:, None]
    logits = logits.masked_fill(copies | other_category, torch.finfo(logits.dtype).min)
    return nn.functional.cross_entropy(logits.float(), target_rows)


def distinct_rows(keys: torch.Tensor) -> torch.Tensor:
    """(rows,) one id per distinct row of `keys`: equal ids for exact copies."""
    return torch.unique(keys.detach(), dim=0, return_inverse=True)[1]


@dataclass
class CatalogueTargets:
    """What the catalogue-wide contrastive loss needs: the target rows `(batch, slots)`, the catalogue in the model's
    internal (standardised) space, its slot categories and its distinct-row ids."""

    rows: torch.Tensor
    keys: torch.Tensor
    categories: torch.Tensor
    distinct: torch.Tensor | None = None


def outfit_loss(
    config: UmBertConfig,
    reconstructions: torch.Tensor,
    targets: torch.Tensor,
    masked_positions: torch.Tensor | None,
    logit_scale: torch.Tensor,
    mse_targets: torch.Tensor | None = None,
    catalogue: CatalogueTargets | None = None,
) -> torch.Tensor:
    """The training loss selected by `config.loss_type`.

    MSE covers every slot. The contrastive term covers the masked slot of each outfit, or every slot when nothing is
    masked (pre-training), against the batch's targets or, given `catalogue`, against every catalogue item of the
    slot's category. `mse_targets` lets WumBERT stop gradients into its own table for the MSE term.
    """
    loss = reconstructions.new_zeros(())
    if "mse" in config.loss_type:
        mse_targets = targets if mse_targets is None else mse_targets
        loss = loss + nn.functional.mse_loss(reconstructions.float(), mse_targets.float())
    if "contrastive" in config.loss_type:
        batch_size, num_slots, embedding_size = reconstructions.shape
        if masked_positions is not None:
            rows = torch.arange(batch_size, device=reconstructions.device)
            predictions, row_targets = reconstructions[rows, masked_positions], targets[rows, masked_positions]
            row_categories = masked_positions
            target_rows = None if catalogue is None else catalogue.rows[rows, masked_positions]
        else:
            predictions = reconstructions.reshape(-1, embedding_size)
            row_targets = targets.reshape(-1, embedding_size)
            row_categories = torch.arange(num_slots, device=reconstructions.device).repeat(batch_size)
            target_rows = None if catalogue is None else catalogue.rows.reshape(-1)
        if catalogue is None:
            loss = loss + contrastive_loss(predictions, row_targets, row_categories, logit_scale, config.distance)
        else:
            loss = loss + catalogue_contrastive_loss(
                predictions,
                target_rows,
                row_categories,
                catalogue.keys,
                catalogue.categories,
                logit_scale,
                config.distance,
                distinct=catalogue.distinct,
            )
    return loss


def _is_image(value: Any) -> bool:
    """A PIL image, or a path to an existing file (read as an image by the encoder's preprocessing)."""
    if isinstance(value, os.PathLike) or isinstance(value, str):
        return os.path.isfile(value)
    return type(value).__module__.startswith("PIL.")


class UmBertPreTrainedModel(PreTrainedModel):
    """Weight initialisation, catalogue storage and outfit completion shared by umBERT and WumBERT."""

    config_class = UmBertConfig
    base_model_prefix = "umbert"
    main_input_name = "inputs_embeds"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, UmBertBackbone):
            init.normal_(module.mask_embeddings, mean=0.0, std=std)
            init.constant_(module.logit_scale, math.log(1.0 / self.config.contrastive_temperature))
        elif isinstance(module, UmBertSlotDecoders):
            init.normal_(module.up_weight, mean=0.0, std=std)
            init.normal_(module.down_weight, mean=0.0, std=std)
            init.zeros_(module.up_bias)
            init.zeros_(module.down_bias)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, recording the `outfit-completion` pipeline in `config.custom_pipelines`.

        The pipeline module is imported here rather than at the top (the model does not need it): the relative import
        still makes it travel with this file, so `pipeline("outfit-completion", model=folder, trust_remote_code=True)`
        works wherever the folder (or Hub repo) goes.
        """
        from .pipeline_outfit_completion import custom_pipelines_config

        self.config.custom_pipelines = custom_pipelines_config()
        return super().save_pretrained(save_directory, *args, **kwargs)

    # ----- catalogue -------------------------------------------------------------------------------------------

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
            self.embedding_mean = embeddings.mean(dim=0).to(device)
            self.embedding_scale = (
                (embeddings - embeddings.mean(dim=0)).pow(2).mean().sqrt().clamp_min(1e-8).view(1).to(device)
            )
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

    def _distinct_catalogue_rows(self) -> torch.Tensor:
        """`distinct_rows` of the catalogue embeddings, recomputed only when they change (every step for WumBERT)."""
        cache = self._catalogue()
        embeddings = self.get_catalogue_embeddings()
        key = (embeddings.data_ptr(), embeddings._version, self._catalogue_cache_key)
        if cache.get("distinct_key") != key:
            cache["distinct"], cache["distinct_key"] = distinct_rows(embeddings), key
        return cache["distinct"]

    def catalogue_index(self) -> CategoryIndex:
        """The per-slot search index over the catalogue, rebuilt only when the embeddings or the catalogue change."""
        cache = self._catalogue()
        embeddings = self.get_catalogue_embeddings()
        key = (embeddings.data_ptr(), embeddings._version, self.config.distance, self._catalogue_cache_key)
        if cache.get("index_key") != key:
            cache["index"] = CategoryIndex(
                embeddings, self.catalogue_categories, self.config.distance, num_categories=self.config.num_categories
            )
            cache["index_key"] = key
        return cache["index"]

    # ----- completion ------------------------------------------------------------------------------------------

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
        if _is_image(value):
            embedding = self.embed_images([value], categories=[slot])[0].to(self.get_catalogue_embeddings())
            return self._finite_context(embedding, slot, number, "image embedding")
        if isinstance(value, str):
            raise ValueError(
                f"Outfit {number}, slot {slot!r}: unknown item id {value!r} (not in the catalogue, nor an image file)."
            )
        raise ValueError(
            f"Outfit {number}, slot {slot!r}: expected an item id (str), an image (PIL image or file path), "
            f"an embedding tensor or None, got {type(value).__name__}."
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
            self._image_embedder = self._recorded_image_embedder()
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

    def _image_encoder_location(self) -> tuple[str, str | None]:
        """`(folder or Hub id, sub-folder or None)` of the recorded image encoder; `ValueError` when it is missing.

        `config.image_encoder` is `"image_encoder"` for an encoder saved with the model (the sub-folder of the folder
        or Hub repo the model was loaded from), or the Hub id of the encoder, or, in configs saved before encoders
        were saved with their model, an absolute path. `set_image_encoder_source` overrides it.
        """
        metadata = self.config.embedding_metadata or {}
        source = getattr(self, "_image_encoder_source", None)
        encoder = source or self.config.image_encoder or metadata.get("image_encoder")
        if not encoder:
            raise ValueError(
                "This model's config records no image encoder (its embeddings did not come from "
                "compute_embeddings.py with --image_encoder), so photos cannot be embedded; give item ids instead."
            )
        if encoder == IMAGE_ENCODER_FOLDER and not source:
            model_location = self.name_or_path
            if not model_location:
                raise ValueError(
                    f"This model's image encoder is saved with it, in its {IMAGE_ENCODER_FOLDER}/ sub-folder, but the "
                    "model was not loaded from a folder or Hub repo: load it with `from_pretrained`, or call "
                    "`set_image_encoder_source(encoder_folder)`."
                )
            if os.path.isdir(model_location):
                folder = os.path.join(model_location, IMAGE_ENCODER_FOLDER)
                if not os.path.isfile(os.path.join(folder, "config.json")):
                    raise ValueError(
                        f"This model's image encoder should be in {folder}, which holds none: copy the model folder "
                        f"with its {IMAGE_ENCODER_FOLDER}/ sub-folder (or `save_image_encoder` it), or give item ids."
                    )
                return folder, None
            return model_location, IMAGE_ENCODER_FOLDER
        if os.path.isabs(encoder) and not os.path.isdir(encoder):
            raise ValueError(
                f"This model's image encoder is recorded as the folder {encoder}, which does not exist here; "
                "give item ids instead, or `set_image_encoder_source` the encoder's folder."
            )
        return encoder, None

    def load_image_encoder(self):
        """The image encoder that embedded the catalogue: a `FashionResNetModel`, `SsimAutoEncoderModel`, or any
        `transformers` image model with its processor (a `TransformersImageEncoder`, e.g. CLIP's image tower).

        Resolved by `_image_encoder_location`. Raises `ValueError` with one line when it cannot be loaded (no
        encoder recorded, the model folder moved without its `image_encoder/` sub-folder, an unreachable Hub id).
        """
        location, subfolder = self._image_encoder_location()
        trust_remote_code = getattr(self, "_image_encoder_trust_remote_code", False)
        try:
            from transformers.utils import cached_file

            from umbert_hf.data.image_processing import load_image_encoder
        except ImportError as error:
            raise ValueError("Embedding photos needs the umbert-hf package: pip install umbert-hf.") from error
        where = f"the {subfolder}/ sub-folder of {location}" if subfolder else location
        try:
            if subfolder is None:
                image_model = load_image_encoder(location, trust_remote_code=trust_remote_code)
            else:
                # The config is fetched first: without it, the loader's error would not say that the sub-folder is
                # missing.
                revision = getattr(self.config, "_commit_hash", None)
                if cached_file(location, "config.json", subfolder=subfolder, revision=revision) is None:
                    raise OSError(
                        f"{location} has no {subfolder}/config.json (push the model folder with its {subfolder}/ "
                        "sub-folder), so give item ids instead."
                    )
                image_model = load_image_encoder(
                    location, subfolder=subfolder, revision=revision, trust_remote_code=trust_remote_code
                )
        except (OSError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"Cannot load this model's image encoder from {where}: {reason}") from None
        if not hasattr(image_model, "get_image_embeddings"):
            raise ValueError(f"{where} holds a {image_model.config.model_type!r} model, not an image encoder.")
        return image_model.eval()

    def save_image_encoder(self, save_directory: str | os.PathLike) -> str | None:
        """Save the image encoder (weights and config, with its preprocessing) in `save_directory/image_encoder/`.

        So the saved (or pushed) model embeds photos wherever its folder goes: the config then records
        `image_encoder = "image_encoder"`, a path relative to the model, and no local path. Only for catalogues
        embedded with an image encoder and not projected; an encoder recorded as a Hub id stays one (nothing saved).
        Returns the folder written, or None.
        """
        metadata = self.config.embedding_metadata or {}
        encoder = self.config.image_encoder or metadata.get("image_encoder")
        if not encoder or "image" not in (metadata.get("parts") or ["image"]) or metadata.get("projection"):
            return None
        if encoder != IMAGE_ENCODER_FOLDER and not os.path.isabs(encoder):
            return None  # a Hub id: loadable from anywhere as is
        target = os.path.join(os.fspath(save_directory), IMAGE_ENCODER_FOLDER)
        location, subfolder = self._image_encoder_location()
        if subfolder is not None or os.path.realpath(location) != os.path.realpath(target):
            self.load_image_encoder().save_pretrained(target)
        self.config.image_encoder = IMAGE_ENCODER_FOLDER
        if isinstance(metadata.get("image_encoder"), str) and os.path.isabs(metadata["image_encoder"]):
            name = os.path.basename(os.path.normpath(metadata["image_encoder"]))
            self.config.embedding_metadata = {**metadata, "image_encoder": name}
        return target

    def _recorded_image_embedder(self) -> Callable[[list[Any]], torch.Tensor]:
        metadata = self.config.embedding_metadata or {}
        if metadata.get("projection"):
            raise ValueError(
                "This model's item embeddings were projected (PCA) after extraction, so photos cannot be embedded "
                "the same way; give item ids instead."
            )
        if metadata.get("parts") == ["text"]:
            encoder = metadata.get("text_encoder")
            if metadata.get("text_pooling") == "get_text_features":  # an image–text model: its image tower fits
                remedy = f"recompute the embeddings with `compute_embeddings.py --image_encoder {encoder}` (its image "
                remedy += "tower)"
            else:
                remedy = "recompute the embeddings with an image encoder (`compute_embeddings.py --image_encoder`)"
            raise ValueError(
                f"This model's catalogue was embedded from item titles by the text encoder {encoder!r} only, so a "
                f"photo cannot be embedded the same way: give item ids, or {remedy} and train on those."
            )
        if metadata.get("parts", ["image"]) not in (["image"], ["image", "text"]):
            raise ValueError(
                f"This model's item embeddings combine {metadata.get('parts')}, not an image part first, so photos "
                "cannot be used as context items."
            )
        image_model = self.load_image_encoder()
        try:  # in a `try`: transformers then does not require umbert_hf to load a saved folder's code
            from umbert_hf.data.image_processing import encode_images
        except ImportError as error:
            raise ValueError("Embedding photos needs the umbert-hf package: pip install umbert-hf.") from error
        preprocessing = metadata.get("image_preprocessing")
        normalize = bool(metadata.get("normalized"))

        def embed(images: list[Any]) -> torch.Tensor:
            embeddings = encode_images(image_model, images, preprocessing=preprocessing)
            return nn.functional.normalize(embeddings, dim=-1) if normalize else embeddings

        return embed

    def complete(self, outfits: Sequence[Mapping[str, Any]], top_k: int = 10) -> list[list[dict[str, Any]]]:
        """Suggest items for the blank slot of each outfit.

        Args:
            outfits: dicts slot -> item id, embedding tensor or image (PIL image or file path), with exactly one slot
                set to None (the blank).
            top_k: number of suggestions per outfit.

        Returns:
            Per outfit, a list of `{"item_id": str, "score": float}` for the `top_k` catalogue items of the blank's
            category, best first (score: minus the distance, or cosine similarity).

        Raises:
            ValueError: naming the outfit number and slot, for an unknown slot or item id, not exactly one blank, an
                item id of another category than its slot (e.g. a shoe given as `tops`: the model was trained on
                one item per category, so it is refused rather than silently scored), or an embedding of the wrong
                shape or with NaN or infinite values.
        """
        if isinstance(outfits, Mapping):
            outfits = [outfits]
        if top_k < 1:
            raise ValueError(f"`top_k` must be at least 1, got {top_k}.")
        if len(outfits) == 0:
            return []
        inputs_embeds, blanks = self._outfit_inputs(outfits)
        predictions = self.predict_masked(inputs_embeds, blanks)
        scores, rows = self.retrieve(predictions, blanks, top_k, pad=True)
        item_ids = self.catalogue_item_id_list
        return [
            [{"item_id": item_ids[row], "score": score} for row, score in zip(row_list, score_list) if row >= 0]
            for row_list, score_list in zip(rows.tolist(), scores.tolist())
        ]

    def standardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map item embeddings to the model's internal space (centred, unit overall spread)."""
        return (embeddings - self.embedding_mean.to(embeddings.dtype)) / self.embedding_scale.to(embeddings.dtype)

    def unstandardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map internal reconstructions back to the space of the item embeddings."""
        return embeddings * self.embedding_scale.to(embeddings.dtype) + self.embedding_mean.to(embeddings.dtype)

    def _encode_and_score(
        self,
        inputs_embeds: torch.Tensor,
        masked_positions: torch.Tensor | None,
        targets: torch.Tensor | None,
        mse_targets: torch.Tensor | None = None,
        target_rows: torch.Tensor | None = None,
    ) -> UmBertOutput:
        """Shared forward: standardise, encode and decode, compute the loss in the internal space, map back."""
        self._check_inputs_embeds(inputs_embeds)
        internal, last_hidden_state = self.backbone(self.standardize(inputs_embeds), masked_positions)
        loss = None
        if targets is not None:
            catalogue = None
            if self.config.contrastive_negatives == "catalogue" and "contrastive" in self.config.loss_type:
                if target_rows is None:
                    raise ValueError(
                        "`contrastive_negatives='catalogue'` needs `labels` as catalogue rows (a LongTensor), "
                        "not embeddings."
                    )
                keys = self.standardize(self.get_catalogue_embeddings())
                catalogue = CatalogueTargets(
                    target_rows, keys, self.catalogue_categories, self._distinct_catalogue_rows()
                )
            loss = outfit_loss(
                self.config,
                internal,
                self.standardize(targets),
                masked_positions,
                self.backbone.logit_scale,
                mse_targets=None if mse_targets is None else self.standardize(mse_targets),
                catalogue=catalogue,
            )
        reconstructions = self.unstandardize(internal)
        masked_predictions = None
        if masked_positions is not None:
            masked_predictions = reconstructions[torch.arange(reconstructions.shape[0]), masked_positions]
        return UmBertOutput(
            loss=loss,
            reconstructions=reconstructions,
            last_hidden_state=last_hidden_state,
            masked_predictions=masked_predictions,
        )

    def _check_inputs_embeds(self, inputs_embeds: torch.Tensor) -> None:
        expected = (len(self.config.categories), self.config.embedding_size)
        if inputs_embeds.dim() != 3 or tuple(inputs_embeds.shape[1:]) != expected:
            raise ValueError(
                f"`inputs_embeds` must be (batch, slots={expected[0]}, embedding_size={expected[1]}), "
                f"got shape {tuple(inputs_embeds.shape)}."
            )


class UmBertModel(UmBertPreTrainedModel):
    """umBERT: reconstructs the item embeddings of an outfit given as `inputs_embeds`, one slot per category."""

    def __init__(self, config: UmBertConfig):
        super().__init__(config)
        self.backbone = UmBertBackbone(config)
        self._register_catalogue_buffers()
        self.register_buffer("catalogue_embeddings", torch.zeros(config.catalogue_size, config.embedding_size))
        self.post_init()

    def get_catalogue_embeddings(self) -> torch.Tensor:
        return self.catalogue_embeddings

    def _store_catalogue_embeddings(self, embeddings: torch.Tensor) -> None:
        self.catalogue_embeddings = embeddings

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        masked_positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> UmBertOutput:
        r"""
        inputs_embeds (`torch.FloatTensor` of shape `(batch_size, num_slots, embedding_size)`):
            Item embeddings, one per slot in `config.categories` order.
        masked_positions (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Slot to replace with its category's MASK token in each outfit.
        labels (`torch.LongTensor` of shape `(batch_size, num_slots)` or `torch.FloatTensor` of shape
            `(batch_size, num_slots, embedding_size)`, *optional*):
            Target catalogue rows or target embeddings (usually the unmasked outfit); the loss is computed only when
            given. The catalogue-wide contrastive loss (`config.contrastive_negatives="catalogue"`) needs rows.
        """
        targets, target_rows = labels, None
        if labels is not None and not labels.is_floating_point():
            targets, target_rows = self.catalogue_embeddings[labels], labels  # (batch, slots, embedding)
        return self._encode_and_score(inputs_embeds, masked_positions, targets, target_rows=target_rows)


class WumBertModel(UmBertPreTrainedModel):
    """WumBERT: umBERT over a trainable item table; `input_ids` index the catalogue, whose rows are the table."""

    config_class = WumBertConfig
    base_model_prefix = "wumbert"
    main_input_name = "input_ids"

    def __init__(self, config: WumBertConfig):
        super().__init__(config)
        self.backbone = UmBertBackbone(config)
        self.item_embeddings = nn.Embedding(config.catalogue_size, config.embedding_size)
        self._register_catalogue_buffers()
        self.post_init()

    @classmethod
    def from_item_embeddings(
        cls,
        item_ids: Sequence[str],
        embeddings: torch.Tensor,
        categories: Sequence[str],
        config: WumBertConfig | None = None,
        **config_kwargs,
    ) -> "WumBertModel":
        """A WumBERT whose item table starts from `embeddings` (e.g. image embeddings) and whose catalogue is set."""
        embeddings = torch.as_tensor(embeddings, dtype=torch.float32)
        if config is None:
            size = embeddings.shape[-1]
            config = WumBertConfig(**{"hidden_size": size, "embedding_size": size, **config_kwargs})
        model = cls(config)
        model.set_catalogue(item_ids, embeddings, categories)
        return model

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def get_catalogue_embeddings(self) -> torch.Tensor:
        return self.item_embeddings.weight

    def _store_catalogue_embeddings(self, embeddings: torch.Tensor) -> None:
        table = nn.Embedding(embeddings.shape[0], embeddings.shape[1], device=embeddings.device)
        with torch.no_grad():
            table.weight.copy_(embeddings)
        self.item_embeddings = table

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> UmBertOutput:
        r"""
        input_ids (`torch.LongTensor` of shape `(batch_size, num_slots)`):
            Catalogue rows of the outfit's items. Give exactly one of `input_ids` and `inputs_embeds`.
        masked_positions (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Slot to replace with its category's MASK token in each outfit.
        labels (`torch.LongTensor` of shape `(batch_size, num_slots)` or `torch.FloatTensor` of shape
            `(batch_size, num_slots, embedding_size)`, *optional*):
            Target item rows (looked up in the table) or target embeddings. The MSE term does not propagate into the
            table through its targets, which would otherwise collapse every item to one point.
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Give exactly one of `input_ids` and `inputs_embeds`.")
        if input_ids is not None:
            if input_ids.dim() != 2 or input_ids.shape[1] != len(self.config.categories):
                raise ValueError(
                    f"`input_ids` must be (batch, slots={len(self.config.categories)}), "
                    f"got shape {tuple(input_ids.shape)}."
                )
            inputs_embeds = self.item_embeddings(input_ids)  # (batch, slots, embedding)
        targets, target_rows = labels, None
        if labels is not None and not labels.is_floating_point():
            targets, target_rows = self.item_embeddings(labels), labels
        mse_targets = None if targets is None else targets.detach()
        return self._encode_and_score(
            inputs_embeds, masked_positions, targets, mse_targets=mse_targets, target_rows=target_rows
        )


__all__ = [
    "UmBertOutput",
    "UmBertPreTrainedModel",
    "UmBertModel",
    "WumBertModel",
    "catalogue_contrastive_loss",
    "contrastive_loss",
    "outfit_loss",
]
