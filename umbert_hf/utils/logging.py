"""Logging of the code that runs under Accelerate (`umbert_hf.training`): main process only, safe before `Accelerator()`.

Model files log through `transformers.utils.logging`, the rest of the package through its `get_logger` too; the
commands show the package's INFO messages (`show_info_messages`, called by `umbert_hf.utils.paths.run_command`).
"""

import functools
import logging
from typing import Any


@functools.cache
def _multi_process_logger_class() -> type:
    """accelerate's logger, also usable before the `Accelerator` exists (a flag check, a search before its first
    trial): until then nothing tells the main process, so it logs on every process instead of raising. Built on first
    use, so that a command's `--help` does not import accelerate (and torch)."""
    from accelerate.logging import MultiProcessAdapter
    from accelerate.state import is_initialized

    class MultiProcessLogger(MultiProcessAdapter):
        def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
            if is_initialized():
                super().log(level, msg, *args, **kwargs)
            elif self.isEnabledFor(level):
                kwargs.pop("main_process_only", None)
                kwargs.pop("in_order", None)
                kwargs.setdefault("stacklevel", 2)
                self.logger.log(level, msg, *args, **kwargs)

    return MultiProcessLogger


def get_logger(name: str) -> logging.LoggerAdapter:
    """The logger of the modules that run under Accelerate (`umbert_hf.training`), as `accelerate.logging.get_logger`:
    messages go out on the main process only, unless logged with `main_process_only=False`."""
    return _multi_process_logger_class()(logging.getLogger(name), {})


def show_info_messages() -> None:
    """Show the package's INFO messages (a line per epoch, early stopping, trials) on stderr, as the Hugging Face
    example scripts do; other libraries stay at WARNING. A root handler set up before (by the caller, pytest) is kept.
    """
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S")
    logging.getLogger("umbert_hf").setLevel(logging.INFO)


__all__ = ["get_logger", "show_info_messages"]
