"""Embed a dataset's catalogue into an embeddings table: `accelerate launch training_scripts/compute_embeddings.py --help`.

The flags and the work live in `umbert_hf.commands.compute_embeddings`, which the demo and the hyperparameter search reuse.
"""

import sys

from umbert_hf.commands.compute_embeddings import main, parse_args
from umbert_hf.utils.paths import run_command

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_command(main))
