"""The README and the pages under docs/ show commands that run as written, and links that resolve.

Every command shown in those pages (fenced shell blocks, and inline code that starts with a command) is checked:

- `umbert-hf ...`, `python -m umbert_hf...` / `python -m dataset_builder ...`, `python training_scripts/X.py ...`,
  `python benchmarks/X.py ...`, `accelerate launch [its flags] training_scripts/X.py ...` and a bare `X.py ...` of
  `training_scripts/`: each flag is one that the command's own argparse parser accepts (and a literal value given to
  a flag with choices is one of them). The parser is the one that answers `--help` for that command, found in this
  process: the script or module runs as `__main__` (runpy) with `--help` in `sys.argv`, and
  `argparse.ArgumentParser.print_help` records the parser that prints. So the test follows the parsers wherever the
  package moves them, without a subprocess per command.
- `make X`: the target exists in the Makefile.
- `pip install 'umbert-hf[EXTRA,...]'`: each extra exists.

Every relative link between README.md, docs/*.md and tests/README.md resolves: the file exists and, for a `#anchor`,
the target page has a heading with that GitHub anchor.
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import importlib
import importlib.util
import io
import re
import runpy
import shlex
import sys
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED_PAGES = [*DOC_PAGES, ROOT / "tests" / "README.md"]
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "zsh"}
SCRIPT_FOLDERS = ("training_scripts", "benchmarks")

FENCE = re.compile(r"^[ \t]*(```+|~~~+)\s*([\w+-]*)[^\n]*\n(.*?)^[ \t]*\1\s*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


# --- reading the pages --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    page: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def split_fences(text: str) -> tuple[list[tuple[str, str, int]], str]:
    """The fenced blocks (language, body, line of the body's first line) and the text with those blocks blanked."""
    blocks = []
    outside = text
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start(3)) + 1
        blocks.append((match.group(2).lower(), match.group(3), line))
        blank = "".join("\n" if char == "\n" else " " for char in match.group(0))
        outside = outside[: match.start()] + blank + outside[match.end() :]
    return blocks, outside


def shell_lines(body: str, first_line: int) -> list[tuple[int, str]]:
    """Logical lines of a shell block: backslash continuations joined, comments and blank lines dropped."""
    lines, pending, start = [], "", first_line
    for number, raw in enumerate(body.splitlines(), first_line):
        if not pending:
            start = number
        stripped = raw.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = (pending + stripped).strip()
        pending = ""
        if line and not line.startswith("#"):
            lines.append((start, line))
    return lines


def page_commands(page: Path) -> list[Command]:
    text = page.read_text(encoding="utf-8")
    blocks, outside = split_fences(text)
    found = []
    for language, body, first_line in blocks:
        if language in SHELL_LANGUAGES:
            found += [Command(page, line, command) for line, command in shell_lines(body, first_line)]
    for match in INLINE_CODE.finditer(outside):
        span = " ".join(match.group(1).split())
        if command_kind(tokenize(span)) is not None:
            found.append(Command(page, outside.count("\n", 0, match.start()) + 1, span))
    return found


def tokenize(command: str) -> list[str]:
    """Shell words, without comments, environment assignments, `[ ]` of optional parts and `...` placeholders."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    words = [word.removeprefix("[") for word in words]
    words = [word[:-1] if word.count("]") > word.count("[") else word for word in words]
    words = [word for word in words if word and word not in ("...", "|")]
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        words = words[1:]
    return words


def command_kind(words: list[str]) -> str | None:
    """What runs the command: make, pip, umbert-hf, a module, a script, or None for anything else (git, ...)."""
    if not words:
        return None
    if words[0] == "make":
        return "make"
    if words[:2] == ["pip", "install"]:
        return "pip"
    if words[0] == "umbert-hf":
        return "entry"
    if words[0] in ("python", "python3") and len(words) > 2 and words[1] == "-m":
        return "module" if words[2].split(".")[0] in ("umbert_hf", "dataset_builder") else None
    if words[0] in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
        return "script"
    if words[:2] == ["accelerate", "launch"]:
        return "accelerate"
    if re.fullmatch(r"\w+\.py", words[0]) and (ROOT / "training_scripts" / words[0]).is_file():
        return "script"
    return None


ALL_COMMANDS = [command for page in DOC_PAGES for command in page_commands(page)]
CHECKED = [command for command in ALL_COMMANDS if command_kind(tokenize(command.text)) is not None]


# --- finding the parser that answers --help -----------------------------------------------------------------------


@dataclass
class Help:
    parser: argparse.ArgumentParser | None
    status: object
    output: str

    def option_strings(self) -> set[str]:
        if self.parser is not None:
            return set(self.parser._option_string_actions)
        return set(re.findall(r"(?<![\w-])--?[A-Za-z][\w-]*", self.output))


def console_script(name: str) -> str:
    """`module:function` of a console script, from setup.cfg (the source), else from the installed metadata."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    scripts = config.get("options.entry_points", "console_scripts", fallback="")
    for line in scripts.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    from importlib.metadata import entry_points

    (entry,) = [entry for entry in entry_points(group="console_scripts") if entry.name == name]
    return entry.value


