"""Atomic writes (`umbert_hf.utils.files`) and folder pushes (`umbert_hf.utils.hub`)."""

import json
import os

import pytest

from umbert_hf.utils.files import HOST_TAG, atomic_path, atomic_write, install_folder, write_json
from umbert_hf.utils.hub import push_folder_to_hub


def names(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_atomic_write_writes_text_and_bytes_and_leaves_nothing_else(tmp_path):
    atomic_write(tmp_path / "a.txt", "héllo\n")
    atomic_write(tmp_path / "sub" / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert names(tmp_path) == ["a.txt", "sub"] and names(tmp_path / "sub") == ["b.bin"]


def test_the_temporary_is_a_hidden_sibling_named_after_its_process(tmp_path):
    with atomic_path(tmp_path / "table.parquet") as temporary:
        assert temporary.parent == tmp_path
        assert temporary.name.startswith(f".tmp-table.parquet-{os.getpid()}.{HOST_TAG}-")
        assert not temporary.exists()  # the writer creates it
        temporary.write_text("x")
    assert names(tmp_path) == ["table.parquet"]


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failing_block_leaves_the_target_untouched_and_no_temporary(tmp_path, error):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(type(error)):
        with atomic_path(target) as temporary:
            temporary.write_text("half writ")
            raise error
    assert target.read_text() == "old"
    assert names(tmp_path) == ["metrics.json"]


def test_a_folder_in_the_way_of_a_file_fails_and_leaves_no_temporary(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    (tmp_path / "metrics.json" / "mine.txt").write_text("keep")
    with pytest.raises(OSError):
        atomic_write(tmp_path / "metrics.json", "{}")
    assert names(tmp_path) == ["metrics.json"] and names(tmp_path / "metrics.json") == ["mine.txt"]


def test_a_hard_linked_original_is_replaced_never_modified(tmp_path):
    original = tmp_path / "source" / "README.md"
    original.parent.mkdir()
    original.write_text("the dataset's card")
    copy = tmp_path / "copy" / "README.md"
    copy.parent.mkdir()
    os.link(original, copy)
    atomic_write(copy, "the augmented card")
    assert original.read_text() == "the dataset's card"
    assert copy.read_text() == "the augmented card"
    assert not os.path.samefile(original, copy)


def test_write_json_keeps_its_format(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1, "a": [1.5, None]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1.5,\n    null\n  ],\n  "b": 1\n}'
    with pytest.raises(TypeError):
        write_json(tmp_path / "m.json", {"a": object()})  # not serialisable: the old file stays, nothing else
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1.5, None], "b": 1}
    assert names(tmp_path) == ["m.json"]


def test_a_folder_target_is_installed_and_replaces_an_older_one(tmp_path):
    target = tmp_path / "dataset"
    with atomic_path(target, folder=True) as folder:
        assert folder.is_dir() and folder.parent == tmp_path
        (folder / "first.parquet").write_text("1")
    assert names(target) == ["first.parquet"]
    with atomic_path(target, folder=True) as folder:
        (folder / "second.parquet").write_text("2")
        assert names(target) == ["first.parquet"]  # the old one stays in place until the block completes
    assert names(target) == ["second.parquet"]
    assert names(tmp_path) == ["dataset"]  # nothing aside or temporary is left


def test_a_failing_folder_block_leaves_the_old_folder_and_no_temporary(tmp_path):
    target = tmp_path / "dataset"
    target.mkdir()
    (target / "old.parquet").write_text("old")
    with pytest.raises(ValueError):
        with atomic_path(target, folder=True) as folder:
            (folder / "new.parquet").write_text("new")
            raise ValueError("bad row")
    assert names(target) == ["old.parquet"] and names(tmp_path) == ["dataset"]


def test_a_temporary_folder_gets_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "dataset", folder=True) as folder:
            assert folder.stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(umask)


def test_install_folder_puts_the_old_folder_back_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    target, new = tmp_path / "epoch_1", tmp_path / ".tmp-epoch_1"
    target.mkdir()
    (target / "old.bin").write_text("old")
    new.mkdir()
    (new / "new.bin").write_text("new")
    real_replace = os.replace

    def failing_replace(source, destination):
        if os.fspath(source) == os.fspath(new):
            raise OSError("no space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="no space left"):
        install_folder(new, target)
    monkeypatch.undo()
    assert names(target) == ["old.bin"] and names(new) == ["new.bin"]
    assert names(tmp_path) == [".tmp-epoch_1", "epoch_1"]  # the aside folder is gone
    install_folder(new, target)
    assert names(target) == ["new.bin"] and names(tmp_path) == ["epoch_1"]


def test_a_pushed_folder_leaves_out_temporaries_and_ignored_patterns(hub_env, tmp_path):
    folder = tmp_path / "run"
    for name in ("config.json", "sub/model.bin", ".tmp-metrics.json-1.abc-x", "sub/.tmp-a-1.abc-x", "epoch_1/s.bin"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("x")
    (folder / ".old-sub-1.abc-x" / "sub").mkdir(parents=True)
    (folder / ".old-sub-1.abc-x" / "sub" / "model.bin").write_text("x")
    repo_id = hub_env.unique_repo_id("pushed")
    commit = push_folder_to_hub(folder, repo_id, repo_type="dataset", private=True, ignore_patterns=["epoch_*"])
    assert commit.startswith("http")
    files = set(hub_env.api.list_repo_files(repo_id, repo_type="dataset"))
    assert files - {".gitattributes"} == {"config.json", "sub/model.bin"}
