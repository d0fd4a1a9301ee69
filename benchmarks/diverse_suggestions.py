"""What diversity costs and buys: `complete(..., diversity=λ)` on real outfits, at several values of λ.

    python benchmarks/diverse_suggestions.py --model RUN/seed_0/umbert RUN/seed_1/umbert RUN/seed_2/umbert \
        --dataset DATA [--split test] [--diversity 0 0.1 0.2 0.3 0.5 0.7 1] [--top_k 10] [--output report.json]

Every outfit of the split (every item in the model's catalogue) is asked once per slot, that slot held out, as
`evaluate.py` asks. The top_k suggestions are those `complete` gives: the `diversity_pool_size(top_k)` most relevant
items re-ranked by maximal marginal relevance. For each λ it reports:
- hit_rate@top_k and MRR of the held-out item, honest under ties: an item with exact copies (another listing of the
  same embedding) is credited with the mean over the positions its copies take, so copies never favour it; an item
  outside the re-ranked pool keeps its exact rank;
- the mean number of distinct titles among the top_k suggestions, and the mean distance (the model's distance:
  Euclidean, or 1 - cosine) between two of them.
With several models (seeds), each figure is the mean ± sd over them. λ = 0 gives the plain ranking: its hit rate and
MRR equal `evaluate.py`'s.
"""

import argparse
import json
import statistics
import sys

import torch
from transformers import AutoModel

from umbert_hf.data.outfit_data import load_catalogue_details, load_dataset_config
from umbert_hf.retrieval import check_diversity, diversity_pool_size, maximal_marginal_relevance, pairwise_scores
from umbert_hf.utils.files import atomic_write
from umbert_hf.utils.paths import check_output, run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", required=True, help="Saved umBERT/WumBERT folders or Hub ids (seeds).")
    parser.add_argument("--dataset", required=True, help="Built dataset folder or Hub id (outfits and titles).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--diversity", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0])
    parser.add_argument("--top_k", type=int, default=10, help="Suggestions per question (default 10).")
    parser.add_argument("--batch_size", type=int, default=512, help="Questions per forward.")
    parser.add_argument("--output", default=None, help="JSON file to write the report to.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output file.")
    args = parser.parse_args(argv)
    for value in args.diversity:
        try:
            check_diversity(value)
        except ValueError:
            parser.error(f"--diversity: each value must be in [0, 1], got {value}")
    if args.top_k < 1:
        parser.error(f"--top_k must be at least 1, got {args.top_k}")
    return args