def script_path(words: list[str]) -> Path:
    name = next(word for word in words if word.endswith(".py"))
    path = ROOT / name
    if not path.is_file() and "/" not in name:
        path = ROOT / "training_scripts" / name
    return path


@cache
def answer_help(kind: str, target: str, subcommands: tuple[str, ...]) -> Help:
    """Run the command with `--help` in this process; the parser whose `print_help` ran is the command's."""
    printed: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.print_help

    def recording_print_help(self, file=None):
        printed.append(self)
        return original(self, file)

    argv = [*subcommands, "--help"]
    output = io.StringIO()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    status: object = None
    argparse.ArgumentParser.print_help = recording_print_help
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if kind == "entry":
                    module, _, function = console_script(target).partition(":")
                    sys.argv = [target, *argv]
                    status = getattr(importlib.import_module(module), function)(argv)
                elif kind == "module":
                    sys.argv = [target, *argv]
                    runpy.run_module(target, run_name="__main__", alter_sys=True)
                else:
                    sys.argv = [target, *argv]
                    sys.path.insert(0, str(Path(target).parent))
                    runpy.run_path(target, run_name="__main__")
            except SystemExit as exit_:
                status = exit_.code
    finally:
        argparse.ArgumentParser.print_help = original
        sys.argv[:], sys.path[:] = saved_argv, saved_path
    return Help(printed[-1] if printed else None, status, output.getvalue())


@cache
def accelerate_launch_options() -> set[str]:
    from accelerate.commands.launch import launch_command_parser

    return set(launch_command_parser()._option_string_actions)


def check_flags(words: list[str], help_: Help, what: str) -> list[str]:
    """The problems of the flags in `words` against the parser (or help text) of `what`."""
    problems = []
    if help_.parser is None and not help_.output.strip():
        return [f"`{what} --help` printed nothing (exit status {help_.status!r})"]
    if help_.status not in (0, None):
        return [f"`{what} --help` failed (exit status {help_.status!r}): {help_.output.strip()[-400:]}"]
    accepted = help_.option_strings()
    actions = help_.parser._option_string_actions if help_.parser is not None else {}
    for index, word in enumerate(words):
        if not re.match(r"--?[A-Za-z]", word):
            continue
        flag, has_value, value = word.partition("=")
        if flag not in accepted:
            problems.append(f"`{what}` has no flag {flag}")
            continue
        action = actions.get(flag)
        if action is None or not action.choices or action.nargs not in (None, "?"):
            continue
        if not has_value:
            value = words[index + 1] if index + 1 < len(words) and not words[index + 1].startswith("-") else ""
        literal = value and not re.search(r"[A-Z]{2}|[|.]{1}|\$", value)
        if literal and value not in action.choices:
            problems.append(f"`{what} {flag} {value}`: {value!r} is not one of {sorted(map(str, action.choices))}")
    return problems


