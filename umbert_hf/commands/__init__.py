"""The commands behind `training_scripts/`: each module's `parse_args` and `main` are the script's, importable.

`training_scripts/X.py` runs `umbert_hf.commands.X.main` under `utils.paths.run_command`; the demo
(`umbert_hf.apps.demo`) and the hyperparameter search (`commands.hparam_search`) call the same functions with the
same parsers, so their outputs carry the same flags, defaults, checks and metadata as the scripts'.
"""
