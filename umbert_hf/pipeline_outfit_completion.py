"""The `outfit-completion` pipeline: suggest catalogue items for the blank slot of outfits, or score complete outfits,
in the `pipeline()` API.

This module travels with a saved umBERT/WumBERT folder (next to `modeling_umbert.py`), so
`pipeline("outfit-completion", model=folder_or_repo, trust_remote_code=True)` works without umbert-hf installed. It
imports nothing of the package but `retrieval` (which travels too): validation, embedding, retrieval and scoring are
the model's own (`outfit_input`,
`predict_masked`, `suggest`, `scoring_input`, `score_outfit_inputs`), so bad outfits get the same `ValueError`s as
`model.complete` and `model.score_outfit`.
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

from .retrieval import check_diversity

logger = logging.get_logger(__name__)

PIPELINE_TASK = "outfit-completion"
DEFAULT_TOP_K = 10
SCORE_OUTFIT = -1  # the `masked_positions` of an outfit with no blank: it is scored, not completed


@dataclass
class _NumberedOutfit:
    """One outfit of a list with its position, so errors name the outfit as `model.complete` does."""

    number: int
    outfit: Any


def _stack_outfits(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Collate preprocessed outfits: every outfit has the same (1, slots, hidden) shape, so nothing is padded."""
    return {key: torch.cat([item[key] for item in items]) for key in items[0]}


def _add_titles(suggestions: list[dict[str, Any]], titles: Mapping[str, str] | None) -> None:
    """Add `"title"` (None when unknown) to each suggestion, when `titles` is given."""
    if titles is not None:
        for suggestion in suggestions:
            suggestion["title"] = titles.get(suggestion["item_id"])


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
    """Top-k catalogue items for the blank slot of each outfit, or the score of a complete outfit, from an umBERT or
    WumBERT model.

    Input: one outfit, a dict slot -> item id, photo (PIL image, `pathlib.Path` or `{"image": path}`; a bare string is
    always an item id) or embedding tensor, or a list of them.
    - An outfit with exactly one slot set to None (the blank) is completed: its output is a list of
      `{"item_id", "score"}` dicts (plus `"title"` when `titles` is given), best first, as `model.complete` returns.
    - An outfit with every slot given is scored: its output is the dict `model.score_outfit` returns (the outfit's
      `score`, each slot's percentile, the `weakest` slot and `top_k` replacements for it, titled like suggestions).
    One list may mix both; like `fill-mask`, the input decides the shape of each answer.

    Parameters (at construction or per call):
        top_k: number of suggestions per outfit, or of replacements for a scored outfit's weakest slot (default 10).
        diversity: in [0, 1]; above 0 the suggestions are re-ranked by maximal marginal relevance (see
            `model.complete`). Default 0: by relevance.
        titles: item id -> title mapping, or the dataset's `catalogue` split; adds `"title"` (None when unknown).
    """

    _load_tokenizer = False
    _load_feature_extractor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False

    def _sanitize_parameters(
        self, top_k: int | None = None, titles: Any = None, diversity: float | None = None, **kwargs
    ):
        if kwargs:
            raise ValueError(
                f"Unknown parameters {sorted(kwargs)}; the outfit-completion pipeline takes `top_k`, `diversity` and "
                "`titles`."
            )
        forward_params, postprocess_params = {}, {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"`top_k` must be at least 1, got {top_k}.")
            forward_params["top_k"] = top_k
            postprocess_params["top_k"] = top_k
        if diversity is not None:
            forward_params["diversity"] = check_diversity(diversity)
        if titles is not None:
            postprocess_params["titles"] = _title_lookup(titles)
        return {}, forward_params, postprocess_params

    def __call__(self, outfits: Mapping[str, Any] | Iterable[Mapping[str, Any]], **kwargs) -> list:
        """Complete or score one outfit (returns its answer) or a list of outfits (returns one answer per outfit).

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
        slots = self.model.config.categories
        if all(outfit.get(slot) is not None for slot in slots):  # nothing blank: score the outfit
            inputs_embeds, own_rows = self.model.scoring_input(outfit, number)
            blank = SCORE_OUTFIT
        else:
            inputs_embeds, blank = self.model.outfit_input(outfit, number)
            own_rows = torch.full((len(slots),), -1, dtype=torch.long)
        return {
            "inputs_embeds": inputs_embeds.unsqueeze(0),  # (1, slots, hidden)
            "masked_positions": torch.tensor([blank], dtype=torch.long, device=inputs_embeds.device),
            "own_rows": own_rows.unsqueeze(0),  # (1, slots): catalogue rows of a scored outfit's items given by id
        }

    def _forward(
        self, model_inputs: dict[str, torch.Tensor], top_k: int = DEFAULT_TOP_K, diversity: float = 0.0
    ) -> dict[str, torch.Tensor]:
        """Suggestions for the outfits with a blank and scores for the complete ones, each kind in one batch; every
        output has one row per outfit (NaN and -1 in the rows of the other kind)."""
        inputs, blanks = model_inputs["inputs_embeds"], model_inputs["masked_positions"]
        batch, slots = model_inputs["own_rows"].shape
        nan = float("nan")
        outputs = {  # on the CPU, where the pipeline moves every output
            "masked_positions": blanks.cpu(),
            "own_rows": model_inputs["own_rows"].cpu(),
            "scores": torch.full((batch, top_k), nan),
            "rows": torch.full((batch, top_k), -1, dtype=torch.long),
            "percentile": torch.full((batch, slots), nan, dtype=torch.float64),
            "rank": torch.full((batch, slots), nan, dtype=torch.float64),
            "candidates": torch.zeros((batch, slots), dtype=torch.long),
            "weakest": torch.zeros(batch, dtype=torch.long),
            "replacement_scores": torch.full((batch, top_k + 1), nan),
            "replacement_rows": torch.full((batch, top_k + 1), -1, dtype=torch.long),
        }
        completing = blanks >= 0
        answers = []  # (which outfits, their outputs)
        if bool(completing.any()):
            predictions = self.model.predict_masked(inputs[completing], blanks[completing])  # (outfits, hidden)
            # `pad` (in `suggest`): an answer never depends on the other outfits of its batch; -1 pads short ones.
            scores, rows = self.model.suggest(predictions, blanks[completing], top_k, diversity)
            answers.append((completing, {"scores": scores, "rows": rows}))
        if not bool(completing.all()):
            scoring = ~completing
            scored = self.model.score_outfit_inputs(inputs[scoring], model_inputs["own_rows"][scoring], top_k)
            answers.append((scoring, {key: value for key, value in scored.items() if key != "own_rows"}))
        for which, answer in answers:
            which = which.cpu()
            for key, value in answer.items():
                value = value.to("cpu", outputs[key].dtype)
                if value.dim() == 1:
                    outputs[key][which] = value
                else:
                    outputs[key][which, : value.shape[1]] = value
        return outputs

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        titles: Mapping[str, str] | None = None,
        top_k: int = DEFAULT_TOP_K,
    ) -> list | dict:
        if int(model_outputs["masked_positions"][0]) == SCORE_OUTFIT:
            result = self.model.outfit_score_result(model_outputs, 0, top_k)
            _add_titles(result["weakest"]["replacements"], titles)
            return result
        item_ids = self.model.catalogue_item_id_list
        suggestions = [
            {"item_id": item_ids[row], "score": score}
            for row, score in zip(model_outputs["rows"][0].tolist(), model_outputs["scores"][0].tolist())
            if row >= 0
        ]
        _add_titles(suggestions, titles)
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
