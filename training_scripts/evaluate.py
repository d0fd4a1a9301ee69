"""Evaluate an umBERT/WumBERT, or a baseline, with every outfit-completion metric: `accelerate launch training_scripts/evaluate.py --help`.

The flags and the work live in `umbert_hf.commands.evaluate`, which the demo and the hyperparameter search reuse.
"""

import sys

from umbert_hf.commands.evaluate import main, parse_args
from umbert_hf.utils.paths import run_command

__all__ = ["main", "parse_args"]

if __name__ == "__main__":
    sys.exit(run_command(main))
