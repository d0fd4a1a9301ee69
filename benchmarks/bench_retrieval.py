"""Fill-in-the-blank top-10 retrieval throughput at the original umBERT shapes.

    python benchmarks/bench_retrieval.py [--items_per_category 4100] [--outfits 128]

Compares queries/s of: the original per-query `cdist` loop, a bare matrix product + `topk` (the limit), and
`UmBertModel.retrieve` (its cached `umbert_hf.retrieval.CategoryIndex`, exact Euclidean scores). Also the honest
rank of a target item, as the metrics compute it: `CategoryIndex.rank` (keys deduplicated once, scored in cached
tiles of 2,048 keys) against `rank_of_targets` on raw keys (deduplicated on every call, as each evaluation batch did
before the index) and a bare whole-row rank (one matrix product per slot, then a count of the better keys).

At the 250k full-size shapes (`--items_per_category 41700 --outfits 256 --hidden_size 512`) the index ranks about
2.2 times as many queries per second as the bare whole-row rank: a row of 41,700 scores leaves the cache before it
is counted (docs/performance.md).
"""

import argparse
import time

import torch

from umbert_hf import UmBertConfig, UmBertModel
from umbert_hf.retrieval import rank_of_targets


def timed(function, repeats: int) -> float:
    function()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items_per_category", type=int, default=4100)
    parser.add_argument("--outfits", type=int, default=128, help="outfits per batch; each gives one query per slot")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)

    config = UmBertConfig(hidden_size=args.hidden_size)
    num_slots = config.num_categories
    num_items = args.items_per_category * num_slots
    model = UmBertModel(config)
    categories = [config.categories[index % num_slots] for index in range(num_items)]
    model.set_catalogue(
        [str(index) for index in range(num_items)], torch.randn(num_items, args.hidden_size), categories
    )
    predictions = torch.randn(args.outfits * num_slots, args.hidden_size)
    blank_categories = torch.arange(num_slots).repeat(args.outfits)
    keys = model.get_catalogue_embeddings()
    keys_by_slot = [keys[model.catalogue_rows_of_category(name)] for name in config.categories]
    queries_by_slot = [predictions[blank_categories == slot] for slot in range(num_slots)]

    def cdist_loop():
        for query, slot in zip(predictions, blank_categories.tolist()):
            torch.cdist(query[None], keys_by_slot[slot]).topk(args.k, largest=False)

    def bare_matmul():
        for slot in range(num_slots):
            (queries_by_slot[slot] @ keys_by_slot[slot].T).topk(args.k)

    def umbert_retrieve():
        model.retrieve(predictions, blank_categories, args.k)

    index = model.catalogue_index()
    target_rows = torch.stack([index.rows[slot][0] for slot in blank_categories.tolist()])
    positions_by_slot = [index.positions[target_rows[blank_categories == slot]] for slot in range(num_slots)]

    def index_rank():
        index.rank(predictions, blank_categories, target_rows)

    def bare_rank():
        for slot in range(num_slots):
            queries, slot_keys = queries_by_slot[slot], keys_by_slot[slot]
            scores = 2 * queries @ slot_keys.T - slot_keys.pow(2).sum(dim=1)
            target_scores = scores.gather(1, positions_by_slot[slot][:, None])
            (scores > target_scores).sum(dim=1)

    def rank_of_targets_per_call():
        for slot in range(num_slots):
            rank_of_targets(queries_by_slot[slot], keys_by_slot[slot], positions_by_slot[slot])

    num_queries = predictions.shape[0]
    figures = {
        "cdist_loop_queries_per_s": num_queries / timed(cdist_loop, max(1, args.repeats // 10)),
        "bare_matmul_topk_queries_per_s": num_queries / timed(bare_matmul, args.repeats),
        "umbert_retrieve_queries_per_s": num_queries / timed(umbert_retrieve, args.repeats),
        "index_rank_queries_per_s": num_queries / timed(index_rank, args.repeats),
        "bare_rank_queries_per_s": num_queries / timed(bare_rank, args.repeats),
        "rank_of_targets_per_call_queries_per_s": num_queries / timed(rank_of_targets_per_call, args.repeats),
    }
    figures["umbert_vs_bare_slowdown"] = (
        figures["bare_matmul_topk_queries_per_s"] / figures["umbert_retrieve_queries_per_s"]
    )
    figures["umbert_vs_cdist_speedup"] = figures["umbert_retrieve_queries_per_s"] / figures["cdist_loop_queries_per_s"]
    print(f"retrieval: {num_queries} queries x {args.items_per_category} items/category, hidden {args.hidden_size}")
    for name, value in figures.items():
        print(f"  {name:34s} {value:12.2f}")
    return figures


if __name__ == "__main__":
    main()
