"""Applications on top of the library: the `umbert-hf` command line, rendering, model cards and the demo."""
