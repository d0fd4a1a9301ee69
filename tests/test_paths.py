"""`umbert_hf.utils.paths` on its own: the output check's every rule and message, `first_line` and `run_command`.

The command-by-command matrix is `test_output_safety.py`; these pin the function's exact behaviour (hand-made
folders, exact messages), so that a changed rule or a message that loses the path fails here first.
"""

import os
from pathlib import Path

import pytest

from umbert_hf.utils import paths
from umbert_hf.utils.paths import OutputPathError, check_output, first_line, foreign_file, run_command


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """A working folder and a home folder of their own, with a file each, beside `tmp_path/out`."""
    for name in ("work", "home"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text(name)
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def refused(match: str, *args, **kwargs) -> str:
    with pytest.raises(OutputPathError) as info:
        check_output(*args, **kwargs)
    message = str(info.value)
    assert match in message, message
    assert len(message.splitlines()) == 1
    return message


# --- first_line --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ValueError("one\ntwo"), "one"),
        (ValueError("\n   \n  second  \nthird"), "second"),
        (ValueError(""), "ValueError"),
        (FileNotFoundError(), "FileNotFoundError"),
        (ValueError("a\x00b\x07c"), "a\\x00b\\x07c"),
        (ValueError("tab\there"), "tab\\there"),
        (ValueError("zero\u200bwidth"), "zero\\u200bwidth"),
        (ValueError("café ✓"), "café ✓"),
    ],
)
def test_first_line_is_the_first_non_empty_line_with_control_characters_escaped(error, line):
    assert first_line(error) == line


# --- run_command -------------------------------------------------------------------------------------------------


def test_run_command_passes_argv_as_given_and_none_as_none():
    seen = []
    assert run_command(seen.append, None) == 0
    assert run_command(seen.append, ("--a", "1")) == 0
    assert seen == [None, ["--a", "1"]]


@pytest.mark.parametrize(("returned", "status"), [(None, 0), ({"metric": 1.0}, 0), (1, 1), (2, 2), (0, 0), (True, 0)])
def test_run_command_returns_the_commands_own_status_or_0(returned, status):
    assert run_command(lambda argv: returned, []) == status


def test_run_command_reports_an_interrupt_with_status_130(capsys):
    def interrupted(argv):
        raise KeyboardInterrupt

    assert run_command(interrupted, [], interrupted="interrupted: no output was written") == 130
    captured = capsys.readouterr()
    assert captured.err == "interrupted: no output was written\n" and captured.out == ""
    assert run_command(interrupted, []) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_run_command_prints_the_first_line_of_a_user_error_on_stderr(capsys):
    def damaged(argv):
        raise OSError("model.safetensors: header too large\nTraceback-like detail")

    assert run_command(damaged, []) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: model.safetensors: header too large\n" and captured.out == ""


# --- check_output: inputs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dataset", "--dataset", "-dataset"])
def test_an_input_is_named_by_its_flag_however_the_name_is_given(here, name):
    dataset = here / "ds"
    dataset.mkdir()
    message = refused("is the input --dataset '", dataset, {name: str(dataset)})
    assert message == (
        f"--output_dir {str(dataset)!r} is the input --dataset {str(dataset)!r}: nothing is written into, over or "
        "around an input; choose another --output_dir."
    )


def test_inside_and_around_an_input_file_or_folder(here):
    table = here / "tables" / "emb.parquet"
    table.parent.mkdir()
    table.write_bytes(b"PAR1")
    inputs = {"embeddings": str(table), "model": None, "hub": "org/model"}
    refused(f"--output {str(table)!r} is the input --embeddings", table, inputs, flag="--output", kind="file")
    refused(f"{str(table.parent)!r} contains the input --embeddings", table.parent, inputs)
    refused("is inside the input --embeddings", table / "sub", inputs)  # a path below a file: inside it
    assert check_output(here / "elsewhere", inputs) == Path(os.path.realpath(here / "elsewhere"))


def test_a_symlink_onto_an_input_is_the_input(here):
    dataset = here / "ds"
    dataset.mkdir()
    (here / "link").symlink_to(dataset)
    refused("is the input --dataset", here / "link", {"dataset": str(dataset)})


# --- check_output: the working and home folders --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "message"),
    [(".", "is the working folder or contains it"), ("..", "is the working folder or contains it")],
)
def test_the_working_folder_and_its_parents_are_refused(here, where, message):
    text = refused(message, where, overwrite=True)
    assert text.startswith(f"--output_dir {where!r} ") and str(here / "work") in text


def test_the_home_folder_is_refused_even_when_the_working_folder_is_gone(here, monkeypatch):
    def no_working_folder():
        raise FileNotFoundError("deleted")

    monkeypatch.setattr(paths.Path, "cwd", staticmethod(no_working_folder))
    text = refused("is the home folder or contains it", here / "home", flag="--write_space")
    assert text.startswith(f"--write_space {str(here / 'home')!r} ")


