"""Atomic writes of files and folders: content goes to a hidden temporary sibling renamed into place once complete.

A crash or an interrupt therefore never leaves a truncated file or a half-written folder under the final name, and
a hard-linked original (e.g. a dataset file shared with an augmented copy) is replaced, never modified. Every writer
of the package and of `dataset_builder` goes through `atomic_path`, `atomic_write`, `write_json` or `install_folder`.
"""

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

# Temporaries are named `.tmp-<name>-<pid>.<host>-<random>` (`.old-` for a folder moved aside), so that a later run can
# tell the leftovers of a killed process from those of a live one (`clean_stale_temporaries`).
HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
# What a Hub upload of a folder never sends: the temporaries above, at any depth (fnmatch's `*` matches `/`).
TEMPORARY_PATTERNS = (".tmp-*", ".old-*", "*/.tmp-*", "*/.old-*")


def temporary_sibling(target: str | os.PathLike, kind: str = "tmp") -> Path:
    """A fresh hidden path in the folder of `target` (same file system, so renaming it is atomic)."""
    target = Path(target)
    return target.with_name(f".{kind}-{target.name}-{os.getpid()}.{HOST_TAG}-{secrets.token_hex(4)}")


def regular_file_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether `path` is a regular file that resolves inside `root` (symlinks followed): what an importer may copy.
    A symlink in a raw folder or checkout pointing elsewhere (a user's file, /etc/passwd) does not qualify."""
    resolved, folder = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return resolved.is_file() and (folder == resolved or folder in resolved.parents)


def _remove(path: Path) -> None:
    """Remove a temporary file or folder, quietly: it runs while another error propagates."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def install_folder(folder: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the finished `folder` to `target`, its sibling, replacing an existing `target` safely.

    An existing `target` is first moved aside (into a `.old-<name>-...` sibling), removed once `folder` is in place,
    and put back if that move fails: `target` is always the old folder or the new one. Only a crash between the two
    renames leaves it aside, where `clean_stale_temporaries` puts it back.
    """
    folder, target = Path(folder), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.replace(folder, target)
        return
    aside = temporary_sibling(target, "old")
    aside.mkdir()
    os.replace(target, aside / target.name)
    try:
        os.replace(folder, target)
    except BaseException:
        os.replace(aside / target.name, target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs; unknown counts as alive (never remove a live run's folder)."""
    if pid <= 0 or os.name == "nt":  # on Windows os.kill(pid, 0) would terminate the process
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OverflowError:  # beyond any pid
        return False
    except OSError:  # PermissionError: it exists, under another user
        return True
    return True


def clean_stale_temporaries(output: Path) -> list[Path]:
    """Remove the `.tmp-<name>-<pid>.<host>-*` and `.old-<name>-...` folders (as `temporary_sibling` names them)
    beside `output` that a killed run of this machine left (its process is gone); return them. The folder a killed
    `--overwrite` had moved aside is put back first when `output` is missing. Folders of live runs, of other machines
    and of unknown owner are left alone."""
    parent = output.parent
    if not parent.is_dir():
        return []
    pattern = re.compile(rf"\.(tmp|old)-{re.escape(output.name)}-(?:(\d+)\.([0-9a-f]{{6}})-)?[a-z0-9_]+")
    removed = []
    with os.scandir(parent) as entries:
        leftovers = sorted(entry.name for entry in entries if entry.name.startswith((".tmp-", ".old-")))
    for name in leftovers:
        match = pattern.fullmatch(name)
        path = parent / name
        if match is None or path.is_symlink() or not path.is_dir():
            continue
        kind, pid, host = match.groups()
        if pid is None:
            logger.warning(f"{path}: leftover of an earlier run of unknown owner; remove it yourself")
            continue
        if host != HOST_TAG or _process_alive(int(pid)):
            continue
        aside = path / output.name
        if kind == "old" and (aside.exists() or aside.is_symlink()) and not (output.exists() or output.is_symlink()):
            install_folder(aside, output)
            logger.warning(f"{output}: put back from {path}, where a killed run (pid {pid}) had moved it aside")
        shutil.rmtree(path, ignore_errors=True)
        if path.exists():
            logger.warning(f"{path}: could not remove this leftover of a killed run (pid {pid})")
            continue
        logger.warning(f"{path}: removed, the leftover of a killed run (pid {pid})")
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling path of `target` to write; move it over `target` once the block completes.

    For a file (the default) the block creates the file at the yielded path, which one `os.replace` then renames over
    `target`. With `folder=True` the yielded path is a new empty folder, installed with `install_folder`. On any
    failure or interrupt, including a `target` that cannot be replaced (a folder where a file goes), the temporary is
    removed and `target` is left as it was. Missing parent folders are created.

    Example:

    ```python
    >>> with atomic_path("table.parquet") as temporary:
    ...     pyarrow.parquet.write_table(table, temporary)
    ```
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(target)
    if folder:
        temporary.mkdir()  # with the usual permissions (umask), unlike `tempfile.mkdtemp`
    try:
        yield temporary
        if folder:
            install_folder(temporary, target)
        else:
            os.replace(temporary, target)
    except BaseException:
        _remove(temporary)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write text or bytes to `path` atomically (see `atomic_path`); returns the path."""
    with atomic_path(path) as temporary:
        if isinstance(data, bytes):
            temporary.write_bytes(data)
        else:
            temporary.write_text(data, encoding=encoding)
    return Path(path)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as JSON (indent 2, sorted keys) atomically: a crash never leaves a truncated file."""
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=True))


__all__ = [
    "regular_file_inside",
    "clean_stale_temporaries",
    "HOST_TAG",
    "TEMPORARY_PATTERNS",
    "atomic_path",
    "atomic_write",
    "install_folder",
    "temporary_sibling",
    "write_json",
]
