"""Hyperparameter search for umBERT/WumBERT: each trial pre-trains then fine-tunes, scored on validation MRR.

    pip install 'umbert-hf[search]'   # Optuna, for the default TPE sampler
    python training_scripts/hparam_search.py --dataset DATA --embeddings EMB.parquet --output_dir OUT --n_trials 20
    python training_scripts/hparam_search.py --dataset DATA --embeddings EMB.parquet --output_dir OUT \
        --sampler random --n_trials 8 --num_train_epochs_pretrain 3 --num_train_epochs_finetune 3 \
        --space '{"num_hidden_layers": [1, 2], "num_attention_heads": [1, 2]}'
    python training_scripts/hparam_search.py ... --output_dir OUT --resume   # continue an interrupted search

The space is the original project's: learning rates {1e-5, 1e-4, 1e-3} for each phase, layers {3, 6, 9, 12},
heads {1, 2, 4, 8} (those that do not divide the embedding size are skipped), dropout [0, 0.2], weight decay
[0, 0.01], Adam or AdamW. Trials run one after the other in this process (on the GPU when there is one).

Writes OUT/trial_N/{pretrain,finetune} (the outputs of pretrain.py and finetune.py; with --keep_models best, only the
best trial keeps its weights), and, after every trial, OUT/hparam_results.csv, OUT/hparam_results.json (one row per
trial: params, objective, status, duration) and OUT/best_params.json.
"""

import argparse
import sys

from umbert_hf.training.hparam_search import add_search_args, check_search_args, run_search
from umbert_hf.training.loop import run_script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_search_args(parser)
    args = parser.parse_args(argv)
    try:
        check_search_args(args)
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: list[str] | None = None) -> dict:
    return run_search(parse_args(argv))


if __name__ == "__main__":
    sys.exit(run_script(main))
