"""The outfit-completion metrics, once: hit rate@k, MRR, FITB accuracy, reconstruction accuracy, compatibility AUC.

Each metric comes with its chance level. The functions take per-example tensors (ranks, correctness, scores) so a
distributed evaluation can gather those first and aggregate once; `OutfitEvaluator` produces them from a predictor.
"""

import math
from collections.abc import Callable, Sequence

import torch

from ..masking import expand_fill_in_the_blank
from ..retrieval import candidate_credit, paired_scores, rank_of_targets

HIT_RATE_KS = (1, 10, 50)
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

    The catalogue embeddings serve both to look up context items (by row) and as retrieval keys, restricted to the
    blank's category, ranked by `distance`. Ties between items (e.g. identical title embeddings) and NaN predictions
    never favour the right item: see `retrieval.rank_of_targets` and `retrieval.candidate_credit`.
    """

    def __init__(self, catalogue_embeddings: torch.Tensor, catalogue_categories: torch.Tensor, distance: str):
        self.embeddings = catalogue_embeddings
        self.categories = catalogue_categories
        self.distance = distance
        self.num_slots = int(catalogue_categories.max().item()) + 1
        self.rows_by_category = [
            torch.nonzero(catalogue_categories == slot).squeeze(1) for slot in range(self.num_slots)
        ]
        # Position of every catalogue row inside its category's key matrix.
        self.position_in_category = torch.empty_like(catalogue_categories)
        for rows in self.rows_by_category:
            self.position_in_category[rows] = torch.arange(rows.numel(), device=rows.device)
        self.category_sizes = torch.tensor(
            [rows.numel() for rows in self.rows_by_category], device=self.embeddings.device
        )

    def _ranks(
        self, predictions: torch.Tensor, target_rows: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(ranks, ties)` of each target among its category's items (one batched search per category)."""
        ranks, ties = torch.empty_like(target_rows), torch.empty_like(target_rows)
        for slot in slots.unique().tolist():
            selected = slots == slot
            keys = self.embeddings[self.rows_by_category[slot]]
            ranks[selected], ties[selected] = rank_of_targets(
                predictions[selected], keys, self.position_in_category[target_rows[selected]], self.distance
            )
        return ranks, ties

    def fill_in_the_blank(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask every slot of every outfit in turn; ranks of the true item (for hit rate@k and MRR)."""
        expanded, masked_positions = expand_fill_in_the_blank(rows)  # (outfits * slots, slots)
        reconstructions = predict(self.embeddings[expanded], masked_positions)
        predictions = reconstructions[torch.arange(expanded.shape[0], device=expanded.device), masked_positions]
        targets = expanded.gather(1, masked_positions[:, None]).squeeze(1)
        ranks, ties = self._ranks(predictions, targets, masked_positions)
        return {"ranks": ranks, "ties": ties, "category_sizes": self.category_sizes[masked_positions]}

    def reconstruction(self, predict: Predictor, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unmasked input: is each slot's nearest catalogue item of its category the input item (ties shared)?"""
        reconstructions = predict(self.embeddings[rows], None)  # (outfits, slots, hidden)
        slots = torch.arange(rows.shape[1], device=rows.device).repeat(rows.shape[0])
        ranks, ties = self._ranks(reconstructions.reshape(-1, reconstructions.shape[-1]), rows.reshape(-1), slots)
        correct = (ranks == 1).double() / (ties + 1).double()
        return {"correct": correct, "chance": 1.0 / self.category_sizes[slots].double()}

    def fitb(
        self,
        predict: Predictor,
        outfit_rows: torch.Tensor,
        blanks: torch.Tensor,
        candidates: torch.Tensor,
        labels: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Pick the candidate nearest to the prediction for the blank; credit 1 / (tied best) when it is the right one."""
        reconstructions = predict(self.embeddings[outfit_rows], blanks)
        predictions = reconstructions[torch.arange(outfit_rows.shape[0], device=outfit_rows.device), blanks]
        candidate_embeddings = self.embeddings[candidates]  # (questions, candidates, hidden)
        scores = paired_scores(predictions[:, None], candidate_embeddings, self.distance)
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
        expanded, masked_positions = expand_fill_in_the_blank(rows)
        reconstructions = predict(self.embeddings[expanded], masked_positions)
        index = torch.arange(expanded.shape[0], device=expanded.device)
        predictions = reconstructions[index, masked_positions]
        target_rows = expanded[index, masked_positions]
        similarity = paired_scores(predictions, self.embeddings[target_rows], self.distance)
        ranks, ties = self._ranks(predictions, target_rows, masked_positions)
        expected_rank = ranks.double() + ties.double() / 2
        surprise = torch.log(expected_rank / self.category_sizes[masked_positions].double())
        return {
            "scores": similarity.view(rows.shape[0], rows.shape[1]).mean(dim=1),
            "rank_scores": -surprise.view(rows.shape[0], rows.shape[1]).mean(dim=1),
        }


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


__all__ = [
    "HIT_RATE_KS",
    "OutfitEvaluator",
    "Predictor",
    "accuracy_metrics",
    "compatibility_metrics",
    "context_mean_predictor",
    "hit_rate_metrics",
    "model_predictor",
    "random_predictor",
    "roc_auc",
]
