"""How an item is scored, once: distances, exact batched top-k search and the per-category index every caller asks.

The model's `complete`, its contrastive loss, the evaluation metrics and augmentation all score items here, so they
agree on the distance, on ties (identical embeddings always tie and never favour the right item) and on NaN.
"""

import functools
import math
import threading
from dataclasses import dataclass

import torch

DISTANCES = ("euclidean", "cosine")
# Largest (queries x keys) score block computed at once: 2**24 floats = 64 MiB.
DEFAULT_MAX_BLOCK_ELEMENTS = 1 << 24
# Exact search scores (up to 1,024 queries) x (2,048 keys) tiles: a tile stays in the CPU's cache from the product to
# the comparisons after it, which makes the product itself about 1.4 times as fast as whole-row blocks (2 cores:
# 165 against 115 GFLOP/s at 41,700 keys of 512 dimensions; benchmarks/bench_retrieval.py).
KEY_TILE = 2048
QUERY_TILE = 1024


def check_distance(distance: str) -> None:
    """`ValueError` naming `distance` unless it is one of `DISTANCES`."""
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; expected one of {DISTANCES}.")


def _check_inputs(queries: torch.Tensor, keys: torch.Tensor, k: int, distance: str) -> None:
    check_distance(distance)
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


# ----- scores ---------------------------------------------------------------------------------------------------


