"""Where a command may write, and how it reports a user error: the package's one output check and one CLI runner.

Every command that writes (`build`, `synthesize`, `convert-mango`, `augment`, the training scripts, the embeddings
table, `evaluate --output_file`, the hyperparameter search, the demo and `app --write_space`) checks its output with
`check_output` before it reads any data, with the same rules:

- the output is never an input, inside an input folder, or around an input (a folder holding it);
- the output is never the working folder or the home folder, nor a folder holding either;
- a folder output is never a file (nor below one), a file output never a folder, and an existing file is replaced
  only with `--overwrite` (`overwrite=True`);
- an existing non-empty folder is taken only when the command wrote it (it holds one of the command's `markers`):
  to resume or extend it (`existing="reuse"`), or with `--overwrite` to replace it (`existing="replace"`), and
  never when it also holds a file the command does not write (`written`); `existing="new"` takes only an empty one.

`run_command` runs a command's `main` and turns a user error into one `error: ...` line and exit status 2.
`shareable_name` and `shareable_metadata` keep this machine's paths out of what is shared (configs, model cards).
"""

from __future__ import annotations

import fnmatch
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from safetensors import SafetensorError

from .logging import show_info_messages

EXIT_BAD_INPUT, EXIT_INTERRUPTED = 2, 130
# What a command reports as one `error: ...` line rather than a traceback: bad flags and data (`ValueError`), missing
# or unreadable files, Hub ids that do not resolve, a full disk (`OSError`), a damaged safetensors file.
USER_ERRORS = (ValueError, OSError, SafetensorError)


class OutputPathError(ValueError):
    """An output path that would write over, into or around something the user owns."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (the type's name for an empty one), control characters escaped:
    what `error:` prints. Messages of pyarrow, PIL or `datasets` may span lines and quote raw bytes."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is `folder` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def _protected_folders() -> list[tuple[str, Path]]:
    """The folders no command may replace or write into as a whole: the working folder and the home folder."""
    folders = []
    for what, where in (("the working folder", Path.cwd), ("the home folder", Path.home)):
        try:
            folders.append((what, _resolved(where())))
        except (OSError, RuntimeError):  # no working folder (deleted) or no home: nothing to protect
            continue
    return folders


def _holds_marker(folder: Path, markers: Sequence[str]) -> bool:
    """Whether `folder` holds an entry whose name matches one of `markers` (fnmatch patterns)."""
    return any(fnmatch.fnmatchcase(entry.name, marker) for entry in folder.iterdir() for marker in markers)


def foreign_file(folder: str | os.PathLike, written: Sequence[str]) -> str | None:
    """The first file under `folder` (a relative path, in sorted order) that matches none of the `written` patterns
    (`_matches`), if any: a file of the user's, which replacing the folder would delete."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and not path.is_symlink():
            continue
        relative = path.relative_to(folder).as_posix()
        if not any(_matches(relative, pattern) for pattern in written):
            return relative
    return None


def _matches(relative: str, pattern: str) -> bool:
    """Whether a relative path matches a pattern part by part: `*` never crosses a `/` (`*.json` is a top-level file)."""
    parts, pattern_parts = relative.split("/"), pattern.split("/")
    return len(parts) == len(pattern_parts) and all(map(fnmatch.fnmatchcase, parts, pattern_parts))


