"""umBERT and WumBERT model configurations."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.utils import logging

from .categories import DEFAULT_CATEGORIES
from .retrieval import DISTANCES

logger = logging.get_logger(__name__)

LOSS_TYPES = ("mse", "contrastive", "mse+contrastive")
CONTRASTIVE_NEGATIVES = ("batch", "catalogue")


@strict
class UmBertConfig(PreTrainedConfig):
    r"""
    Configuration of [`UmBertModel`]: a BERT-like encoder over one item embedding per outfit slot.

    The defaults follow the original umBERT (hidden size 128 = item-embedding size, 6 layers, 8 heads,
    feed-forward 4 x hidden, decoder MLP hidden 2 x hidden) except `loss_type`, which defaults to the contrastive
    objective: the original MSE objective regresses towards the category mean and ranks the right item at chance.

    Args:
        categories: slot names in outfit order; one MASK token and one decoder per slot.
        hidden_size: size of the encoder (and of the item embeddings, unless `embedding_size` says otherwise).
        embedding_size: size of the item embeddings, when it differs from `hidden_size`: a learned input projection
            maps them to `hidden_size` and the decoders map back, so 1,280-d image features train at hidden 128.
            Default: `hidden_size` (no projection, as in the original).
        num_hidden_layers / num_attention_heads / intermediate_size / hidden_dropout_prob: encoder shape.
        decoder_hidden_size: hidden size of each slot's reconstruction MLP (default 2 x hidden).
        use_category_embeddings: add a learned per-slot embedding to every input.
        loss_type: `"mse"` (reconstruct every slot), `"contrastive"` (InfoNCE of the masked slot against the batch's
            items of the same category) or `"mse+contrastive"`.
        contrastive_temperature: initial InfoNCE temperature; learned when `learn_temperature`.
        contrastive_negatives: `"batch"` (the batch's other targets of the same category) or `"catalogue"` (every
            catalogue item of the blank's category; needs `labels` as catalogue rows). Exact copies of the target are
            never negatives.
        max_catalogue_negatives: with catalogue negatives, a category of more items is represented at each step by
            this many drawn at random (their logits corrected so the loss estimates the full one), so that a step's
            cost does not grow with the catalogue. None: every item, always.
        distance: `"euclidean"` or `"cosine"`, used for retrieval and as the contrastive similarity.
        standardize_embeddings: work internally on embeddings centred on the catalogue mean and divided by their
            overall spread (stored with the catalogue). Item embeddings often share a large common offset (e.g. an
            autoencoder's code); centring keeps the transformer's input and the loss well conditioned. Inputs and
            `reconstructions` stay in the original space, and Euclidean rankings are unchanged by the uniform scale.
        catalogue_size / catalogue_id_length: shapes of the catalogue buffers, kept in sync by `set_catalogue`.
        search_index / search_index_parameters: how the catalogue is searched for suggestions (`complete`, the
            pipeline, the app): `"exact"` (the default and the reference), `"faiss"`, `"auto"` or a FAISS index
            factory string, with FAISS settings such as `"efSearch=256"` (`faiss_index.build_index`). Ranks and
            metrics stay exact. Set with `model.set_search_index`.
        image_encoder / text_encoder / embedding_metadata: where the item embeddings came from (path or Hub id and
            preprocessing), so images can be embedded the same way at completion time.
    """

    model_type = "umbert"

    categories: list[str] | tuple[str, ...] | None = None
    hidden_size: int = 128
    embedding_size: int | None = None
    num_hidden_layers: int = 6
    num_attention_heads: int = 8
    intermediate_size: int | None = None
    hidden_dropout_prob: float | int = 0.1
    decoder_hidden_size: int | None = None
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    use_category_embeddings: bool = False
    loss_type: str = "contrastive"
    contrastive_temperature: float = 0.05
    learn_temperature: bool = True
    contrastive_negatives: str = "batch"
    max_catalogue_negatives: int | None = 4096
    distance: str = "euclidean"
    standardize_embeddings: bool = True
    catalogue_size: int = 0
    catalogue_id_length: int = 1
    search_index: str = "exact"
    search_index_parameters: str | None = None
    image_encoder: str | None = None
    text_encoder: str | None = None
    embedding_metadata: dict | None = None

    def __post_init__(self, **kwargs):
        self.categories = list(DEFAULT_CATEGORIES if self.categories is None else self.categories)
        if self.intermediate_size is None:
            self.intermediate_size = 4 * self.hidden_size
        if self.embedding_size is None:
            self.embedding_size = self.hidden_size
        if self.decoder_hidden_size is None:
            self.decoder_hidden_size = 2 * self.hidden_size
        self._check_values()
        super().__post_init__(**kwargs)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    def _check_values(self) -> None:
        """Raise a `ValueError` naming the first invalid value, at construction time."""
        if len(self.categories) == 0:
            raise ValueError("`categories` must name at least one slot, got an empty list.")
        if not all(isinstance(name, str) and name for name in self.categories):
            raise ValueError(f"`categories` must be non-empty strings, got {self.categories!r}.")
        duplicates = sorted({name for name in self.categories if self.categories.count(name) > 1})
        if duplicates:
            raise ValueError(f"`categories` must be unique, got duplicates {duplicates} in {self.categories!r}.")
        for name in ("hidden_size", "embedding_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)}.")
        if self.decoder_hidden_size <= 0:
            raise ValueError(f"`decoder_hidden_size` must be positive, got {self.decoder_hidden_size}.")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"`hidden_size` ({self.hidden_size}) must be a multiple of `num_attention_heads` "
                f"({self.num_attention_heads})."
            )
        if not 0.0 <= self.hidden_dropout_prob < 1.0:
            raise ValueError(f"`hidden_dropout_prob` must be in [0, 1), got {self.hidden_dropout_prob}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"Unknown `loss_type` {self.loss_type!r}; expected one of {LOSS_TYPES}.")
        if self.contrastive_negatives not in CONTRASTIVE_NEGATIVES:
            raise ValueError(
                f"Unknown `contrastive_negatives` {self.contrastive_negatives!r}; expected one of {CONTRASTIVE_NEGATIVES}."
            )
        if self.max_catalogue_negatives is not None and (
            isinstance(self.max_catalogue_negatives, bool)
            or not isinstance(self.max_catalogue_negatives, int)
            or self.max_catalogue_negatives < 1
        ):
            raise ValueError(
                f"`max_catalogue_negatives` must be a positive integer or None, got {self.max_catalogue_negatives!r}."
            )
        if self.distance not in DISTANCES:
            raise ValueError(f"Unknown `distance` {self.distance!r}; expected one of {DISTANCES}.")
        if self.hidden_act not in ("gelu", "relu"):
            raise ValueError(f"Unknown `hidden_act` {self.hidden_act!r}; expected 'gelu' or 'relu'.")
        if not 0 < self.contrastive_temperature < float("inf"):  # also refuses NaN
            raise ValueError(f"`contrastive_temperature` must be positive, got {self.contrastive_temperature}.")
        if not isinstance(self.search_index, str) or not self.search_index.strip():
            raise ValueError(
                f"`search_index` must be 'exact', 'faiss', 'auto' or a FAISS factory string, got {self.search_index!r}."
            )
        if self.search_index_parameters is not None and not isinstance(self.search_index_parameters, str):
            raise ValueError(
                f"`search_index_parameters` must be a string such as 'efSearch=256', got {self.search_index_parameters!r}."
            )
        if self.catalogue_size < 0 or self.catalogue_id_length < 1:
            raise ValueError(
                f"Invalid catalogue shape: catalogue_size={self.catalogue_size}, "
                f"catalogue_id_length={self.catalogue_id_length}."
            )


@strict
class WumBertConfig(UmBertConfig):
    r"""
    Configuration of [`WumBertModel`]: umBERT over a trainable item-embedding table (`input_ids` index the catalogue).

    Same fields as [`UmBertConfig`]; the table has `catalogue_size` rows, initialised from image embeddings by
    [`WumBertModel.from_item_embeddings`].
    """

    model_type = "wumbert"


__all__ = ["UmBertConfig", "WumBertConfig", "CONTRASTIVE_NEGATIVES", "DEFAULT_CATEGORIES", "LOSS_TYPES", "DISTANCES"]
