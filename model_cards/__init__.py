"""Model card templates of the four models (`<model_type>.md`), read by `umbert_hf.apps.modelcard`.

A package so that a wheel installs the templates beside `umbert_hf` (see `[options.package_data]` in setup.cfg);
read them with `importlib.resources.files("model_cards")`.
"""
