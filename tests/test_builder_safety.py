"""Nothing a user owns is ever deleted, every bad input gets a one-line error: the dataset builder's side.

Each test covers one way the builder used to lose data or accept bad input: `--overwrite` over the raw folder or a
folder it did not write, leftovers of killed runs, an outfit in two splits, whitespace in ids and categories, and a
truncated JPEG.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile
from test_dataset_builder import EXPECTED_OUTFITS, HAND_FITB_VALID, SLOTS, load, make_hand_raw, tree_digest
from test_mango import make_checkout

from dataset_builder import OutputPathError, build_dataset, synthesize_polyvore
from dataset_builder.cli import main
from dataset_builder.raw import read_image_bytes
from umbert_hf.utils.files import HOST_TAG

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def hand_raw(tmp_path):
    return make_hand_raw(tmp_path / "raw")


def run(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def one_line_error(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(process.stdout)


# --------------------------------------------------------------------------------------------------------------------
# 1. --overwrite never replaces the input, nor a folder the command did not write


@pytest.mark.parametrize("target", ["raw/images", "raw/nondisjoint", "raw/new_folder", "raw", "."])
def test_output_overlapping_the_raw_folder_is_refused_even_with_overwrite(hand_raw, tmp_path, capsys, target):
    before = tree_digest(hand_raw)
    output = tmp_path / target
    code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(output), "--overwrite"], capsys)
    assert code == 2 and one_line_error(err), err
    assert "the input --raw_dir" in err and "nothing is written into, over or around an input" in err
    assert tree_digest(hand_raw) == before
    assert not (hand_raw / "new_folder").exists()


def test_overwrite_replaces_only_a_folder_written_by_build(hand_raw, tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    synthetic = tmp_path / "synthetic"
    synthesize_polyvore(synthetic, num_items=60, num_outfits=40, seed=0, with_images=False)
    for folder in (foreign, synthetic):  # a user's folder, a synthetic raw folder
        before = tree_digest(folder)
        code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(folder), "--overwrite"], capsys)
        assert code == 2 and one_line_error(err), err
        assert f"{str(folder)!r} was not written by `build` (it holds no build_summary.json)" in err
        assert tree_digest(folder) == before

    built = tmp_path / "built"
    args = ["build", "--raw_dir", str(hand_raw), "--output_dir", str(built), "--no_images"]
    assert run(args, capsys) == (0, "")
    assert run([*args, "--seed", "3", "--overwrite"], capsys) == (0, "")
    assert json.loads((built / "build_summary.json").read_text())["parameters"]["seed"] == 3

    (built / "my_analysis.txt").write_text("the user's own notes, put in the built folder")
    before = tree_digest(built)
    code, err = run([*args, "--seed", "4", "--overwrite"], capsys)
    assert code == 2 and one_line_error(err) and "holds my_analysis.txt, which `build` does not write" in err
    assert tree_digest(built) == before


def test_synthesize_overwrite_replaces_only_a_synthetic_folder(hand_raw, tmp_path, capsys):
    args = ["synthesize", "--num_items", "60", "--num_outfits", "40", "--no_images", "--overwrite"]
    built = tmp_path / "built"
    build_dataset(hand_raw, built, with_images=False)
    for folder in (hand_raw, built):
        before = tree_digest(folder)
        code, err = run([*args, "--output_dir", str(folder)], capsys)
        assert code == 2 and one_line_error(err), err
        assert "was not written by `synthesize` (it holds no synthetic_latents.json)" in err
        assert tree_digest(folder) == before
    synthetic = tmp_path / "synthetic"
    assert main([*args, "--output_dir", str(synthetic)]) == 0
    assert main([*args, "--output_dir", str(synthetic), "--seed", "1"]) == 0


@pytest.mark.parametrize("holder", ["the current working folder", "your home folder"])
def test_overwrite_refuses_a_folder_holding_the_working_or_home_folder(hand_raw, tmp_path, capsys, monkeypatch, holder):
    built = tmp_path / "built"
    build_dataset(hand_raw, built, with_images=False)
    if holder == "the current working folder":
        monkeypatch.chdir(built / "outfits")
    else:
        monkeypatch.setenv("HOME", str(built / "outfits"))
    before = tree_digest(built)
    code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(built), "--overwrite"], capsys)
    assert code == 2 and one_line_error(err), err
    folder = "the working folder" if holder == "the current working folder" else "the home folder"
    assert f"{str(built)!r} is {folder} or contains it" in err
    assert tree_digest(built) == before


def test_unwritable_output_is_one_line(hand_raw, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "file" / "out")], capsys)
    assert code == 2 and one_line_error(err) and "is a file" in err, err


# --------------------------------------------------------------------------------------------------------------------
# 2. Leftovers of killed runs


@pytest.mark.slow
def test_temporary_folders_of_a_killed_build_are_removed_by_the_next_build(hand_raw, tmp_path):
    script = (
        "import sys, time\n"
        "import dataset_builder.export as export\n"
        "def hang(prepared, folder, summary):\n"
        "    (folder / 'partial.parquet').write_text('half written')\n"
        "    print(folder.name, flush=True)\n"
        "    time.sleep(600)\n"
        "export.write_dataset_folder = hang\n"
        "export.build_dataset(sys.argv[1], sys.argv[2], with_images=False)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(hand_raw), str(tmp_path / "out")], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        temporary = process.stdout.readline().strip()
    finally:
        process.kill()  # SIGKILL: no cleanup runs
        process.wait()
        process.stdout.close()
    assert temporary.startswith(f".tmp-out-{process.pid}.") and (tmp_path / temporary).is_dir()

    build_dataset(hand_raw, tmp_path / "out", with_images=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def test_only_leftovers_of_dead_processes_of_this_machine_are_removed(hand_raw, tmp_path, caplog):
    host, dead, alive = HOST_TAG, dead_pid(), os.getpid()
    other_host = "000000" if host != "000000" else "ffffff"
    names = {
        f".tmp-out-{dead}.{host}-abcd1234": False,  # a killed build: removed
        f".old-out-{dead}.{host}-abcd1234": False,  # a killed --overwrite, nothing moved aside yet: removed
        f".tmp-out-{alive}.{host}-abcd1234": True,  # a running build
        f".tmp-out-{dead}.{other_host}-abcd1234": True,  # another machine's (shared folder): its pids mean nothing here
        ".tmp-out-abcd1234": True,  # no owner recorded: reported, kept
        f".tmp-other-{dead}.{host}-abcd1234": True,  # another output's
        f".tmp-out-x-{dead}.{host}-abcd1234": True,  # output "out-x"
    }
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "part.parquet").write_text("x")
    with caplog.at_level(logging.WARNING, logger="dataset_builder.export"):
        build_dataset(hand_raw, tmp_path / "out", with_images=False)
    assert {name: (tmp_path / name).exists() for name in names} == names
    messages = "\n".join(record.getMessage() for record in caplog.records)
    assert f".tmp-out-{dead}.{host}-abcd1234: removed, the leftover of a killed run (pid {dead})" in messages
    assert ".tmp-out-abcd1234: leftover of an earlier run of unknown owner" in messages


def test_a_dataset_moved_aside_by_a_killed_overwrite_is_put_back(hand_raw, tmp_path):
    output = tmp_path / "out"
    build_dataset(hand_raw, output, with_images=False)
    before = tree_digest(output)
    dead = dead_pid()
    aside = tmp_path / f".old-out-{dead}.{HOST_TAG}-abcd1234"
    aside.mkdir()
    os.replace(output, aside / "out")  # killed between moving the old folder aside and moving the new one in
    (tmp_path / f".tmp-out-{dead}.{HOST_TAG}-abcd1234").mkdir()
    with pytest.raises(OutputPathError, match="already exists"):
        build_dataset(hand_raw, output, with_images=False)
    assert tree_digest(output) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "raw"]


def other_command(command: str, tmp_path: Path, output: Path) -> list[str]:
    """The argv of a small `synthesize` or `convert-mango` run (no images) writing `output`."""
    if command == "synthesize":
        return ["synthesize", "--output_dir", str(output), "--num_items", "60", "--num_outfits", "40", "--no_images"]
    source = tmp_path / "mango" if (tmp_path / "mango").is_dir() else make_checkout(tmp_path / "mango")
    return ["convert-mango", "--source", str(source), "--output_dir", str(output), "--no_images"]


@pytest.mark.parametrize("command", ["synthesize", "convert-mango"])
def test_leftovers_of_killed_runs_are_removed_by_synthesize_and_convert_mango_too(tmp_path, capsys, command):
    host, dead, alive = HOST_TAG, dead_pid(), os.getpid()
    stale = {f".tmp-out-{dead}.{host}-abcd1234", f".old-out-{dead}.{host}-abcd1234"}  # a killed run's: removed
    running = {f".tmp-out-{alive}.{host}-abcd1234"}  # a running one's: kept
    for name in stale | running:
        (tmp_path / name).mkdir()
        (tmp_path / name / "partial.json").write_text("half written")
    assert run(other_command(command, tmp_path, tmp_path / "out"), capsys) == (0, "")
    assert (tmp_path / "out").is_dir()
    assert {path.name for path in tmp_path.iterdir() if path.name.startswith(".")} == running


@pytest.mark.parametrize("command", ["synthesize", "convert-mango"])
def test_a_folder_moved_aside_by_a_killed_overwrite_is_put_back_by_synthesize_and_convert_mango(
    tmp_path, capsys, command
):
    output = tmp_path / "out"
    argv = other_command(command, tmp_path, output)
    assert run(argv, capsys) == (0, "")
    before = tree_digest(output)
    dead = dead_pid()
    aside = tmp_path / f".old-out-{dead}.{HOST_TAG}-abcd1234"
    aside.mkdir()
    os.replace(output, aside / "out")  # killed between moving the old folder aside and moving the new one in
    (tmp_path / f".tmp-out-{dead}.{HOST_TAG}-abcd1234").mkdir()
    code, err = run([*argv, "--seed", "5"], capsys)
    assert code == 2 and one_line_error(err) and "already exists" in err, err
    assert tree_digest(output) == before
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]


# --------------------------------------------------------------------------------------------------------------------
# 3. The same outfit in two splits


def test_set_id_in_two_splits_is_reported_or_fatal_with_strict(hand_raw, tmp_path, capsys):
    path = hand_raw / "nondisjoint" / "test.json"
    train = json.loads((hand_raw / "nondisjoint" / "train.json").read_text())
    path.write_text(json.dumps(json.loads(path.read_text()) + [train[0]]))  # set 1001 also in test
    args = ["build", "--raw_dir", str(hand_raw), "--no_images"]
    assert main([*args, "--output_dir", str(tmp_path / "out")]) == 0
    assert "warning: set ids in two splits (the same outfit in both; --strict refuses it): train-test 1" in (
        capsys.readouterr().out
    )
    saved = json.loads((tmp_path / "out" / "build_summary.json").read_text())
    assert saved["shared_set_ids"] == {"train-validation": 0, "train-test": 1, "validation-test": 0}

    code, err = run([*args, "--output_dir", str(tmp_path / "strict"), "--strict"], capsys)
    assert code == 2 and one_line_error(err), err
    assert "nondisjoint/test.json: set_id '1001' is also in nondisjoint/train.json" in err
    assert not (tmp_path / "strict").exists()


# --------------------------------------------------------------------------------------------------------------------
# 4. Whitespace around ids and categories


def test_whitespace_around_ids_set_ids_and_categories_is_stripped(hand_raw, tmp_path):
    path = hand_raw / "polyvore_item_metadata.json"
    metadata = json.loads(path.read_text())
    metadata["101"]["semantic_category"] = " tops "
    metadata["401"]["semantic_category"] = "accessories\t"
    metadata[" 301 "] = metadata.pop("301")
    path.write_text(json.dumps(metadata))
    for stem, padded in (("train", "1001"), ("valid", "2001")):
        path = hand_raw / "nondisjoint" / f"{stem}.json"
        outfits = json.loads(path.read_text())
        for outfit in outfits:
            if outfit["set_id"] == padded:
                outfit["set_id"] = f" {padded}\r\n"
                outfit["items"][0]["item_id"] += " "
        path.write_text(json.dumps(outfits))
    fitb = [dict(question, answers=[f" {ref} " for ref in question["answers"]]) for question in HAND_FITB_VALID]
    (hand_raw / "nondisjoint" / "fill_in_blank_valid.json").write_text(json.dumps(fitb))
    # the real categories.csv: CRLF, trailing spaces, an id without a semantic category (not needed by the builder)
    (hand_raw / "categories.csv").write_bytes(b"2,undefined,\r\n11,tops,tops \r\n27,jewellery,jewellery \r\n")

    summary = build_dataset(hand_raw, tmp_path / "out", with_images=False)
    outfits = load(tmp_path / "out", "outfits", tmp_path / "cache")
    for split, expected in EXPECTED_OUTFITS.items():
        assert {row["outfit_id"]: tuple(row[slot] for slot in SLOTS) for row in outfits[split]} == expected, split
    assert summary.outfits["train"]["dropped"]["missing_slot"] == 1  # as without the whitespace
    assert summary.fitb["validation"]["official"] == 1
    catalogue = load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]
    assert set(catalogue["semantic_category"]) == set(SLOTS)


def test_item_ids_equal_once_stripped_are_one_line_error(hand_raw, tmp_path, capsys):
    path = hand_raw / "polyvore_item_metadata.json"
    metadata = json.loads(path.read_text())
    metadata["101 "] = metadata["101"]
    path.write_text(json.dumps(metadata))
    code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 2 and one_line_error(err), err
    assert "polyvore_item_metadata.json: item '101 ' repeats item '101' once whitespace is stripped" in err


# --------------------------------------------------------------------------------------------------------------------
# 5. A truncated JPEG


def truncated_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    return data[: len(data) // 2]


def test_truncated_jpeg_is_unreadable_or_fatal_with_strict(hand_raw, tmp_path, capsys):
    data = truncated_jpeg()
    with Image.open(io.BytesIO(data)) as image:
        image.verify()  # what the check used to rely on: it passes
    (hand_raw / "images" / "403.jpg").write_bytes(data)
    summary = build_dataset(hand_raw, tmp_path / "out")
    assert summary.items["unreadable_image"] == 1 and summary.items["missing_image"] == 0
    assert "403" not in load(tmp_path / "out", "catalogue", tmp_path / "cache")["train"]["item_id"]
    capsys.readouterr()  # the loading progress bars

    code, err = run(["build", "--raw_dir", str(hand_raw), "--output_dir", str(tmp_path / "strict"), "--strict"], capsys)
    assert code == 2 and one_line_error(err), err
    assert "images/403.jpg: unreadable image of item '403' (image file is truncated" in err
    assert not (tmp_path / "strict").exists()


def test_truncation_is_caught_even_when_pil_is_told_to_tolerate_it(tmp_path, monkeypatch):
    path = tmp_path / "cut.jpg"
    path.write_bytes(truncated_jpeg())
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(OSError, match="truncated"):
        read_image_bytes(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
