"""Fine-tuning step throughput (outfits/s) at the original umBERT shapes.

    python benchmarks/bench_finetune_step.py [--batch_size 128] [--steps 20]

Compares one umBERT fill-in-the-blank step (expansion, forward, contrastive or MSE loss, backward, AdamW step) with a
bare `nn.TransformerEncoder` forward+backward of the same shape (batch x slots copies of length-4 outfits), in fp32
and under bf16 autocast.
"""

import argparse
import time

import torch

from umbert_hf import UmBertConfig, UmBertModel, expand_fill_in_the_blank


def timed_steps(step, steps: int) -> float:
    for _ in range(3):
        step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=128, help="outfits per step (before the FITB expansion)")
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_hidden_layers", type=int, default=6)
    parser.add_argument("--num_attention_heads", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    config = UmBertConfig(
        hidden_size=args.hidden_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
    )
    slots = config.num_categories
    outfits = torch.randn(args.batch_size, slots, args.hidden_size)

    bare = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(
            args.hidden_size, args.num_attention_heads, 4 * args.hidden_size, 0.1, "gelu", batch_first=True
        ),
        args.num_hidden_layers,
        enable_nested_tensor=False,
    )
    bare_input = outfits.repeat_interleave(slots, dim=0)

    def bare_step():
        bare(bare_input).sum().backward()

    figures = {}
    for loss_type in ("contrastive", "mse"):
        config.loss_type = loss_type
        model = UmBertModel(config).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def umbert_step(model=model, optimizer=optimizer):
            expanded, masked_positions = expand_fill_in_the_blank(outfits)
            loss = model(inputs_embeds=expanded, masked_positions=masked_positions, labels=expanded).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        figures[f"umbert_{loss_type}_outfits_per_s"] = args.batch_size / timed_steps(umbert_step, args.steps)
        if loss_type == "contrastive":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                figures["umbert_contrastive_bf16_outfits_per_s"] = args.batch_size / timed_steps(
                    umbert_step, args.steps
                )
    figures["bare_encoder_outfits_per_s"] = args.batch_size / timed_steps(bare_step, args.steps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        figures["bare_encoder_bf16_outfits_per_s"] = args.batch_size / timed_steps(bare_step, args.steps)
    figures["umbert_vs_bare_slowdown"] = (
        figures["bare_encoder_outfits_per_s"] / figures["umbert_contrastive_outfits_per_s"]
    )
    print(
        f"fine-tuning step: {args.batch_size} outfits x {slots} masked copies, hidden {args.hidden_size}, "
        f"{args.num_hidden_layers} layers, {args.num_attention_heads} heads, {torch.get_num_threads()} threads"
    )
    for name, value in figures.items():
        print(f"  {name:40s} {value:10.2f}")
    return figures


if __name__ == "__main__":
    main()