def questions(model, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(outfits, slots) catalogue rows of the split's outfits whose items are all in the catalogue, and the count of
    outfits skipped."""
    slots = model.config.categories
    row_of = {item_id: row for row, item_id in enumerate(model.catalogue_item_id_list)}
    records = load_dataset_config(dataset, "outfits")[split]
    kept = [
        [row_of[record[slot]] for slot in slots] for record in records if all(record[slot] in row_of for slot in slots)
    ]
    return torch.tensor(kept, dtype=torch.long), len(records) - len(kept)


def honest_credit(
    order: torch.Tensor, target: int, groups: torch.Tensor, rank: int, ties: int, k: int
) -> tuple[float, float]:
    """(expected hit within k, expected reciprocal rank) of `target` for one question: its copies in the re-ranked
    pool `order` (catalogue rows) take their positions there; the copies beyond the pool keep their exact positions
    (`rank` .. `rank + ties`, the pool's end excluded), and the target is any of them with equal chance."""
    copies = (groups[order] == groups[target]).nonzero().squeeze(1) + 1  # 1-based positions in the pool
    outside = range(max(len(order) + 1, rank), rank + ties + 1)[: ties + 1 - len(copies)]
    count = ties + 1
    hit = float((copies <= k).sum()) / count
    reciprocal = (float((1.0 / copies.double()).sum()) + sum(1.0 / position for position in outside)) / count
    return hit, reciprocal


def measure(model, rows: torch.Tensor, titles: dict, diversities: list[float], k: int, batch_size: int) -> dict:
    """Per λ: hit rate, MRR, distinct titles and mean pairwise distance of the top k, over every (outfit, slot)."""
    slots = len(model.config.categories)
    embeddings, groups = model.get_catalogue_embeddings().detach(), model.distinct_catalogue_rows()
    item_ids, distance = model.catalogue_item_id_list, model.config.distance
    pool = diversity_pool_size(k)
    sums = {value: torch.zeros(4, dtype=torch.double) for value in diversities}
    count = 0
    for start in range(0, len(rows), batch_size):
        outfits = rows[start : start + batch_size]
        targets = outfits.reshape(-1)  # every (outfit, slot), slot fastest
        blanks = torch.arange(slots).repeat(len(outfits))
        inputs = embeddings[outfits].repeat_interleave(slots, dim=0)
        predictions = model.predict_masked(inputs, blanks)
        scores, candidates = model.retrieve(predictions, blanks, pool, pad=True)
        ranks, ties = model.catalogue_index().rank(predictions, blanks, targets)
        for value in diversities:
            picks = maximal_marginal_relevance(
                scores, embeddings[candidates.clamp_min(0)], candidates >= 0, pool, value, distance
            )
            order = torch.where(picks >= 0, candidates.gather(1, picks.clamp_min(0)), -1)
            for question in range(len(targets)):
                ranked = order[question][order[question] >= 0]
                hit, reciprocal = honest_credit(
                    ranked, int(targets[question]), groups, int(ranks[question]), int(ties[question]), k
                )
                top = ranked[:k]
                distinct_titles = len({titles.get(item_ids[row], item_ids[row]) for row in top.tolist()})
                similarity = pairwise_scores(embeddings[top], embeddings[top], distance)
                apart = -similarity if distance == "euclidean" else 1 - similarity
                pairs = len(top) * (len(top) - 1)
                spread = float(apart.sum() - apart.diagonal().sum()) / pairs if pairs else 0.0
                sums[value] += torch.tensor([hit, reciprocal, distinct_titles, spread], dtype=torch.double)
        count += len(targets)
    names = (f"hit_rate@{k}", "mrr", f"distinct_titles@{k}", f"mean_pairwise_distance@{k}")
    return {str(value): dict(zip(names, (sums[value] / count).tolist())) for value in diversities} | {
        "questions": count
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.output:
        check_output(
            args.output,
            {**{f"model {name}": name for name in args.model}, "dataset": args.dataset},
            flag="--output",
            kind="file",
            overwrite=args.overwrite,
        )
    titles, _ = load_catalogue_details(args.dataset)
    runs = []
    for name in args.model:
        model = AutoModel.from_pretrained(name).eval()
        rows, skipped = questions(model, args.dataset, args.split)
        with torch.inference_mode():
            runs.append(measure(model, rows, titles, args.diversity, args.top_k, args.batch_size))
        print(f"{name}: {runs[-1]['questions']} questions ({skipped} outfits skipped)", file=sys.stderr)
    table = {}
    for value in map(str, args.diversity):
        table[value] = {}
        for metric in runs[0][value]:
            values = [run[value][metric] for run in runs]
            table[value][metric] = {
                "mean": statistics.fmean(values),
                "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    report = {"models": args.model, "split": args.split, "top_k": args.top_k, "runs": runs, "diversity": table}
    print(
        f"| diversity | hit_rate@{args.top_k} | MRR | distinct titles in the top {args.top_k} | mean pairwise distance |"
    )
    print("|---:|---:|---:|---:|---:|")
    for value, metrics in table.items():
        cells = [f"{entry['mean']:.3f} ± {entry['sd']:.3f}" for entry in metrics.values()]
        print(f"| {value} | " + " | ".join(cells) + " |")
    if args.output:
        atomic_write(args.output, json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(run_command(main))