def paired_scores(queries: torch.Tensor, keys: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Higher-is-better score of each query with its own key(s), broadcasting over leading dimensions.

    `queries` (..., dim) against `keys` (..., dim): minus the Euclidean distance, or the cosine similarity. Used for
    multiple-choice candidates and compatibility scores, so they agree with the rankings of `top_k`.
    """
    check_distance(distance)
    if distance == "cosine":
        return torch.nn.functional.cosine_similarity(queries, keys, dim=-1)
    return -(queries - keys).norm(dim=-1)


def pairwise_scores(
    queries: torch.Tensor, keys: torch.Tensor, distance: str = "euclidean", squared: bool = False
) -> torch.Tensor:
    """(..., queries, keys) higher-is-better scores of every pair, by one matrix product (differentiable).

    The cosine similarity, or minus the Euclidean distance (minus its square with `squared`, as the contrastive loss
    uses). The all-pairs form of `paired_scores`: it needs no (queries, keys, dim) difference tensor. Leading
    dimensions are batch dimensions: (batch, queries, dim) against (batch, keys, dim) scores each batch apart.
    """
    check_distance(distance)
    if distance == "cosine":
        return torch.nn.functional.normalize(queries, dim=-1) @ torch.nn.functional.normalize(keys, dim=-1).mT
    squared_distances = (
        queries.pow(2).sum(dim=-1, keepdim=True) - 2 * queries @ keys.mT + keys.pow(2).sum(dim=-1).unsqueeze(-2)
    )  # (..., queries, keys)
    return -squared_distances if squared else -squared_distances.clamp_min(0).sqrt()


def _without_autocast(function):
    """Exact search in the keys' own precision, even under autocast: a bf16 product would round the scores (so the
    order of near items) and a bf16 count of the better keys (so every rank above 256)."""

    @functools.wraps(function)
    def search(queries: torch.Tensor, *args, **kwargs):
        with torch.autocast(queries.device.type, enabled=False):
            return function(queries, *args, **kwargs)

    return search


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A scratch tensor of `shape`, reused by this thread across calls (never returned to a caller).

    A score block is up to 64 MiB: allocated afresh on every call, the CPU pays page faults to touch it, a quarter of
    the time of a ranking. Kept per thread, so concurrent searches (the app's) never share one.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    numel = math.prod(shape)
    # A tensor made under `torch.inference_mode()` (the pipeline's) cannot be written outside it: one per mode.
    key = (name, dtype, torch.device(device), torch.is_inference_mode_enabled())
    buffer = buffers.get(key)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[key] = torch.empty(numel, dtype=dtype, device=device)
    return buffer[:numel].view(shape)


def _ranking_scores(
    queries: torch.Tensor, keys: torch.Tensor, key_bias: torch.Tensor | None, reuse: bool = False
) -> torch.Tensor:
    """Scores that rank keys like the distance does: q.k for cosine, 2 q.k - |k|^2 for Euclidean.

    The query's own norm is constant along a row, so Euclidean ranking needs only the key norms (one fused addmm).
    With `reuse`, the scores are written into this thread's scratch block, valid until the next such call.
    """
    out = None
    differentiable = torch.is_grad_enabled() and (queries.requires_grad or keys.requires_grad)
    if reuse and queries.dtype == keys.dtype and not differentiable:
        out = _scratch("scores", (queries.shape[0], keys.shape[0]), keys.dtype, keys.device)
    if key_bias is None:
        return torch.mm(queries, keys.T, out=out) if out is not None else queries @ keys.T
    if out is not None:
        return torch.addmm(key_bias, queries, keys.T, alpha=2.0, out=out)
    return torch.addmm(key_bias, queries, keys.T, alpha=2.0)  # (queries, keys)


def candidate_credit(
    scores: torch.Tensor, right: torch.Tensor, same_as_right: torch.Tensor | None = None
) -> torch.Tensor:
    """Expected multiple-choice accuracy under random tie-breaking: 1 / (number of tied best) when the right
    candidate is among the best, else 0.

    Args:
        scores: (questions, candidates) higher-is-better scores.
        right: (questions,) index of the right candidate.
        same_as_right: optional (questions, candidates) mask of candidates identical to the right one (same
            embedding), which tie with it whatever the arithmetic. A NaN or infinite score of the right candidate
            (a broken prediction) earns 0.
    """
    right_scores = scores.gather(1, right[:, None])  # (questions, 1)
    tied = scores == right_scores
    better = scores > right_scores
    if same_as_right is not None:
        tied = tied | same_as_right
        better = better & ~same_as_right
    credit = (~better.any(dim=1)).double() / tied.sum(dim=1).clamp_min(1).double()
    return torch.where(torch.isfinite(right_scores.squeeze(1)), credit, 0.0)


# ----- exact search -----------------------------------------------------------------------------------------------


@dataclass
class PreparedKeys:
    """Keys ready for repeated searches: unit-normalised for cosine, with -|k|^2 precomputed for Euclidean."""

    keys: torch.Tensor
    key_bias: torch.Tensor | None
    distance: str


def prepare_keys(keys: torch.Tensor, distance: str = "euclidean") -> PreparedKeys:
    """Precompute what every search over `keys` needs, so a catalogue searched many times pays for it once."""
    check_distance(distance)
    if distance == "cosine":
        return PreparedKeys(torch.nn.functional.normalize(keys, dim=1), None, distance)
    return PreparedKeys(keys, -keys.pow(2).sum(dim=1), distance)


def _target_scores(queries: torch.Tensor, prepared: PreparedKeys, rows: torch.Tensor) -> torch.Tensor:
    """(queries,) `_ranking_scores` of each query with its own key `prepared.keys[rows[i]]` alone."""
    dots = (queries * prepared.keys[rows]).sum(dim=1)
    return dots if prepared.key_bias is None else 2 * dots + prepared.key_bias[rows]


def _tiles(num_keys: int, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS) -> tuple[int, int]:
    """`(query_tile, key_tile)`: the shape of the score tiles of an exact search, at most `max_block_elements`."""
    key_tile = max(1, min(num_keys, KEY_TILE, max_block_elements))
    return max(1, min(QUERY_TILE, max_block_elements // key_tile)), key_tile


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


@_without_autocast
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

    query_block, key_block = _tiles(keys.shape[0], max_block_elements)
    all_scores, all_indices = [], []
    for query_start in range(0, queries.shape[0], query_block):
        query_chunk = queries[query_start : query_start + query_block]
        best_scores = best_indices = None
        for key_start in range(0, keys.shape[0], key_block):
            key_chunk = keys[key_start : key_start + key_block]
            bias_chunk = None if key_bias is None else key_bias[key_start : key_start + key_block]
            scores = _ranking_scores(query_chunk, key_chunk, bias_chunk, reuse=True)
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


# ----- honest ranks -------------------------------------------------------------------------------------------------


@dataclass
class DistinctKeys:
    """Keys deduplicated for honest tie ranks: the distinct keys (prepared), each key's group, each group's size."""

    prepared: PreparedKeys
    key_group: torch.Tensor  # (num_keys,) index of each key's distinct key
    group_sizes: torch.Tensor  # (num_distinct,) number of keys equal to each distinct key


def prepare_distinct_keys(keys: torch.Tensor, distance: str = "euclidean") -> DistinctKeys:
    """Deduplicate `keys` once for `rank_of_targets`: exact copies then tie, and each block scores distinct keys only."""
    check_distance(distance)
    unique_keys, key_group, group_sizes = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    return DistinctKeys(prepare_keys(unique_keys, distance), key_group, group_sizes)


@_without_autocast
def rank_of_targets(
    queries: torch.Tensor, keys: torch.Tensor | DistinctKeys, targets: torch.Tensor, distance: str = "euclidean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where `keys[targets[i]]` ranks among all keys for query i, honestly when keys tie.

    Returns `(ranks, ties)`: `ranks` is 1 + the number of keys that score strictly better than the target, `ties` the
    number of *other* keys that score exactly as well (identical embeddings always tie). Under random tie-breaking
    the target's rank is uniform in `[ranks, ranks + ties]`; `metrics.hit_rate_metrics` takes the expectation, so
    duplicates never favour the right item. A NaN or infinite prediction ranks the target last (`ranks` = number of
    keys).

    `keys` may be `prepare_distinct_keys(keys, distance)`, to deduplicate a catalogue ranked many times only once.
    """
    if isinstance(keys, DistinctKeys):
        distinct = keys
        if distinct.prepared.distance != distance:
            raise ValueError(f"Keys were prepared for {distinct.prepared.distance!r}, not {distance!r}.")
        _check_inputs(queries, distinct.prepared.keys, 1, distance)
    else:
        _check_inputs(queries, keys, 1, distance)
        distinct = prepare_distinct_keys(keys, distance)
    prepared = distinct.prepared
    queries = queries.to(prepared.keys.dtype)
    num_keys = distinct.key_group.shape[0]
    if distance == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=1)
    keys, key_bias = prepared.keys, prepared.key_bias
    groups = distinct.key_group[targets]  # each target's distinct key
    weights = distinct.group_sizes.to(keys.dtype)  # how many catalogue keys each distinct key stands for
    # The target's own score, once per query. A tile's product may round the same pair a last bit differently, so
    # the target's own distinct key is taken out of the counts below and its copies are added as ties.
    target_scores = _target_scores(queries, prepared, groups)
    query_tile, key_tile = _tiles(keys.shape[0])
    better = torch.zeros(queries.shape[0], dtype=torch.float64, device=keys.device)
    equal = torch.zeros_like(better)
    own_weights = weights[groups].double()
    for start in range(0, queries.shape[0], query_tile):
        stop = min(start + query_tile, queries.shape[0])
        block, block_scores, block_groups = queries[start:stop], target_scores[start:stop, None], groups[start:stop]
        for key_start in range(0, keys.shape[0], key_tile):
            key_stop = min(key_start + key_tile, keys.shape[0])
            bias = None if key_bias is None else key_bias[key_start:key_stop]
            scores = _ranking_scores(block, keys[key_start:key_stop], bias, reuse=True)
            # Take the target's own key back out of the counts, for the queries whose target lies in this tile.
            in_tile = (block_groups >= key_start) & (block_groups < key_stop)
            own_scores = scores.gather(1, (block_groups - key_start).clamp(0, key_stop - key_start - 1)[:, None])
            own = torch.where(in_tile, own_weights[start:stop], 0.0)
            better[start:stop] -= own * (own_scores[:, 0] > block_scores[:, 0])
            equal[start:stop] -= own * (own_scores[:, 0] == block_scores[:, 0])
            # In place, on the cached tile: the sign of (score - target) is +1 better, 0 tied, -1 worse (a difference
            # of two floats is 0 only when they are equal), and two products count them as exact integer sums.
            # A quarter faster than comparing twice into boolean masks.
            signs = torch.sub(scores, block_scores, out=scores).sign_()
            tile_weights = weights[key_start:key_stop]
            net = signs @ tile_weights  # better - worse
            apart = signs.abs_() @ tile_weights  # better + worse
            better[start:stop] += (net + apart) / 2
            equal[start:stop] += tile_weights.sum() - apart
    lost = ~torch.isfinite(target_scores)  # a NaN or infinite prediction: the target ranks last
    ranks = torch.where(lost, num_keys, better.round().long() + 1)
    ties = torch.where(lost, 0, equal.round().long() + distinct.group_sizes[groups] - 1)
    return ranks, ties


