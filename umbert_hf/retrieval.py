"""Exact batched top-k retrieval by matrix products: the one retrieval routine of the package."""

from dataclasses import dataclass

import torch

DISTANCES = ("euclidean", "cosine")
# Largest (queries x keys) score block computed at once: 2**24 floats = 64 MiB.
DEFAULT_MAX_BLOCK_ELEMENTS = 1 << 24


def _check_inputs(queries: torch.Tensor, keys: torch.Tensor, k: int, distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; expected one of {DISTANCES}.")
    if queries.dim() != 2 or keys.dim() != 2:
        raise ValueError(
            f"`queries` and `keys` must be 2-D, got shapes {tuple(queries.shape)} and {tuple(keys.shape)}."
        )
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(f"Embedding sizes differ: queries have {queries.shape[1]}, keys have {keys.shape[1]}.")
    if keys.shape[0] == 0:
        raise ValueError("`keys` is empty: there is nothing to retrieve from.")
    if k < 1:
        raise ValueError(f"`k` must be at least 1, got {k}.")


def _ranking_scores(queries: torch.Tensor, keys: torch.Tensor, key_bias: torch.Tensor | None) -> torch.Tensor:
    """Scores that rank keys like the distance does: q.k for cosine, 2 q.k - |k|^2 for Euclidean.

    The query's own norm is constant along a row, so Euclidean ranking needs only the key norms (one fused addmm).
    """
    if key_bias is None:
        return queries @ keys.T
    return torch.addmm(key_bias, queries, keys.T, alpha=2.0)  # (queries, keys)


def _merge_top_k(
    best_scores: torch.Tensor | None, best_indices: torch.Tensor | None, scores: torch.Tensor, offset: int, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k of one key block merged with the running top-k of the previous blocks."""
    block_scores, block_indices = scores.topk(min(k, scores.shape[1]), dim=1)
    block_indices = block_indices + offset
    if best_scores is None:
        return block_scores, block_indices
    merged_scores = torch.cat([best_scores, block_scores], dim=1)
    merged_indices = torch.cat([best_indices, block_indices], dim=1)
    top_scores, order = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
    return top_scores, merged_indices.gather(1, order)


@dataclass
class PreparedKeys:
    """Keys ready for repeated searches: unit-normalised for cosine, with -|k|^2 precomputed for Euclidean."""

    keys: torch.Tensor
    key_bias: torch.Tensor | None
    distance: str


def prepare_keys(keys: torch.Tensor, distance: str = "euclidean") -> PreparedKeys:
    """Precompute what every search over `keys` needs, so a catalogue searched many times pays for it once."""
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; expected one of {DISTANCES}.")
    if distance == "cosine":
        return PreparedKeys(torch.nn.functional.normalize(keys, dim=1), None, distance)
    return PreparedKeys(keys, -keys.pow(2).sum(dim=1), distance)


def top_k(
    queries: torch.Tensor,
    keys: torch.Tensor | PreparedKeys,
    k: int,
    distance: str = "euclidean",
    max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k nearest keys of each query, best first.

    Args:
        queries: (num_queries, dim) tensor.
        keys: (num_keys, dim) tensor, or `prepare_keys(keys, distance)` to reuse the key norms across calls.
        k: number of neighbours; clipped to `num_keys`.
        distance: `"euclidean"` or `"cosine"`.
        max_block_elements: bound on the size of each (queries x keys) score block, so memory stays bounded for
            catalogues of hundreds of thousands of items.

    Returns:
        `(scores, indices)`, both (num_queries, k). Scores are higher-is-better: minus the Euclidean distance, or
        the cosine similarity. They equal what `torch.cdist` (or cosine similarity) plus a sort returns, ties aside.
    """
    prepared = keys if isinstance(keys, PreparedKeys) else prepare_keys(keys, distance)
    if prepared.distance != distance:
        raise ValueError(f"Keys were prepared for {prepared.distance!r}, not {distance!r}.")
    keys, key_bias = prepared.keys, prepared.key_bias
    _check_inputs(queries, keys, k, distance)
    k = min(k, keys.shape[0])
    queries = queries.to(keys.dtype)
    if distance == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=1)

    key_block = min(keys.shape[0], max_block_elements)
    query_block = max(1, max_block_elements // key_block)
    all_scores, all_indices = [], []
    for query_start in range(0, queries.shape[0], query_block):
        query_chunk = queries[query_start : query_start + query_block]
        best_scores = best_indices = None
        for key_start in range(0, keys.shape[0], key_block):
            key_chunk = keys[key_start : key_start + key_block]
            bias_chunk = None if key_bias is None else key_bias[key_start : key_start + key_block]
            scores = _ranking_scores(query_chunk, key_chunk, bias_chunk)
            best_scores, best_indices = _merge_top_k(best_scores, best_indices, scores, key_start, k)
        all_scores.append(best_scores)
        all_indices.append(best_indices)
    scores = all_scores[0] if len(all_scores) == 1 else torch.cat(all_scores)
    indices = all_indices[0] if len(all_indices) == 1 else torch.cat(all_indices)
    if distance == "euclidean":
        # Turn 2 q.k - |k|^2 into -|q - k| for the k winners only.
        squared = queries.pow(2).sum(dim=1, keepdim=True) - scores
        scores = -squared.clamp_min(0).sqrt()
    return scores, indices


def pairwise_scores(queries: torch.Tensor, keys: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Higher-is-better scores of every (query, key) pair: minus the Euclidean distance, or cosine similarity."""
    _check_inputs(queries, keys, 1, distance)
    if distance == "cosine":
        return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).T
    return -torch.cdist(queries, keys)


def paired_scores(queries: torch.Tensor, keys: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Higher-is-better score of each query with its own key(s), broadcasting over leading dimensions.

    `queries` (..., dim) against `keys` (..., dim): minus the Euclidean distance, or the cosine similarity. Used for
    multiple-choice candidates and compatibility scores, so they agree with the rankings of `top_k`.
    """
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; expected one of {DISTANCES}.")
    if distance == "cosine":
        return torch.nn.functional.cosine_similarity(queries, keys, dim=-1)
    return -(queries - keys).norm(dim=-1)


def rank_of_targets(
    queries: torch.Tensor, keys: torch.Tensor, targets: torch.Tensor, distance: str = "euclidean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where `keys[targets[i]]` ranks among all keys for query i, honestly when keys tie.

    Returns `(ranks, ties)`: `ranks` is 1 + the number of keys that score strictly better than the target, `ties` the
    number of *other* keys that score exactly as well (identical embeddings always tie). Under random tie-breaking
    the target's rank is uniform in `[ranks, ranks + ties]`; `metrics.hit_rate_metrics` takes the expectation, so
    duplicates never favour the right item. A NaN prediction ranks the target last (`ranks` = number of keys).

    Keys are deduplicated first (one matrix product per block of distinct keys), which also makes exact copies tie.
    """
    _check_inputs(queries, keys, 1, distance)
    queries = queries.to(keys.dtype)
    num_keys = keys.shape[0]
    unique_keys, key_group, group_sizes = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    prepared = prepare_keys(unique_keys, distance)
    if distance == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=1)
    target_groups = key_group[targets]
    weights = group_sizes.to(queries.dtype)
    query_block = max(1, DEFAULT_MAX_BLOCK_ELEMENTS // unique_keys.shape[0])
    ranks, ties = [], []
    for start in range(0, queries.shape[0], query_block):
        scores = _ranking_scores(queries[start : start + query_block], prepared.keys, prepared.key_bias)
        target_scores = scores.gather(1, target_groups[start : start + query_block, None])  # (block, 1)
        better = ((scores > target_scores).to(weights.dtype) @ weights).round().long()
        tied = ((scores == target_scores).to(weights.dtype) @ weights).round().long() - 1
        lost = target_scores.squeeze(1).isnan()
        ranks.append(torch.where(lost, num_keys, better + 1))
        ties.append(torch.where(lost, 0, tied))
    if not ranks:
        empty = torch.zeros(0, dtype=torch.long, device=keys.device)
        return empty, empty
    return torch.cat(ranks), torch.cat(ties)


def candidate_credit(
    scores: torch.Tensor, right: torch.Tensor, same_as_right: torch.Tensor | None = None
) -> torch.Tensor:
    """Expected multiple-choice accuracy under random tie-breaking: 1 / (number of tied best) when the right
    candidate is among the best, else 0.

    Args:
        scores: (questions, candidates) higher-is-better scores.
        right: (questions,) index of the right candidate.
        same_as_right: optional (questions, candidates) mask of candidates identical to the right one (same
            embedding), which tie with it whatever the arithmetic. A NaN score of the right candidate earns 0.
    """
    right_scores = scores.gather(1, right[:, None])  # (questions, 1)
    tied = scores == right_scores
    better = scores > right_scores
    if same_as_right is not None:
        tied = tied | same_as_right
        better = better & ~same_as_right
    credit = (~better.any(dim=1)).double() / tied.sum(dim=1).clamp_min(1).double()
    return torch.where(right_scores.squeeze(1).isnan(), 0.0, credit)


__all__ = [
    "DISTANCES",
    "PreparedKeys",
    "candidate_credit",
    "paired_scores",
    "pairwise_scores",
    "prepare_keys",
    "rank_of_targets",
    "top_k",
]
