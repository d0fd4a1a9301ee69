"""Cost of the catalogue-wide contrastive negatives: one fine-tuning step with the batch's negatives against one with
every catalogue item of the blank's category, at the MANGO shapes of the default recipe.

    python benchmarks/bench_contrastive_negatives.py [--embedding_size 1664] [--hidden_size 256] [--catalogue 4662]

A step is the fill-in-the-blank expansion, forward, loss, backward and AdamW update of umBERT with the scripts'
model defaults (2 layers, 4 heads), on random item embeddings and outfits of catalogue rows. Each figure is the best
of `--repeats` timings (other load on the machine only ever slows a run down). `main` returns the figures.
"""

import argparse
import time

import torch

from umbert_hf import UmBertConfig, UmBertModel, expand_fill_in_the_blank
from umbert_hf.configuration_umbert import CONTRASTIVE_NEGATIVES


def best_step_seconds(step, steps: int, repeats: int) -> float:
    step()  # warm-up
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        timings.append((time.perf_counter() - start) / steps)
    return min(timings)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=64, help="outfits per step (before the FITB expansion)")
    parser.add_argument("--embedding_size", type=int, default=1664, help="item embedding size (Lite0 + MiniLM)")
    parser.add_argument("--hidden_size", type=int, default=256)
    parser.add_argument("--catalogue", type=int, default=4662, help="catalogue items, spread over the 4 slots")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(args.seed)
    embeddings = torch.randn(args.catalogue, args.embedding_size, generator=generator)
    slots = list(UmBertConfig().categories)
    categories = [slots[row % len(slots)] for row in range(args.catalogue)]
    rows_of = [torch.arange(slot, args.catalogue, len(slots)) for slot in range(len(slots))]
    outfits = torch.stack(
        [rows[torch.randint(len(rows), (args.batch_size,), generator=generator)] for rows in rows_of], dim=1
    )  # (batch, slots) catalogue rows
    figures = {}
    for negatives in CONTRASTIVE_NEGATIVES:
        torch.manual_seed(args.seed)
        config = UmBertConfig(
            hidden_size=args.hidden_size,
            embedding_size=args.embedding_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            contrastive_negatives=negatives,
        )
        model = UmBertModel(config).train()
        model.set_catalogue([str(row) for row in range(args.catalogue)], embeddings, categories)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step(model=model, optimizer=optimizer):
            rows, masked_positions = expand_fill_in_the_blank(outfits)
            inputs = model.catalogue_embeddings[rows]
            model(inputs_embeds=inputs, masked_positions=masked_positions, labels=rows).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        figures[f"{negatives}_negatives_ms_per_step"] = 1000 * best_step_seconds(step, args.steps, args.repeats)
    figures["catalogue_vs_batch_cost"] = (
        figures["catalogue_negatives_ms_per_step"] / figures["batch_negatives_ms_per_step"]
    )
    print(
        f"contrastive negatives: {args.batch_size} outfits x {len(slots)} masked copies, items {args.embedding_size}-d, "
        f"hidden {args.hidden_size}, catalogue {args.catalogue}, {torch.get_num_threads()} threads"
    )
    for name, value in figures.items():
        print(f"  {name:36s} {value:10.2f}")
    return figures


if __name__ == "__main__":
    main()