@_without_autocast
def top_one_credit(
    queries: torch.Tensor,
    keys: torch.Tensor | DistinctKeys,
    targets: torch.Tensor,
    distance: str = "euclidean",
    probe_size: int = 1024,
) -> torch.Tensor:
    """Expected credit for `keys[targets[i]]` being query i's nearest key under random tie-breaking: 1 / (1 + ties)
    when no key scores strictly better, else 0; exactly `(ranks == 1) / (ties + 1)` of `rank_of_targets`.

    Most queries of a poor reconstruction are settled by an evenly spaced probe of `probe_size` keys: one of them beats
    the target by more than the rounding of either computation can explain. Only the queries left (where the target
    may be the nearest) are ranked against every key, so the answer is exact and usually costs a fraction of a rank.
    """
    distinct = keys if isinstance(keys, DistinctKeys) else prepare_distinct_keys(keys, distance)
    prepared = distinct.prepared
    if prepared.distance != distance:
        raise ValueError(f"Keys were prepared for {prepared.distance!r}, not {distance!r}.")
    _check_inputs(queries, prepared.keys, 1, distance)
    num_distinct = prepared.keys.shape[0]
    settled = torch.zeros(queries.shape[0], dtype=torch.bool, device=queries.device)
    if num_distinct > 2 * probe_size and queries.shape[0]:
        probe = slice(0, num_distinct, num_distinct // probe_size)
        probe_keys = prepared.keys[probe]
        probe_bias = None if prepared.key_bias is None else prepared.key_bias[probe]
        unit = queries.detach().to(prepared.keys.dtype)  # scored in the keys' precision, whatever the autocast
        if distance == "cosine":
            unit = torch.nn.functional.normalize(unit, dim=1)
        target_scores = _target_scores(unit, prepared, distinct.key_group[targets])
        # Both computations round each score by at most d * eps of its magnitude, |q.k| plus the bias |k|^2.
        largest = prepared.keys.norm(dim=1).max()
        magnitude = 2 * unit.norm(dim=1) * largest
        if prepared.key_bias is not None:
            magnitude = magnitude + largest.pow(2)
        margin = 4 * unit.shape[1] * torch.finfo(unit.dtype).eps * magnitude
        block, _ = _tiles(probe_keys.shape[0])
        for start in range(0, unit.shape[0], block):
            scores = _ranking_scores(unit[start : start + block], probe_keys, probe_bias, reuse=True)
            best = scores.amax(dim=1)
            stop = start + scores.shape[0]
            settled[start:stop] = best > target_scores[start:stop] + margin[start:stop]  # NaN: not settled
    credit = torch.zeros(queries.shape[0], dtype=torch.double, device=queries.device)
    open_queries = torch.nonzero(~settled).flatten()
    if open_queries.numel():
        ranks, ties = rank_of_targets(queries[open_queries], distinct, targets[open_queries], distance)
        credit[open_queries] = (ranks == 1).double() / (ties + 1).double()
    return credit


# ----- the per-category index -------------------------------------------------------------------------------------


class CategoryIndex:
    """Exact search of a catalogue restricted to each query's category, by one distance chosen at construction.

    Holds, per category, its catalogue rows and, prepared on first use and then reused, its search keys and its
    deduplicated keys (for honest tie ranks). The model's `retrieve`, `OutfitEvaluator` and augmentation all search
    through one of these, so there is one answer to "which items of this category are nearest, and how near?".

    Args:
        embeddings: (num_items, dim) catalogue embeddings; searched without gradients.
        categories: (num_items,) category index of each item.
        distance: `"euclidean"` or `"cosine"`.
        num_categories: number of categories (default: the largest index + 1); a category may have no items, it
            then cannot be searched.
    """

    def __init__(
        self,
        embeddings: torch.Tensor,
        categories: torch.Tensor,
        distance: str = "euclidean",
        num_categories: int | None = None,
    ):
        check_distance(distance)
        if embeddings.dim() != 2 or categories.shape != (embeddings.shape[0],):
            raise ValueError(
                f"`embeddings` must be (num_items, dim) and `categories` (num_items,), got shapes "
                f"{tuple(embeddings.shape)} and {tuple(categories.shape)}."
            )
        self.embeddings = embeddings.detach()
        self.categories = categories.to(embeddings.device)
        self.distance = distance
        low, high = (int(self.categories.min()), int(self.categories.max())) if self.categories.numel() else (0, -1)
        num_categories = high + 1 if num_categories is None else num_categories
        if low < 0 or high >= num_categories:
            raise ValueError(f"Item categories must lie in [0, {num_categories}), got {low if low < 0 else high}.")
        self.rows = [torch.nonzero(self.categories == category).squeeze(1) for category in range(num_categories)]
        self.sizes = torch.tensor([rows.numel() for rows in self.rows], device=embeddings.device)  # (categories,)
        # Position of every row among the rows of its category: its index in that category's keys.
        self.positions = torch.empty_like(self.categories)
        for rows in self.rows:
            self.positions[rows] = torch.arange(rows.numel(), device=rows.device)
        self._keys: list[PreparedKeys | None] = [None] * num_categories
        self._distinct_keys: list[DistinctKeys | None] = [None] * num_categories

    @property
    def num_categories(self) -> int:
        return len(self.rows)

    def keys(self, category: int) -> PreparedKeys:
        """The prepared search keys of one category (computed once)."""
        if self._keys[category] is None:
            self._keys[category] = prepare_keys(self.embeddings[self.rows[category]], self.distance)
        return self._keys[category]

    def distinct_keys(self, category: int) -> DistinctKeys:
        """The deduplicated keys of one category for `rank` (computed once: `torch.unique` is not cheap)."""
        if self._distinct_keys[category] is None:
            self._distinct_keys[category] = prepare_distinct_keys(self.embeddings[self.rows[category]], self.distance)
        return self._distinct_keys[category]

    def score(self, queries: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Higher-is-better score of each query with the catalogue item(s) at `rows` (see `paired_scores`).

        `queries` (..., dim) and `rows` (...) broadcast: e.g. (questions, 1, dim) against (questions, candidates).
        """
        return paired_scores(queries, self.embeddings[rows], self.distance)

    def _group_by_category(self, queries: torch.Tensor, categories: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """A stable order that groups the queries by category, and the number of queries of each category."""
        if categories.shape != (queries.shape[0],):
            raise ValueError(
                f"`categories` must be (num_queries={queries.shape[0]},), got shape {tuple(categories.shape)}."
            )
        if categories.numel() and int(categories.min()) < 0:
            raise ValueError(f"Categories must lie in [0, {self.num_categories}), got {int(categories.min())}.")
        counts = torch.bincount(categories, minlength=self.num_categories).tolist()
        if len(counts) > self.num_categories:
            raise ValueError(f"Categories must lie in [0, {self.num_categories}), got {len(counts) - 1}.")
        empty = [category for category, count in enumerate(counts) if count and self.rows[category].numel() == 0]
        if empty:
            raise ValueError(f"Category {empty[0]} has no items: there is nothing to retrieve from.")
        return categories.argsort(stable=True), counts

    def _search(
        self, category: int, queries: torch.Tensor, k: int, max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(scores, catalogue rows)` of the k nearest items of one category (k <= its size), exactly; the one step
        of `top_k` that another search backend replaces (`faiss_index.FaissCategoryIndex`)."""
        scores, positions = top_k(queries, self.keys(category), k, self.distance, max_block_elements)
        return scores, self.rows[category][positions]

    def top_k(
        self,
        queries: torch.Tensor,
        categories: torch.Tensor,
        k: int,
        max_block_elements: int = DEFAULT_MAX_BLOCK_ELEMENTS,
        pad: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k catalogue rows of each query among the items of its category, best first; one search per category.

        Args:
            queries: (num_queries, dim).
            categories: (num_queries,) category index of each query.
            k: number of neighbours. Without `pad`, clipped to the smallest category searched, so the result is
                rectangular; with `pad`, clipped per category to its size, so a query's answer never depends on the
                other queries of the batch, and shorter answers are padded with row -1 and a NaN score.

        Returns:
            `(scores, rows)`, both (num_queries, k): scores as `top_k` gives them, and catalogue rows.
        """
        if k < 1:
            raise ValueError(f"`k` must be at least 1, got {k}.")
        order, counts = self._group_by_category(queries, categories)
        sizes = [self.rows[category].numel() for category, count in enumerate(counts) if count]
        k = min([k] + (([max(sizes)] if sizes else []) if pad else sizes))
        scores, rows = [], []
        for category, category_queries in enumerate(queries[order].split(counts)):
            if counts[category] == 0:
                continue
            category_scores, category_rows = self._search(category, category_queries, k, max_block_elements)
            if category_rows.shape[1] < k:
                missing = k - category_rows.shape[1]
                category_scores = torch.nn.functional.pad(category_scores, (0, missing), value=float("nan"))
                category_rows = torch.nn.functional.pad(category_rows, (0, missing), value=-1)
            scores.append(category_scores)
            rows.append(category_rows)
        if not scores:
            return queries.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=queries.device)
        inverse = order.argsort()
        return torch.cat(scores)[inverse], torch.cat(rows)[inverse]

    def _per_category_targets(
        self, queries: torch.Tensor, categories: torch.Tensor, target_rows: torch.Tensor, measure
    ) -> list[torch.Tensor]:
        """`measure(queries, distinct keys, target positions)` of each category's queries, back in query order."""
        order, counts = self._group_by_category(queries, categories)
        if target_rows.shape != categories.shape:
            raise ValueError(
                f"`target_rows` must have shape {tuple(categories.shape)}, got {tuple(target_rows.shape)}."
            )
        if bool((self.categories[target_rows] != categories).any()):
            raise ValueError("Each target row must be an item of its query's category.")
        parts = []
        grouped = zip(queries[order].split(counts), target_rows[order].split(counts))
        for category, (category_queries, category_targets) in enumerate(grouped):
            if counts[category] == 0:
                continue
            result = measure(category_queries, self.distinct_keys(category), self.positions[category_targets])
            parts.append(result if isinstance(result, tuple) else (result,))
        if not parts:
            return [torch.empty_like(target_rows)] * 2
        inverse = order.argsort()
        return [torch.cat(values)[inverse] for values in zip(*parts)]

    def rank(
        self, queries: torch.Tensor, categories: torch.Tensor, target_rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(ranks, ties)` of each target catalogue row among the items of its query's category (see
        `rank_of_targets`: ties and NaN never favour the target). One search per category."""
        ranks, ties = self._per_category_targets(
            queries, categories, target_rows, lambda q, keys, targets: rank_of_targets(q, keys, targets, self.distance)
        )
        return ranks, ties

    def top_one_credit(
        self, queries: torch.Tensor, categories: torch.Tensor, target_rows: torch.Tensor
    ) -> torch.Tensor:
        """(queries,) credit for each target row being the nearest item of its query's category, ties shared (see
        `top_one_credit`; equal to `(ranks == 1) / (ties + 1)` of `rank`, at a fraction of its cost)."""
        credit = self._per_category_targets(
            queries, categories, target_rows, lambda q, keys, targets: top_one_credit(q, keys, targets, self.distance)
        )[0]
        return credit.double()


# ----- diverse suggestions ------------------------------------------------------------------------------------------


def check_diversity(diversity: float) -> float:
    """`diversity` as a float, or `ValueError` unless it is a number in [0, 1] (0: plain relevance ranking)."""
    if isinstance(diversity, bool) or not isinstance(diversity, (int, float)) or not 0 <= diversity <= 1:
        raise ValueError(f"`diversity` must be a number in [0, 1] (0: rank by relevance alone), got {diversity!r}.")
    return float(diversity)


def diversity_pool_size(k: int) -> int:
    """How many of the most relevant candidates maximal marginal relevance re-ranks to give `k` suggestions."""
    return max(5 * k, 50)


def maximal_marginal_relevance(
    relevance: torch.Tensor,
    candidates: torch.Tensor,
    present: torch.Tensor,
    k: int,
    diversity: float,
    distance: str = "euclidean",
) -> torch.Tensor:
    """(batch, k) positions of the candidates picked greedily by maximal marginal relevance, -1 where none is left.

    Each step picks the candidate maximising `(1 - diversity) * relevance - diversity * max similarity to the picks
    so far`. Both terms are put on a common 0-1 scale within each row, so that `diversity` means the same for any
    embedding scale and distance: relevance is 1 for the row's most relevant candidate and 0 for its least; the
    similarity of two candidates (`pairwise_scores` of their embeddings: minus the distance, or the cosine) is 1 for
    exact copies and 0 for the row's least similar pair. The first pick is the most relevant; with `diversity` 0 the
    order is the relevance order exactly, and an exact copy of a pick gets the largest penalty there is. Ties go to
    the earlier candidate, so candidates sorted by relevance keep the search's own tie order.

    Args:
        relevance: (batch, candidates) higher-is-better scores, best first (as `top_k` gives them).
        candidates: (batch, candidates, dim) their embeddings.
        present: (batch, candidates) False for padding (a category with fewer candidates than the others).
        k: picks per row; at most the number of candidates.
        diversity: the weight of novelty, in [0, 1].
        distance: `"euclidean"` or `"cosine"`, as the relevance was scored.

    A row whose relevance is NaN for a present candidate (a NaN prediction) keeps its order: nothing can be weighed.
    """
    diversity = check_diversity(diversity)
    batch, size = relevance.shape
    if candidates.shape[:2] != (batch, size) or present.shape != (batch, size):
        raise ValueError(
            f"`candidates` must be ({batch}, {size}, dim) and `present` ({batch}, {size}), like `relevance`, got "
            f"{tuple(candidates.shape)} and {tuple(present.shape)}."
        )
    k = min(k, size)
    in_order = torch.where(present, torch.arange(size, device=relevance.device), -1)[:, :k]
    if diversity == 0 or size == 0:
        return in_order
    inf = float("inf")
    lowest = relevance.masked_fill(~present, inf).amin(dim=1, keepdim=True)
    highest = relevance.masked_fill(~present, -inf).amax(dim=1, keepdim=True)
    gain = (1 - diversity) * ((relevance - lowest) / (highest - lowest).clamp_min(1e-12)).nan_to_num(0.0)
    similarity = pairwise_scores(candidates, candidates, distance)  # (batch, candidates, candidates)
    pairs = present[:, :, None] & present[:, None, :]
    least = similarity.masked_fill(~pairs, inf).amin(dim=(1, 2))[:, None, None]
    identical = 1.0 if distance == "cosine" else 0.0  # the similarity of an item with itself
    similarity = (similarity - least) / (identical - least).clamp_min(1e-12)  # 0 to 1, float rounding aside
    closest = torch.zeros_like(gain)  # the largest similarity to a pick so far: 0, the scale's floor, before any
    available = present.clone()
    picks = torch.empty((batch, k), dtype=torch.long, device=relevance.device)
    batch_rows = torch.arange(batch, device=relevance.device)
    for step in range(k):
        objective = (gain - diversity * closest).masked_fill(~available, -inf)
        pick = objective.argmax(dim=1)  # the first of equal maxima
        picks[:, step] = torch.where(available[batch_rows, pick], pick, -1)
        available[batch_rows, pick] = False
        closest = torch.maximum(closest, similarity[batch_rows, :, pick])  # each candidate's similarity to the pick
    unweighable = (present & relevance.isnan()).any(dim=1)
    return torch.where(unweighable[:, None], in_order, picks)


def distinct_rows(keys: torch.Tensor) -> torch.Tensor:
    """(rows,) one id per distinct row of `keys`: equal ids for exact copies (the same item in another listing)."""
    return torch.unique(keys.detach(), dim=0, return_inverse=True)[1]


__all__ = [
    "distinct_rows",
    "DISTANCES",
    "CategoryIndex",
    "DistinctKeys",
    "PreparedKeys",
    "candidate_credit",
    "check_distance",
    "check_diversity",
    "diversity_pool_size",
    "maximal_marginal_relevance",
    "paired_scores",
    "pairwise_scores",
    "prepare_distinct_keys",
    "prepare_keys",
    "rank_of_targets",
    "top_one_credit",
    "top_k",
]
