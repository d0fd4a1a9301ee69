"""umBERT and WumBERT: BERT-like encoders over the item embeddings of an outfit, with a retrieval catalogue."""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .catalogue import OutfitCatalogueMixin
from .configuration_umbert import UmBertConfig, WumBertConfig
from .faiss_index import SAVED_INDEX_FOLDER
from .masking import mask_slots
from .retrieval import distinct_rows, pairwise_scores

logger = logging.get_logger(__name__)

# Largest inverse temperature of the contrastive loss, as in CLIP.
MAX_LOGIT_SCALE = math.log(100.0)


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


class UmBertEncoder(nn.Module):
    """Input projection (when the item embeddings are wider than the encoder), MASK tokens, optional category
    embeddings, the transformer layers and the per-slot decoders."""

    def __init__(self, config: UmBertConfig):
        super().__init__()
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
        self.layers = nn.TransformerEncoder(layer, num_layers=config.num_hidden_layers, enable_nested_tensor=False)
        self.decoders = UmBertSlotDecoders(config)

    def forward(
        self, inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructions, last_hidden_state), both (batch, slots, ...), of standardised item embeddings."""
        if self.input_projection is not None:
            inputs_embeds = self.input_projection(inputs_embeds)  # (batch, slots, embedding) -> (batch, slots, hidden)
        if masked_positions is not None:
            inputs_embeds = mask_slots(inputs_embeds, masked_positions, self.mask_embeddings)
        if self.category_embeddings is not None:
            inputs_embeds = inputs_embeds + self.category_embeddings.weight.unsqueeze(0)
        last_hidden_state = self.layers(inputs_embeds)  # (batch, slots, hidden)
        return self.decoders(last_hidden_state), last_hidden_state


def _similarity_logits(
    predictions: torch.Tensor, targets: torch.Tensor, distance: str, spread: torch.Tensor | None = None
) -> torch.Tensor:
    """(rows, rows) similarities on a scale that does not depend on the embedding size or spread.

    The scores of `retrieval.pairwise_scores`. Cosine similarity lies in [-1, 1]. The Euclidean score is minus the
    squared distance divided by twice the targets' mean squared deviation (the expected squared distance between two
    random targets), so a random pair scores about -1 and a perfect prediction 0, whatever the dimension: without
    that normalisation, 384-d embeddings give logits in the thousands, the softmax saturates and only the hardest
    negative gets a gradient. `spread` gives that normaliser when `targets` are a part of the keys (`_spread`).
    """
    if distance == "cosine":
        return pairwise_scores(predictions, targets, distance)
    spread = _spread(targets) if spread is None else spread
    return pairwise_scores(predictions, targets, distance, squared=True) / spread  # (rows, rows)


def _spread(keys: torch.Tensor) -> torch.Tensor:
    """Twice the keys' mean squared deviation (the expected squared distance between two random keys), detached."""
    return 2 * (keys - keys.mean(dim=0)).pow(2).sum(dim=-1).mean().detach().clamp_min(1e-12)


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
    max_negatives: int | None = None,
    spread: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE against the whole catalogue: each prediction must pick its target row among every item of its category.

    Items whose embedding equals the target's (the same garment in another listing) are excluded, as in
    `contrastive_loss`; so are items of other categories (each category is scored apart: its items only). `distinct`
    (one id per distinct key, see `distinct_rows`) and `spread` (`_spread(keys)`, the Euclidean logit scale) save
    recomputing them when the keys do not change.

    `max_negatives` bounds the cost of a step on a catalogue of hundreds of thousands of items: a category with more
    items is represented by that many of them drawn at random (torch's generator, so `--seed` repeats them), plus the
    batch's targets, and each negative's logit gains log(items / drawn), so that the loss estimates the full one. A
    category of at most `max_negatives` items is scored whole, exactly (MANGO's largest has 2,190).
    """
    scale = logit_scale.clamp(max=MAX_LOGIT_SCALE).exp()
    if distinct is None:
        distinct = distinct_rows(keys)
    if distance == "cosine":
        spread = None
    elif spread is None:
        spread = _spread(keys)  # over every key, as one catalogue-wide logit scale
    total = predictions.new_zeros((), dtype=torch.float32)
    position = torch.full((keys.shape[0],), -1, dtype=torch.long, device=keys.device)
    for category in torch.unique(row_categories).tolist():
        queries = torch.nonzero(row_categories == category).flatten()
        candidates = torch.nonzero(key_categories == category).flatten()
        targets = target_rows[queries]
        correction = 0.0
        if max_negatives is not None and candidates.numel() > max_negatives:
            drawn = candidates[torch.randperm(candidates.numel(), device=keys.device)[:max_negatives]]
            correction = math.log(candidates.numel() / max_negatives)
            wanted = torch.unique(targets)
            candidates = torch.cat([wanted, drawn[~torch.isin(drawn, wanted)]])
        position[candidates] = torch.arange(candidates.numel(), device=keys.device)
        target_positions = position[targets]
        logits = _similarity_logits(predictions[queries], keys[candidates], distance, spread) * scale
        copies = distinct[candidates][None, :] == distinct[targets][:, None]  # (queries, candidates)
        own = torch.zeros_like(copies)
        own[torch.arange(queries.numel(), device=keys.device), target_positions] = True
        if correction:
            logits = logits + torch.where(own, 0.0, correction)
        logits = logits.masked_fill(copies & ~own, torch.finfo(logits.dtype).min)
        total = total + nn.functional.cross_entropy(logits.float(), target_positions, reduction="sum")
        position[candidates] = -1
    return total / predictions.shape[0]


@dataclass
class CatalogueTargets:
    """What the catalogue-wide contrastive loss needs: the target rows `(batch, slots)`, the catalogue in the model's
    internal (standardised) space, its slot categories, its distinct-row ids and its spread (`_spread`)."""

    rows: torch.Tensor
    keys: torch.Tensor
    categories: torch.Tensor
    distinct: torch.Tensor | None = None
    spread: torch.Tensor | None = None


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
                max_negatives=config.max_catalogue_negatives,
                spread=catalogue.spread,
            )
    return loss


def check_inputs_embeds(config: UmBertConfig, inputs_embeds: torch.Tensor) -> None:
    """`ValueError` unless `inputs_embeds` is (batch, slots, embedding_size) for `config`."""
    expected = (len(config.categories), config.embedding_size)
    if inputs_embeds.dim() != 3 or tuple(inputs_embeds.shape[1:]) != expected:
        raise ValueError(
            f"`inputs_embeds` must be (batch, slots={expected[0]}, embedding_size={expected[1]}), "
            f"got shape {tuple(inputs_embeds.shape)}."
        )


class UmBertPreTrainedModel(OutfitCatalogueMixin, PreTrainedModel):
    """Weight initialisation and the loss shared by umBERT and WumBERT (the catalogue: `OutfitCatalogueMixin`)."""

    config_class = UmBertConfig
    base_model_prefix = "umbert"
    main_input_name = "inputs_embeds"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, UmBertPreTrainedModel):
            init.constant_(module.logit_scale, math.log(1.0 / self.config.contrastive_temperature))
        elif isinstance(module, UmBertEncoder):
            init.normal_(module.mask_embeddings, mean=0.0, std=std)
        elif isinstance(module, UmBertSlotDecoders):
            init.normal_(module.up_weight, mean=0.0, std=std)
            init.normal_(module.down_weight, mean=0.0, std=std)
            init.zeros_(module.up_bias)
            init.zeros_(module.down_bias)

    def _add_loss_temperature(self) -> None:
        """The contrastive loss's inverse temperature (log scale), learned when `config.learn_temperature`."""
        value = torch.tensor(math.log(1.0 / self.config.contrastive_temperature))
        self.logit_scale = nn.Parameter(value, requires_grad=self.config.learn_temperature)

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, recording the `outfit-completion` pipeline in `config.custom_pipelines`.

        The pipeline module is imported here rather than at the top (the model does not need it): the relative import
        still makes it travel with this file, so `pipeline("outfit-completion", model=folder, trust_remote_code=True)`
        works wherever the folder (or Hub repo) goes. A model that searches on FAISS (`set_search_index`) also saves
        its index, in `faiss_index/`: loading it is much faster than building it again (docs/performance.md).
        """
        from .pipeline_outfit_completion import custom_pipelines_config

        self.config.custom_pipelines = custom_pipelines_config()
        if kwargs.get("is_main_process", True):
            os.makedirs(save_directory, exist_ok=True)
            self.save_search_index(save_directory)  # first: `push_to_hub=True` uploads at the end of the save
        return super().save_pretrained(save_directory, *args, **kwargs)

    def _get_files_timestamps(self, working_dir: str | os.PathLike) -> dict[str, float]:
        """The files `save_pretrained(..., push_to_hub=True)` leaves out of its upload as unchanged, less the FAISS
        index folder: written just before, it is part of the model."""
        timestamps = super()._get_files_timestamps(working_dir)
        if self.config.search_index != "exact":
            timestamps.pop(SAVED_INDEX_FOLDER, None)
        return timestamps

    def standardized_catalogue(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The catalogue in the internal (standardised) space and its spread (`_spread`; None for cosine): the keys
        of the catalogue-wide contrastive loss.

        umBERT's catalogue and standardisation are buffers, constant while it trains, so both are kept and reused
        until one of them changes (another tensor, or an in-place edit): a fine-tuning step then costs the same on a
        catalogue of 250,000 items as on one of 25,000. WumBERT's table trains, so its keys are recomputed (with
        their gradient) every call.
        """
        embeddings = self.get_catalogue_embeddings()
        if embeddings.requires_grad and torch.is_grad_enabled():
            keys = self.standardize(embeddings)
            return keys, None if self.config.distance == "cosine" else _spread(keys)
        cache = self._catalogue()
        sources = (embeddings, self.embedding_mean, self.embedding_scale)
        versions = (*(source._version for source in sources), self.config.distance)
        cached_sources, cached_versions, keys, spread = cache.get("standardized", ((), None, None, None))
        if cached_versions != versions or any(a is not b for a, b in zip(cached_sources, sources)):
            with torch.no_grad():
                keys = self.standardize(embeddings)
                spread = None if self.config.distance == "cosine" else _spread(keys)
            cache["standardized"] = (sources, versions, keys, spread)
        return keys, spread

    def compute_loss(self, reconstructions, targets, masked_positions, target_rows=None, mse_targets=None):
        """`outfit_loss` in the internal (standardised) space; `target_rows` give the catalogue-wide negatives."""
        catalogue = None
        if self.config.contrastive_negatives == "catalogue" and "contrastive" in self.config.loss_type:
            if target_rows is None:
                raise ValueError(
                    "`contrastive_negatives='catalogue'` needs `labels` as catalogue rows (a LongTensor), not embeddings."
                )
            keys, spread = self.standardized_catalogue()
            catalogue = CatalogueTargets(
                target_rows, keys, self.catalogue_categories, self.distinct_catalogue_rows(), spread
            )
        return outfit_loss(
            self.config,
            reconstructions,
            self.standardize(targets),
            masked_positions,
            self.logit_scale,
            mse_targets=None if mse_targets is None else self.standardize(mse_targets),
            catalogue=catalogue,
        )


def _output(model: UmBertPreTrainedModel, internal, last_hidden_state, masked_positions, loss) -> UmBertOutput:
    """The model's output in the space of the item embeddings (reconstructions and the masked slots' predictions)."""
    reconstructions = model.unstandardize(internal)
    masked_predictions = None
    if masked_positions is not None:
        masked_predictions = reconstructions[torch.arange(reconstructions.shape[0]), masked_positions]
    return UmBertOutput(
        loss=loss,
        reconstructions=reconstructions,
        last_hidden_state=last_hidden_state,
        masked_predictions=masked_predictions,
    )


class UmBertModel(UmBertPreTrainedModel):
    """umBERT: reconstructs the item embeddings of an outfit given as `inputs_embeds`, one slot per category."""

    def __init__(self, config: UmBertConfig):
        super().__init__(config)
        self.encoder = UmBertEncoder(config)
        self._add_loss_temperature()
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
        check_inputs_embeds(self.config, inputs_embeds)
        internal, last_hidden_state = self.encoder(self.standardize(inputs_embeds), masked_positions)
        loss = None
        if labels is not None and labels.is_floating_point():
            loss = self.compute_loss(internal, labels, masked_positions)
        elif labels is not None:  # catalogue rows
            loss = self.compute_loss(internal, self.catalogue_embeddings[labels], masked_positions, target_rows=labels)
        return _output(self, internal, last_hidden_state, masked_positions, loss)


class WumBertModel(UmBertPreTrainedModel):
    """WumBERT: umBERT over a trainable item table; `input_ids` index the catalogue, whose rows are the table."""

    config_class = WumBertConfig
    base_model_prefix = "wumbert"
    main_input_name = "input_ids"

    def __init__(self, config: WumBertConfig):
        super().__init__(config)
        self.encoder = UmBertEncoder(config)
        self._add_loss_temperature()
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
        check_inputs_embeds(self.config, inputs_embeds)
        internal, last_hidden_state = self.encoder(self.standardize(inputs_embeds), masked_positions)
        loss = None
        if labels is not None:
            rows = None if labels.is_floating_point() else labels
            targets = labels if rows is None else self.item_embeddings(rows)
            # The MSE term does not reach the table through its targets.
            loss = self.compute_loss(
                internal, targets, masked_positions, target_rows=rows, mse_targets=targets.detach()
            )
        return _output(self, internal, last_hidden_state, masked_positions, loss)


__all__ = [
    "UmBertEncoder",
    "UmBertOutput",
    "UmBertPreTrainedModel",
    "UmBertModel",
    "WumBertModel",
    "catalogue_contrastive_loss",
    "contrastive_loss",
    "outfit_loss",
]