def split_subcommands(arguments: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Leading words that are no flags (`build`, `complete`) and the rest."""
    subcommands = []
    for word in arguments:
        if word.startswith("-"):
            break
        subcommands.append(word)
    return tuple(subcommands), arguments[len(subcommands) :]


@cache
def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set()
    for match in re.finditer(r"^([A-Za-z0-9_.][\w. -]*?)\s*:(?!=)", text, re.MULTILINE):
        targets.update(match.group(1).split())
    return targets


@cache
def package_extras() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    if config.has_section("options.extras_require"):
        return set(config.options("options.extras_require"))
    from importlib.metadata import metadata

    return set(metadata("umbert-hf").get_all("Provides-Extra") or [])


def command_problems(text: str) -> list[str]:
    """Every problem of one documented command; [] when it runs as written (as far as its flags go)."""
    words = tokenize(text)
    kind = command_kind(words)
    if kind == "make":
        missing = sorted(
            {word for word in words[1:] if not word.startswith("-") and "=" not in word} - makefile_targets()
        )
        return [f"the Makefile has no target {target}" for target in missing]
    if kind == "pip":
        problems = []
        for word in words[2:]:
            match = re.fullmatch(r"umbert-hf\[([\w,-]+)\]", word)
            if match:
                problems += [
                    f"no extra {extra!r}" for extra in match.group(1).split(",") if extra not in package_extras()
                ]
        return problems
    if kind == "entry":
        subcommands, flags = split_subcommands(words[1:])
        if not subcommands and not flags:
            return []
        return check_flags(flags, answer_help("entry", "umbert-hf", subcommands), " ".join(["umbert-hf", *subcommands]))
    if kind == "module":
        module = words[2]
        if importlib.util.find_spec(module) is None:
            return [f"no module {module}"]
        subcommands, flags = split_subcommands(words[3:])
        if not subcommands and not flags:
            return []
        help_ = answer_help("module", module, subcommands)
        return check_flags(flags, help_, " ".join(["python -m", module, *subcommands]))
    # a script, run by python or by accelerate launch
    problems = []
    position = next((index for index, word in enumerate(words) if word.endswith(".py")), len(words))
    if kind == "accelerate":
        problems += [
            f"`accelerate launch` has no flag {word.split('=')[0]}"
            for word in words[2:position]
            if word.startswith("-") and word.split("=")[0] not in accelerate_launch_options()
        ]
    if position == len(words):  # `accelerate launch` alone, in prose
        return problems
    path = script_path(words)
    if not path.is_file():
        return [*problems, f"no script {path.relative_to(ROOT)}"]
    subcommands, flags = split_subcommands(words[position + 1 :])
    if not subcommands and not flags:
        return problems
    source = path.read_text(encoding="utf-8")
    if path.parent.name != "training_scripts" and not re.search(r"argparse|parse_args", source):
        return [*problems, f"{path.relative_to(ROOT)} takes no flags (it has no argparse parser)"]
    help_ = answer_help("script", str(path), subcommands)
    return problems + check_flags(flags, help_, " ".join([str(path.relative_to(ROOT)), *subcommands]))


# --- the tests ----------------------------------------------------------------------------------------------------


def test_the_pages_show_commands_of_every_kind():
    """The extraction finds the commands (a broken extractor would make every other test pass vacuously)."""
    kinds = {command_kind(tokenize(command.text)) for command in CHECKED}
    assert {"make", "pip", "entry", "module", "script", "accelerate"} <= kinds
    assert len(CHECKED) >= 40
    assert any(command.text.startswith("make demo") for command in CHECKED)
    assert any(command.text.startswith("make test") for command in CHECKED)


@pytest.mark.parametrize("command", CHECKED, ids=[f"{command.where}:{command.text[:60]}" for command in CHECKED])
def test_documented_command_uses_only_flags_its_parser_accepts(command):
    assert command_problems(command.text) == [], f"{command.where}: {command.text}"


@pytest.mark.parametrize(
    "text",
    [
        "umbert-hf build --raw_dir raw --output_dir out --no_such_flag",
        "umbert-hf no-such-command --model m",
        "python training_scripts/finetune.py --dataset d --output_dir o --no_such_flag 1",
        "accelerate launch --no_such_launch_flag training_scripts/pretrain.py --dataset d",
        "python -m dataset_builder build --raw_dir r --split_type sideways",
        "make no-such-target",
        "pip install 'umbert-hf[no_such_extra]'",
    ],
)
def test_the_checker_finds_a_bad_command(text):
    assert command_problems(text) != []


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: the rendered text, lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(page: Path) -> set[str]:
    _, outside = split_fences(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(outside):
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.add(anchor if count == 0 else f"{anchor}-{count}")
    return result


def page_links(page: Path) -> list[tuple[int, str]]:
    _, outside = split_fences(page.read_text(encoding="utf-8"))
    outside = INLINE_CODE.sub(lambda match: " " * len(match.group(0)), outside)
    return [(outside.count("\n", 0, match.start()) + 1, match.group(1)) for match in LINK.finditer(outside)]


LINKS = [
    (page, line, target)
    for page in LINKED_PAGES
    for line, target in page_links(page)
    if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto:
]


@pytest.mark.parametrize(
    "page, line, target", LINKS, ids=[f"{page.relative_to(ROOT)}:{line}:{target}" for page, line, target in LINKS]
)
def test_relative_link_resolves(page, line, target):
    path, _, anchor = target.partition("#")
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{page.relative_to(ROOT)}:{line}: {target}: no file {path}"
    if anchor:
        assert destination.suffix == ".md", f"{page.relative_to(ROOT)}:{line}: {target}: an anchor into a non-page"
        assert anchor in anchors(destination), (
            f"{page.relative_to(ROOT)}:{line}: {target}: no heading with anchor #{anchor} in "
            f"{destination.relative_to(ROOT)}"
        )


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, target in page_links(ROOT / "README.md")}
    unlinked = [page.relative_to(ROOT) for page in DOC_PAGES[1:] if page.resolve() not in linked]
    assert unlinked == []


def test_github_anchors_follow_githubs_rule():
    assert github_anchor("Outfit completion with `pipeline()`") == "outfit-completion-with-pipeline"
    assert github_anchor("`--overwrite` replaces only what the command wrote") == (
        "--overwrite-replaces-only-what-the-command-wrote"
    )
    assert github_anchor("How the recipe was chosen (validation split)") == "how-the-recipe-was-chosen-validation-split"
