"""The outfit-completion metrics, once: hit rate@k, MRR, FITB accuracy, reconstruction accuracy, compatibility AUC.

Each metric comes with its chance level. The functions take per-example tensors (ranks, correctness, scores) so a
distributed evaluation can gather those first and aggregate once; `OutfitEvaluator` produces them from a predictor.
"""

import math
from collections.abc import Callable, Sequence

import torch

from ..masking import expand_fill_in_the_blank
from ..retrieval import CategoryIndex, candidate_credit

HIT_RATE_KS = (1, 10, 50)
# `index_recall@10`: how much of the exact top 10 an approximate search index (FAISS) finds.
INDEX_RECALL_K = 10
EULER_GAMMA = 0.5772156649015329

# predictor(inputs_embeds (batch, slots, hidden), masked_positions (batch,) or None) -> reconstructions (batch, slots, hidden)
Predictor = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _harmonic(n: torch.Tensor) -> torch.Tensor:
    """H_n = 1 + 1/2 + ... + 1/n (0 for n = 0), for float tensors."""
    return torch.special.digamma(n + 1) + EULER_GAMMA


def hit_rate_metrics(
    ranks: torch.Tensor,
    category_sizes: torch.Tensor,
    ks: Sequence[int] = HIT_RATE_KS,
    prefix: str = "",
    ties: torch.Tensor | None = None,
) -> dict[str, float]:
    """`hit_rate@k` and `mrr` from 1-based ranks, with chance levels for a uniformly random ranking.

    `ranks[i]` counts the keys strictly better than the target, plus one; `ties[i]` (default 0) the other keys that
    score exactly as well (see `retrieval.rank_of_targets`). The metrics are expectations under random tie-breaking,
    so a catalogue of duplicates gives a random predictor exactly chance. `category_sizes[i]` is the number of
    candidates query i was ranked among: chance hit rate@k is mean(min(k, n) / n) and chance MRR is mean(H_n / n).
    """
    ranks, sizes = ranks.double(), category_sizes.double()
    tied = torch.zeros_like(ranks) if ties is None else ties.double()
    better = ranks - 1
    metrics: dict[str, float] = {}
    for k in ks:
        hits = (k - better).clamp(min=0).clamp(max=tied + 1) / (tied + 1)
        metrics[f"{prefix}hit_rate@{k}"] = hits.mean().item()
        metrics[f"{prefix}hit_rate@{k}_chance"] = (sizes.clamp(max=k) / sizes).mean().item()
    # Exact 1 / rank without ties; the mean of 1/r over the tied positions otherwise.
    reciprocal = torch.where(tied == 0, 1.0 / ranks, (_harmonic(better + tied + 1) - _harmonic(better)) / (tied + 1))
    metrics[f"{prefix}mrr"] = reciprocal.mean().item()
    metrics[f"{prefix}mrr_chance"] = (_harmonic(sizes) / sizes).mean().item()
    return metrics


def index_recall(exact_scores: torch.Tensor, found_scores: torch.Tensor) -> torch.Tensor:
    """(queries,) share of each query's exact top k that an approximate index found, ties counted as found.

    `exact_scores` (queries, k) are the exact top-k scores (NaN pads a category smaller than k); `found_scores` the
    exact scores of the rows the index returned (NaN where it returned none). A returned row counts when it scores at
    least the exact k-th best (within rounding): items tied at the boundary are interchangeable, so no ordering of
    ties favours either search. A query with nothing to find (a NaN prediction) counts 1.
    """
    valid = ~exact_scores.isnan()
    wanted = valid.sum(dim=1)
    kth = torch.where(valid, exact_scores, torch.inf).amin(dim=1)
    threshold = kth - 1e-5 * (1 + kth.abs())
    found = (found_scores >= threshold[:, None]).sum(dim=1)  # NaN compares False
    return torch.where(wanted > 0, found.clamp(max=wanted) / wanted.clamp(min=1), 1.0).double()


