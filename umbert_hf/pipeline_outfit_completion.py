"""The `outfit-completion` pipeline: suggest catalogue items for the blank slot of outfits, in the `pipeline()` API.

This module travels with a saved umBERT/WumBERT folder (next to `modeling_umbert.py`), so
`pipeline("outfit-completion", model=folder_or_repo, trust_remote_code=True)` works without umbert-hf installed. It
imports nothing of the package: validation, embedding and retrieval are the model's own (`outfit_input`,
`predict_masked`, `retrieve`), so bad outfits get the same `ValueError`s as `model.complete`.
"""

import types
from collections.abc import Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator
from transformers.utils import logging

logger = logging.get_logger(__name__)

PIPELINE_TASK = "outfit-completion"
DEFAULT_TOP_K = 10


@dataclass
class _NumberedOutfit:
    """One outfit of a list with its position, so errors name the outfit as `model.complete` does."""

    number: int
    outfit: Any


def _stack_outfits(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate preprocessed outfits: every outfit has the same (1, slots, hidden) shape, so nothing is padded."""
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}


def _title_lookup(titles: Any) -> dict[str, str]:
    """Item id -> title from a mapping or from a catalogue table with `item_id` and `title` columns."""
    if isinstance(titles, Mapping):
        return dict(titles)
    if {"item_id", "title"} <= set(getattr(titles, "column_names", ())):
        return dict(zip(titles["item_id"], titles["title"]))
    raise ValueError(
        "`titles` must map item ids to titles, or be a catalogue table with `item_id` and `title` columns "
        f"(e.g. `load_dataset(dataset, 'catalogue')['train']`), got {type(titles).__name__}."
    )


class OutfitCompletionPipeline(Pipeline):
    """Top-k catalogue items for the blank slot of each outfit, from an umBERT or WumBERT model.

    Input: one outfit, a dict slot -> item id, photo (PIL image, `pathlib.Path` or `{"image": path}`; a bare string is
    always an item id) or embedding tensor, with exactly one
    slot set to None (the blank), or a list of them. Output, per outfit: a list of `{"item_id", "score"}` dicts
    (plus `"title"` when `titles` is given), best first, as `model.complete` returns them.

    Parameters (at construction or per call):
        top_k: number of suggestions per outfit (default 10).
        titles: item id -> title mapping, or the dataset's `catalogue` split; adds `"title"` (None when unknown).
    """

    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False

    def _sanitize_parameters(self, top_k: int | None = None, titles: Any = None, **kwargs):
        if kwargs:
            raise ValueError(
                f"Unknown parameters {sorted(kwargs)}; the outfit-completion pipeline takes `top_k` and `titles`."
            )
        forward_params, postprocess_params = {}, {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"`top_k` must be at least 1, got {top_k}.")
            forward_params["top_k"] = top_k
        if titles is not None:
            postprocess_params["titles"] = _title_lookup(titles)
        return {}, forward_params, postprocess_params

    def __call__(self, outfits: Mapping[str, Any] | Iterable[Mapping[str, Any]], **kwargs) -> list:
        """Complete one outfit (returns its suggestions) or a list of outfits (returns one list per outfit).

        `batch_size` runs that many outfits through the model at once; answers do not depend on it.
        """
        if isinstance(outfits, (list, tuple)):
            if len(outfits) == 0:
                return []
            outfits = [_NumberedOutfit(number, outfit) for number, outfit in enumerate(outfits)]
        elif isinstance(outfits, types.GeneratorType):
            outfits = (_NumberedOutfit(number, outfit) for number, outfit in enumerate(outfits))
        return super().__call__(outfits, **kwargs)

    def preprocess(self, outfit: Mapping[str, Any] | _NumberedOutfit) -> dict[str, torch.Tensor]:
        number = 0
        if isinstance(outfit, _NumberedOutfit):
            number, outfit = outfit.number, outfit.outfit
        if not isinstance(outfit, Mapping):
            raise ValueError(
                f"Outfit {number}: expected a dict slot -> item id, image, embedding or None, got {type(outfit).__name__}."
            )
        inputs_embeds, blank = self.model.outfit_input(outfit, number)
        return {
            "inputs_embeds": inputs_embeds.unsqueeze(0),  # (1, slots, hidden)
            "masked_positions": torch.tensor([blank], dtype=torch.long, device=inputs_embeds.device),
        }

    def _forward(self, model_inputs: dict[str, torch.Tensor], top_k: int = DEFAULT_TOP_K) -> dict[str, torch.Tensor]:
        blanks = model_inputs["masked_positions"]
        predictions = self.model.predict_masked(model_inputs["inputs_embeds"], blanks)  # (batch, hidden)
        # `pad`: an outfit's answer does not depend on the other outfits of its batch; rows of -1 pad shorter answers.
        scores, rows = self.model.retrieve(predictions, blanks, top_k, pad=True)
        return {"scores": scores, "rows": rows}  # (batch, top_k) each

    def postprocess(self, model_outputs: dict[str, torch.Tensor], titles: Mapping[str, str] | None = None) -> list:
        item_ids = self.model.catalogue_item_id_list
        suggestions = [
            {"item_id": item_ids[row], "score": score}
            for row, score in zip(model_outputs["rows"][0].tolist(), model_outputs["scores"][0].tolist())
            if row >= 0
        ]
        if titles is not None:
            for suggestion in suggestions:
                suggestion["title"] = titles.get(suggestion["item_id"])
        return suggestions

    def get_iterator(
        self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params
    ):
        """`Pipeline.get_iterator` with a collate function that stacks outfits: there is no tokenizer to pad with."""
        if isinstance(inputs, Sized):
            dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        else:
            dataset = PipelineIterator(inputs, self.preprocess, preprocess_params)
            num_workers = min(num_workers, 1)  # an iterable split over workers would repeat its items
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_stack_outfits)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def custom_pipelines_config() -> dict[str, dict[str, Any]]:
    """The `config.custom_pipelines` entry that lets `pipeline()` load this class from a saved folder or Hub repo."""
    module = OutfitCompletionPipeline.__module__.rsplit(".", 1)[-1]
    return {PIPELINE_TASK: {"impl": f"{module}.{OutfitCompletionPipeline.__name__}", "pt": ["AutoModel"]}}


__all__ = ["DEFAULT_TOP_K", "PIPELINE_TASK", "OutfitCompletionPipeline", "custom_pipelines_config"]
