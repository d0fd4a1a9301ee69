"""What the command line and the web app both load: an umBERT/WumBERT model and a dataset's catalogue details.

Errors are `ValueError`s naming the flag, which `utils.paths.run_command` prints as one `error: ...` line.
"""

import os
from collections.abc import Mapping

from ..utils.paths import first_line


def load_model(name_or_path: str, trust_remote_code: bool = False):
    """`AutoModel.from_pretrained` with a clear message for a wrong path or an unreachable Hub id."""
    from safetensors import SafetensorError
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, SafetensorError) as error:  # SafetensorError: a truncated model.safetensors
        where = "folder" if os.path.isdir(name_or_path) else "model folder or Hub repo id"
        raise ValueError(f"--model {name_or_path!r}: cannot load a {where}: {first_line(error)}") from None
    if not hasattr(model, "complete"):
        raise ValueError(f"--model {name_or_path!r} is a {model.config.model_type!r} model, not umBERT or WumBERT.")
    return model.eval()


def catalogue_details(dataset: str | None) -> tuple[dict[str, str], Mapping]:
    """Titles and images (item id -> PIL image, decoded on lookup) of a built dataset's catalogue; empty without one."""
    if not dataset:
        return {}, {}
    from ..data.outfit_data import load_catalogue_details  # here: `umbert-hf --help` does not import torch

    try:
        return load_catalogue_details(dataset)
    except ValueError as error:
        raise ValueError(f"--dataset {dataset!r}: {error}") from None


__all__ = ["catalogue_details", "load_model"]
