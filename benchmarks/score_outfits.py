"""Does the outfit score mean something? `score_outfit` on real outfits against the same outfits with one slot spoiled.

    python benchmarks/score_outfits.py --model MODEL --dataset DATA [--split test] [--seed 0]

Each outfit of the split (every item in the model's catalogue) is scored as it is, and again with one random slot
replaced by a random other catalogue item of that slot's category. Reports the AUC of the outfit score at telling
the real outfits from the spoiled ones (chance 0.5), and how often the weakest slot named in a spoiled outfit is the
one replaced (chance 1 in the number of slots). Quality is measured on real outfits (MANGO), never on synthetic ones.
"""

import argparse
import json
import sys

import torch
from transformers import AutoModel

from umbert_hf.data.outfit_data import load_dataset_config
from umbert_hf.evaluation.metrics import roc_auc
from umbert_hf.utils.paths import run_command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Saved umBERT/WumBERT folder or Hub repo id.")
    parser.add_argument("--dataset", required=True, help="Built dataset folder or Hub id (its `outfits` config).")
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0, help="Which slot is spoiled, and by which item.")
    parser.add_argument("--batch_size", type=int, default=256, help="Outfits scored per forward.")
    return parser.parse_args(argv)


def spoil(model, rows: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(outfits with one slot replaced by another random item of its category, the slot replaced)."""
    slots = torch.randint(rows.shape[1], (rows.shape[0],), generator=generator)
    spoiled = rows.clone()
    for slot, category in enumerate(model.config.categories):  # one draw per slot, for all its outfits at once
        outfits = torch.nonzero(slots == slot).squeeze(1)
        candidates = model.catalogue_rows_of_category(category)
        # Uniform over the other items: draw among all but one, and give the outfit's own item's place to the last.
        choices = candidates[torch.randint(len(candidates) - 1, (len(outfits),), generator=generator)]
        own = rows[outfits, slot]
        spoiled[outfits, slot] = torch.where(choices == own, candidates[-1], choices)
    return spoiled, slots


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = AutoModel.from_pretrained(args.model).eval()
    slots, ids = model.config.categories, model.catalogue_item_id_list
    row_of = {item_id: row for row, item_id in enumerate(ids)}
    split = load_dataset_config(args.dataset, "outfits")[args.split]
    rows = torch.tensor(
        [[row_of[record[slot]] for slot in slots] for record in split if all(record[slot] in row_of for slot in slots)]
    )
    spoiled, swapped = spoil(model, rows, torch.Generator().manual_seed(args.seed))
    results = {"real": [], "spoiled": []}
    for name, table in (("real", rows), ("spoiled", spoiled)):
        for start in range(0, len(table), args.batch_size):
            outfits = [
                {slot: ids[row] for slot, row in zip(slots, outfit)}
                for outfit in table[start : start + args.batch_size].tolist()
            ]
            results[name] += model.score_outfit(outfits, top_k=1)
    scores = torch.tensor([result["score"] for result in results["real"] + results["spoiled"]])
    labels = torch.cat([torch.ones(len(rows)), torch.zeros(len(rows))])
    named = [slots.index(result["weakest"]["slot"]) for result in results["spoiled"]]
    report = {
        "outfits": len(rows),
        "skipped": len(split) - len(rows),
        "auc": roc_auc(scores, labels),
        "auc_chance": 0.5,
        "weakest_is_spoiled_slot": float((torch.tensor(named) == swapped).double().mean()),
        "weakest_chance": 1 / len(slots),
        "mean_score_real": float(scores[: len(rows)].mean()),
        "mean_score_spoiled": float(scores[len(rows) :].mean()),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    sys.exit(run_command(main))