# --- check_output: files and folders -------------------------------------------------------------------------------


def test_a_file_where_a_folder_goes_and_a_folder_where_a_file_goes(here):
    notes = here / "notes.txt"
    notes.write_text("mine")
    assert refused("is a file, not a folder", notes) == f"--output_dir {str(notes)!r} is a file, not a folder."
    below = refused("cannot be created", notes / "out")
    assert below == f"--output_dir {str(notes / 'out')!r} cannot be created: {str(notes)!r} is a file."
    folder = here / "folder"
    folder.mkdir()
    assert refused("is a folder", folder, kind="file") == f"--output_dir {str(folder)!r} is a folder, not a file."
    file_below = refused("cannot be created", notes / "x.json", kind="file", flag="--output_file")
    assert file_below == f"--output_file {str(notes / 'x.json')!r} cannot be created: {str(notes)!r} is a file."


def test_an_existing_file_is_replaced_only_with_overwrite(here):
    table = here / "emb.parquet"
    check_output(table, kind="file")  # new: fine
    table.write_bytes(b"mine")
    message = refused("already exists", table, flag="--output", kind="file")
    assert message == f"--output {str(table)!r} already exists; pass --overwrite to replace it."
    assert check_output(table, kind="file", overwrite=True) == Path(os.path.realpath(table))


# --- check_output: existing folders --------------------------------------------------------------------------------


def test_an_empty_or_new_folder_is_always_taken(here):
    (here / "empty").mkdir()
    for existing in ("new", "reuse", "replace"):
        check_output(here / "empty", existing=existing)
        check_output(here / "new" / "deeper", existing=existing)


def test_a_folder_the_command_did_not_write_is_refused_by_default_and_with_overwrite(here):
    mine = here / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    default = refused("was not written by", mine)
    assert default == (
        f"--output_dir {str(mine)!r} was not written by this command (it holds no marker): choose a new or empty "
        "folder, or remove it yourself."
    )
    named = refused("was not written by augment", mine, markers=(".umbert_augment",), command="augment", overwrite=True)
    assert "(it holds no .umbert_augment)" in named


def test_a_folder_the_command_wrote_needs_overwrite_by_default_and_is_reused_when_asked(here):
    ours = here / "ours"
    ours.mkdir()
    (ours / ".umbert_run").touch()
    (ours / "README.md").write_text("the card of that run")
    message = refused("already exists", ours, markers=(".umbert_run",))
    assert message == f"--output_dir {str(ours)!r} already exists; pass --overwrite to replace it."
    check_output(ours, markers=(".umbert_run",), overwrite=True)
    check_output(ours, markers=(".umbert_*",), existing="reuse")  # markers are patterns
    new = refused("not empty", ours, markers=(".umbert_run",), existing="new", flag="--write_space")
    assert new == f"--write_space {str(ours)!r} exists and is not empty: choose a new or empty folder."


def test_overwrite_refuses_a_folder_holding_a_file_the_command_does_not_write(here):
    built = here / "built"
    (built / "outfits").mkdir(parents=True)
    (built / "build_summary.json").write_text("{}")
    (built / "outfits" / "train.parquet").write_bytes(b"PAR1")
    written = ("README.md", "build_summary.json", "*/*.parquet")
    kwargs = {"markers": ("build_summary.json",), "written": written, "command": "`build`", "overwrite": True}
    check_output(built, **kwargs)
    (built / "outfits" / "notes.md").write_text("mine")
    message = refused("holds outfits/notes.md", built, **kwargs)
    assert (
        message
        == f"--output_dir {str(built)!r} holds outfits/notes.md, which `build` does not write; move it out first."
    )


def test_foreign_file_lists_the_first_file_no_pattern_matches(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(b"jpg")
    (tmp_path / "a.json").write_text("{}")
    patterns = ("*.json", "images/*")
    assert foreign_file(tmp_path, patterns) is None
    (tmp_path / "zz_notes.txt").write_text("mine")
    (tmp_path / "b_notes.txt").write_text("mine")
    assert foreign_file(tmp_path, patterns) == "b_notes.txt"  # sorted: the first
    (tmp_path / "b_notes.txt").unlink()
    (tmp_path / "zz_notes.txt").unlink()
    (tmp_path / "linked").symlink_to(tmp_path / "images", target_is_directory=True)
    assert foreign_file(tmp_path, patterns) == "linked"  # a link to a folder is not one of ours
    (tmp_path / "linked").unlink()
    (tmp_path / "deep" / "er").mkdir(parents=True)
    assert foreign_file(tmp_path, patterns) is None  # empty folders hold nothing of the user's
    (tmp_path / "deep" / "er" / "x.json").write_text("{}")
    assert foreign_file(tmp_path, patterns) == "deep/er/x.json"