def check_output(
    output: str | os.PathLike,
    inputs: Mapping[str, str | os.PathLike | None] | None = None,
    *,
    flag: str = "--output_dir",
    kind: Literal["folder", "file"] = "folder",
    existing: Literal["new", "reuse", "replace"] = "replace",
    overwrite: bool = False,
    markers: Sequence[str] = (),
    written: Sequence[str] | None = None,
    command: str = "this command",
) -> Path:
    """Refuse an output that could touch what the user owns; return it resolved. Raises `OutputPathError`.

    `inputs` maps flag names (`"--dataset"`, `"embeddings"`, ...) to their values; values that are not existing local
    paths (Hub ids, `None`) are skipped. `markers` are the names (fnmatch patterns) of what the command writes into
    every output folder; `written` the patterns (relative paths) of everything it writes, when it knows them all.
    See the module's docstring for the rules.
    """
    resolved = _resolved(output)
    for name, value in (inputs or {}).items():
        if value is None or not os.path.lexists(value):
            continue
        source, input_flag = _resolved(value), f"--{name.lstrip('-')}"
        if resolved == source:
            relation = "is"
        elif _inside(resolved, source):
            relation = "is inside"
        elif _inside(source, resolved):
            relation = "contains"
        else:
            continue
        raise OutputPathError(
            f"{flag} {str(output)!r} {relation} the input {input_flag} {str(value)!r}: nothing is written into, over "
            f"or around an input; choose another {flag}."
        )
    for what, folder in _protected_folders():
        if _inside(folder, resolved):
            raise OutputPathError(f"{flag} {str(output)!r} is {what} or contains it ({folder}); name a new folder.")
    existing_path = next((path for path in (resolved, *resolved.parents) if path.exists()), None)
    if kind == "file":
        if resolved.is_dir():
            raise OutputPathError(f"{flag} {str(output)!r} is a folder, not a file.")
        if existing_path is not None and existing_path != resolved and not existing_path.is_dir():
            raise OutputPathError(f"{flag} {str(output)!r} cannot be created: {str(existing_path)!r} is a file.")
        if os.path.lexists(resolved) and not overwrite:
            raise OutputPathError(f"{flag} {str(output)!r} already exists; pass --overwrite to replace it.")
        return resolved
    if existing_path is not None and not existing_path.is_dir():
        if existing_path == resolved:
            raise OutputPathError(f"{flag} {str(output)!r} is a file, not a folder.")
        raise OutputPathError(f"{flag} {str(output)!r} cannot be created: {str(existing_path)!r} is a file.")
    if not resolved.is_dir() or not any(resolved.iterdir()):
        return resolved
    if existing == "new":
        raise OutputPathError(f"{flag} {str(output)!r} exists and is not empty: choose a new or empty folder.")
    if not _holds_marker(resolved, markers):
        raise OutputPathError(
            f"{flag} {str(output)!r} was not written by {command} (it holds no {markers[0] if markers else 'marker'}): "
            "choose a new or empty folder, or remove it yourself."
        )
    if existing == "replace" and not overwrite:
        raise OutputPathError(f"{flag} {str(output)!r} already exists; pass --overwrite to replace it.")
    if written is not None:
        foreign = foreign_file(resolved, written)
        if foreign is not None:
            raise OutputPathError(
                f"{flag} {str(output)!r} holds {foreign}, which {command} does not write; move it out first."
            )
    return resolved


def is_local_path(name_or_path: str | os.PathLike) -> bool:
    """Whether a dataset or encoder reference is a path of this machine (absolute or existing), not a Hub id."""
    name_or_path = os.fspath(name_or_path)
    return os.path.isabs(name_or_path) or os.path.exists(name_or_path)


def shareable_name(name_or_path: str | os.PathLike | None) -> str | None:
    """A Hub id as given; a local path reduced to its base name (a machine-local path breaks once shared or moved)."""
    if name_or_path is None or not os.fspath(name_or_path):
        return None
    name_or_path = os.fspath(name_or_path)
    return os.path.basename(os.path.normpath(name_or_path)) if is_local_path(name_or_path) else name_or_path


def shareable_metadata(metadata: dict) -> dict:
    """A copy of embeddings metadata fit for a model's `config.json`: no machine-local paths.

    `dataset`, `image_encoder` and `text_encoder` keep their Hub id or only their folder's base name, and so does any
    other absolute path in the metadata (nested values included); everything else is kept as is.
    """

    def clean(value):
        if isinstance(value, str):
            return shareable_name(value) if os.path.isabs(value) else value
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        return value

    shared = clean(dict(metadata))
    for key in ("dataset", "image_encoder", "text_encoder"):
        if isinstance(shared.get(key), str):
            shared[key] = shareable_name(shared[key])
    return shared


def run_command(main: Callable[[Any], Any], argv: Sequence[str] | None = None, interrupted: str = "interrupted") -> int:
    """Run a command's `main(argv)`; returns its exit status: its own integer, 0, or 2 for a user error.

    A user error (`USER_ERRORS`) prints one `error: ...` line on stderr instead of a traceback; anything else is a
    bug and raises. Ctrl-C prints `interrupted` and returns 130. The package's INFO messages are shown
    (`show_info_messages`). Use it as `sys.exit(run_command(main))`.
    """
    show_info_messages()
    try:
        status = main(None if argv is None else list(argv))
    except USER_ERRORS as error:
        print(f"error: {first_line(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    return status if isinstance(status, int) and not isinstance(status, bool) else 0


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "USER_ERRORS",
    "OutputPathError",
    "check_output",
    "first_line",
    "foreign_file",
    "is_local_path",
    "run_command",
    "shareable_metadata",
    "shareable_name",
]