def accuracy_metrics(correct: torch.Tensor, chance: torch.Tensor, name: str) -> dict[str, float]:
    """Mean correctness (0/1, or fractional credit for ties), with the mean chance of each question."""
    return {name: correct.double().mean().item(), f"{name}_chance": chance.double().mean().item()}


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN when a class is absent."""
    # NaN scores (a diverged model) count as the lowest score, so they can never look compatible.
    scores = scores.double().flatten()
    scores = torch.where(scores.isnan(), -math.inf, scores)
    labels = labels.flatten().bool()
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = scores.argsort()
    sorted_scores = scores[order]
    ranks = torch.empty_like(scores)
    ranks[order] = torch.arange(1, scores.numel() + 1, dtype=torch.double)
    # Average the ranks of tied scores.
    unique, inverse, counts = torch.unique(sorted_scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    average = ends - (counts.double() - 1) / 2
    ranks[order] = average[inverse]
    rank_sum = ranks[labels].sum().item()
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def compatibility_metrics(
    scores: torch.Tensor, labels: torch.Tensor, rank_scores: torch.Tensor | None = None
) -> dict[str, float]:
    """`compatibility_auc` of the distance scores and, given `rank_scores`, `compatibility_rank_auc` (chance 0.5)."""
    metrics = {"compatibility_auc": roc_auc(scores, labels), "compatibility_auc_chance": 0.5}
    if rank_scores is not None:
        metrics.update(compatibility_rank_auc=roc_auc(rank_scores, labels), compatibility_rank_auc_chance=0.5)
    return metrics


class OutfitEvaluator:
    """Per-example evaluation quantities against one catalogue (embeddings and slot index of every item).

    The catalogue embeddings serve both to look up context items (by row) and as retrieval keys: every score and rank
    comes from one `retrieval.CategoryIndex` (items of the blank's category, ranked by `distance`), so ties between
    items (e.g. identical title embeddings) and NaN predictions never favour the right item, here as everywhere.
    """

    def __init__(
        self,
        catalogue_embeddings: torch.Tensor,
        catalogue_categories: torch.Tensor,
        distance: str,
        search_index: CategoryIndex | None = None,
    ):
        """`search_index`: an approximate index over the same catalogue rows (`faiss_index.build_index`); the
        metrics stay exact, and `retrieval_ranks` adds each query's `index_recall` of the exact top 10."""
        self.embeddings = catalogue_embeddings
        self.distance = distance
        self.index = CategoryIndex(catalogue_embeddings, catalogue_categories, distance)
        self.category_sizes = self.index.sizes  # (slots,)
        self.search_index = search_index

    def _masked_predictions(
        self, predict: Predictor, rows: torch.Tensor, masked_positions: torch.Tensor
    ) -> torch.Tensor:
        """(outfits, hidden) prediction of each outfit's masked slot."""
        reconstructions = predict(self.embeddings[rows], masked_positions)
        return reconstructions[torch.arange(rows.shape[0], device=rows.device), masked_positions]

    def _fill_in_the_blank(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask every slot of every outfit in turn: the predictions, and the rank and score of each true item."""
        expanded, masked_positions = expand_fill_in_the_blank(rows)  # (outfits * slots, slots)
        predictions = self._masked_predictions(predict, expanded, masked_positions)
        targets = expanded.gather(1, masked_positions[:, None]).squeeze(1)
        ranks, ties = self.index.rank(predictions, masked_positions, targets)
        return {
            "ranks": ranks,
            "ties": ties,
            "category_sizes": self.category_sizes[masked_positions],
            "similarities": self.index.score(predictions, targets),
            "predictions": predictions,
            "masked_positions": masked_positions,
        }

    def retrieval_ranks(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask every slot of every outfit in turn; ranks of the true item (for hit rate@k and MRR) and its score
        (`similarities`, from which `compatibility_from_ranks` scores the outfits without ranking them again)."""
        fitb = self._fill_in_the_blank(predict, rows)
        predictions, masked_positions = fitb.pop("predictions"), fitb.pop("masked_positions")
        quantities = fitb
        if self.search_index is not None:
            k = INDEX_RECALL_K
            exact_scores, _ = self.index.top_k(predictions, masked_positions, k, pad=True)
            _, found_rows = self.search_index.top_k(predictions, masked_positions, k, pad=True)
            found = found_rows >= 0
            found_scores = exact_scores.new_full(found_rows.shape, float("nan"))
            queries = predictions[:, None].expand(-1, found_rows.shape[1], -1)
            found_scores[found] = self.index.score(queries[found], found_rows[found]).to(found_scores.dtype)
            quantities["index_recall"] = index_recall(exact_scores, found_scores)
        return quantities

    def reconstruction(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unmasked input: is each slot's nearest catalogue item of its category the input item (ties shared)?"""
        reconstructions = predict(self.embeddings[rows], None)  # (outfits, slots, hidden)
        slots = torch.arange(rows.shape[1], device=rows.device).repeat(rows.shape[0])
        correct = self.index.top_one_credit(
            reconstructions.reshape(-1, reconstructions.shape[-1]), slots, rows.reshape(-1)
        )
        return {"correct": correct, "chance": 1.0 / self.category_sizes[slots].double()}

    def multiple_choice(
        self,
        predict: Predictor,
        outfit_rows: torch.Tensor,
        blanks: torch.Tensor,
        candidates: torch.Tensor,
        labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Pick the candidate nearest to the prediction for the blank; credit 1 / (tied best) when it is the right one."""
        predictions = self._masked_predictions(predict, outfit_rows, blanks)
        scores = self.index.score(predictions[:, None], candidates)  # (questions, candidates)
        candidate_embeddings = self.embeddings[candidates]  # (questions, candidates, hidden)
        right_embeddings = candidate_embeddings.gather(
            1, labels[:, None, None].expand(-1, 1, candidate_embeddings.shape[-1])
        )
        same_as_right = (candidate_embeddings == right_embeddings).all(dim=-1)
        chance = torch.full_like(labels, 1, dtype=torch.double) / candidates.shape[1]
        return {"correct": candidate_credit(scores, labels, same_as_right), "chance": chance}

    def compatibility(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Two outfit scores from the masked-slot predictions of every slot.

        `scores` (the shared contract): minus the mean distance between each prediction and the outfit's item.
        `rank_scores`: the mean of -log(expected rank / category size) of the item among its category. A distance is
        not comparable across outfits once the contrastive objective has trained the model (only the order of the
        candidates for one prediction is), while the item's rank among its category is.
        """
        fitb = self._fill_in_the_blank(predict, rows)
        return compatibility_from_ranks(
            fitb["similarities"], fitb["ranks"], fitb["ties"], fitb["category_sizes"], rows.shape[1]
        )


def compatibility_from_ranks(
    similarities: torch.Tensor, ranks: torch.Tensor, ties: torch.Tensor, category_sizes: torch.Tensor, num_slots: int
) -> dict[str, torch.Tensor]:
    """`OutfitEvaluator.compatibility`'s two outfit scores from the fill-in-the-blank quantities of every slot of
    every outfit (outfit-major, as `retrieval_ranks` gives them): an outfit that was ranked for hit rate@k and MRR
    needs no second ranking to be scored for compatibility."""
    expected_rank = ranks.double() + ties.double() / 2
    surprise = torch.log(expected_rank / category_sizes.double())
    return {
        "scores": similarities.reshape(-1, num_slots).mean(dim=1),
        "rank_scores": -surprise.reshape(-1, num_slots).mean(dim=1),
    }


def matching_rows(rows: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(len(rows),) index of a row of `reference` equal to each row of `rows` (an outfit with the same items), or -1."""
    if rows.shape[0] == 0 or reference.shape[0] == 0:
        return torch.full((rows.shape[0],), -1, dtype=torch.long, device=rows.device)
    _, group = torch.unique(torch.cat([reference, rows]), dim=0, return_inverse=True)
    position = torch.full((int(group.max()) + 1,), -1, dtype=torch.long, device=rows.device)
    position[group[: reference.shape[0]]] = torch.arange(reference.shape[0], device=rows.device)
    return position[group[reference.shape[0] :]]


def model_predictor(model: torch.nn.Module) -> Predictor:
    """Predictor of an umBERT/WumBERT model (or a DDP/compiled wrapper of one), through `inputs_embeds`."""

    def predict(inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
        return model(inputs_embeds=inputs_embeds, masked_positions=masked_positions).reconstructions

    return predict


def context_mean_predictor() -> Predictor:
    """Baseline: every slot is predicted as the mean of the other (non-masked) slots of its outfit."""

    def predict(inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
        batch_size, num_slots, _ = inputs_embeds.shape
        visible = torch.ones(batch_size, num_slots, device=inputs_embeds.device)
        if masked_positions is not None:
            visible[torch.arange(batch_size), masked_positions] = 0
        total = (inputs_embeds * visible[..., None]).sum(dim=1, keepdim=True)  # (batch, 1, hidden)
        # For slot s: the visible slots other than s.
        others = total - inputs_embeds * visible[..., None]
        count = (visible.sum(dim=1, keepdim=True) - visible).clamp(min=1)[..., None]
        return others / count

    return predict


def random_predictor(catalogue_embeddings: torch.Tensor, seed: int = 0) -> Predictor:
    """Baseline: random vectors with the catalogue's mean and spread, so rankings are random (seeded)."""
    mean, std = catalogue_embeddings.mean(dim=0), catalogue_embeddings.std(dim=0)
    generator = torch.Generator(device=catalogue_embeddings.device).manual_seed(seed)

    def predict(inputs_embeds: torch.Tensor, masked_positions: torch.Tensor | None) -> torch.Tensor:
        noise = torch.randn(inputs_embeds.shape, generator=generator, device=inputs_embeds.device)
        return mean + std * noise

    return predict


# Metric names. A key of a metrics file reads `[<split prefix>]<metric>[_chance[_<baseline>]]`: `val_mrr`,
# `test_hit_rate@10`, `fitb_accuracy_chance`, `val_accuracy_chance_uniform`. Every reader of such names parses them
# with the functions below.
CHANCE_SUFFIX = "_chance"
VALIDATION_PREFIX = "val_"
SPLIT_PREFIXES = {VALIDATION_PREFIX: "validation", "validation_": "validation", "eval_": "validation", "test_": "test"}


def greater_is_better(metric_name: str) -> bool:
    """Whether a larger value of a metric is better: true of every metric but a loss (a name containing `loss`)."""
    return "loss" not in metric_name


def is_chance_level(metric_name: str) -> bool:
    """Whether a name is a chance level (`<metric>_chance` or `<metric>_chance_<baseline>`) rather than a result."""
    return metric_name.endswith(CHANCE_SUFFIX) or f"{CHANCE_SUFFIX}_" in metric_name


def without_chance_levels(metrics: dict[str, float]) -> dict[str, float]:
    """The results among `metrics`: every entry but the chance levels."""
    return {name: value for name, value in metrics.items() if not is_chance_level(name)}


def chance_levels_by_metric(metrics: dict[str, float]) -> dict[str, float]:
    """`{metric: chance}` from the `<metric>_chance` entries of `metrics` (baseline-named ones are left out)."""
    return {name.removesuffix(CHANCE_SUFFIX): value for name, value in metrics.items() if name.endswith(CHANCE_SUFFIX)}


def add_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """Every name with `prefix` in front, e.g. a split prefix (`"val_"`, `"test_"`)."""
    return {f"{prefix}{name}": value for name, value in metrics.items()}


def split_and_metric(metric_name: str, default_split: str) -> tuple[str, str]:
    """`(split, metric)` of a name: `("validation", "mrr")` for `val_mrr` (or `validation_mrr`, `eval_mrr`),
    `("test", "mrr")` for `test_mrr`, and `(default_split, name)` for a name without a split prefix."""
    for prefix, split in SPLIT_PREFIXES.items():
        if metric_name.startswith(prefix):
            return split, metric_name[len(prefix) :]
    return default_split, metric_name


__all__ = [
    "CHANCE_SUFFIX",
    "HIT_RATE_KS",
    "OutfitEvaluator",
    "Predictor",
    "SPLIT_PREFIXES",
    "VALIDATION_PREFIX",
    "accuracy_metrics",
    "add_prefix",
    "chance_levels_by_metric",
    "compatibility_from_ranks",
    "compatibility_metrics",
    "context_mean_predictor",
    "greater_is_better",
    "hit_rate_metrics",
    "is_chance_level",
    "matching_rows",
    "model_predictor",
    "random_predictor",
    "roc_auc",
    "split_and_metric",
    "without_chance_levels",
]
