"""Logging of the code that runs under Accelerate (`umbert_hf.training`): main process only, safe before `Accelerator()`.

Model files log through `transformers.utils.logging`, the rest of the package through its `get_logger` too; the
training scripts show the package's INFO messages (`umbert_hf.training.loop.run_script`).
"""

from typing import Any

from accelerate.logging import MultiProcessAdapter
from accelerate.logging import get_logger as accelerate_get_logger
from accelerate.state import is_initialized


class _MultiProcessLogger(MultiProcessAdapter):
    """accelerate's logger, also usable before the `Accelerator` exists (a flag check, a search before its first
    trial): until then nothing tells the main process, so it logs on every process instead of raising."""

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if is_initialized():
            super().log(level, msg, *args, **kwargs)
        elif self.isEnabledFor(level):
            kwargs.pop("main_process_only", None)
            kwargs.pop("in_order", None)
            kwargs.setdefault("stacklevel", 2)
            self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str) -> MultiProcessAdapter:
    """The logger of the modules that run under Accelerate (`umbert_hf.training`), as `accelerate.logging.get_logger`:
    messages go out on the main process only, unless logged with `main_process_only=False`."""
    return _MultiProcessLogger(accelerate_get_logger(name).logger, {})


__all__ = ["get_logger"]
