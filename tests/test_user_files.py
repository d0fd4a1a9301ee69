"""Every input is an input, and no file of the user's is replaced unasked (issue 18): each case here wrote over, or
silently mangled, something the user owned before its fix."""

import json
import os
import shutil

import pytest
import torch
from support.umbert_testing import UmBertModelTester

from umbert_hf.apps.cli import main as umbert_hf_cli
from umbert_hf.commands import compute_embeddings, evaluate, finetune, pretrain
from umbert_hf.data.embeddings import write_embeddings_table
from umbert_hf.utils.files import HOST_TAG
from umbert_hf.utils.paths import run_command


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    UmBertModelTester().umbert().save_pretrained(folder)
    return folder


def test_evaluate_never_writes_into_the_model_it_evaluates(model_folder, tmp_path, capsys):
    before = {path.name: path.read_bytes() for path in model_folder.iterdir() if path.is_file()}
    for name in ("config.json", "model.safetensors", "eval_test.json"):
        argv = ["--model_name_or_path", str(model_folder), "--dataset", str(tmp_path / "ds"), "--output_file"]
        assert run_command(evaluate.main, [*argv, str(model_folder / name), "--overwrite"]) == 2
        assert "is inside the input --model_name_or_path" in one_error_line(capsys)
    assert {path.name: path.read_bytes() for path in model_folder.iterdir() if path.is_file()} == before


@pytest.mark.parametrize("command", ["evaluate", "compute_embeddings", "complete --render"])
def test_an_existing_file_is_replaced_only_with_overwrite(command, model_folder, tmp_path, capsys):
    mine = tmp_path / "mine.txt"
    mine.write_text("the user's file")
    dataset = tmp_path / "ds"
    dataset.mkdir()
    if command == "evaluate":
        status = run_command(
            evaluate.main,
            ["--model_name_or_path", str(model_folder), "--dataset", str(dataset), "--output_file", str(mine)],
        )
    elif command == "compute_embeddings":
        status = run_command(compute_embeddings.main, ["--dataset", str(dataset), "--output", str(mine)])
    else:
        outfit = ["shoes=?", "tops=100001", "accessories=100002", "bottoms=100003"]
        status = umbert_hf_cli(["complete", "--model", str(model_folder), "--outfit", *outfit, "--render", str(mine)])
    assert status == 2
    assert "already exists; pass --overwrite to replace it" in one_error_line(capsys)
    assert mine.read_text() == "the user's file"


def test_a_users_folder_with_a_config_json_is_not_a_training_run(tmp_path, capsys):
    """Familiar file names (config.json, history.json) do not make a folder a run's: only the marker a run writes."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"theme": 1}')
    (mine / "README.md").write_text("# My project")
    (tmp_path / "e.parquet").write_bytes(b"PAR1")
    argv = ["--dataset", str(tmp_path / "ds"), "--embeddings", str(tmp_path / "e.parquet"), "--output_dir", str(mine)]
    assert run_command(pretrain.main, argv) == 2
    assert "was not written by a training run" in one_error_line(capsys)
    assert (mine / "config.json").read_text() == '{"theme": 1}' and (mine / "README.md").read_text() == "# My project"


def test_the_image_encoder_that_made_the_embeddings_is_an_input_of_training(tmp_path, capsys):
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    (encoder / ".umbert_run").touch()  # written by train_image_encoder.py: a training run's folder
    (encoder / "config.json").write_text('{"model_type": "fashion-resnet"}')
    metadata = {"image_encoder": str(encoder)}
    write_embeddings_table(tmp_path / "e.parquet", ["1", "2"], ["shoes", "tops"], torch.ones(2, 4), metadata)
    argv = [
        "--dataset",
        str(tmp_path / "ds"),
        "--embeddings",
        str(tmp_path / "e.parquet"),
        "--output_dir",
        str(encoder),
    ]
    assert run_command(finetune.main, argv) == 2
    assert "is the input --image_encoder (of --embeddings)" in one_error_line(capsys)
    assert sorted(path.name for path in encoder.iterdir()) == [".umbert_run", "config.json"]


def test_huge_finite_embeddings_are_refused_naming_the_items():
    tester = UmBertModelTester()
    embeddings = tester.item_embeddings.clone()
    embeddings[3] *= 1e30
    model = UmBertModelTester().umbert()
    with pytest.raises(ValueError, match=r"too large to standardise .* items \['100003'"):
        model.set_catalogue(tester.item_ids, embeddings, tester.item_categories)
    assert model.catalogue_item_id_list == tester.item_ids  # the catalogue it had is kept


def test_ids_that_differ_by_a_nul_are_refused():
    tester = UmBertModelTester()
    ids = list(tester.item_ids)
    ids[1] = ids[0] + "\0"
    with pytest.raises(ValueError, match="hold no NUL character"):
        tester.umbert().set_catalogue(ids, tester.item_embeddings, tester.item_categories)


@pytest.mark.parametrize("top_k", [2.5, "3", True, 0])
def test_a_top_k_that_is_not_a_whole_number_is_a_value_error(top_k):
    tester = UmBertModelTester()
    outfit = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    with pytest.raises(ValueError, match="`top_k` must be at least 1"):
        tester.umbert().complete([outfit], top_k=top_k)


def dead_pid() -> int:
    """A process id that no process of this machine has."""
    pid = 2**22 + 12345
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except OSError:
            pass
        pid += 1


def test_augment_removes_the_leftovers_of_a_killed_run_and_keeps_a_live_ones(tmp_path):
    from umbert_hf.data.augment import write_augmented_dataset

    dataset = tmp_path / "ds"
    dataset.mkdir()
    (dataset / "README.md").write_text("---\nconfigs: []\n---\n")
    killed = tmp_path / f".tmp-augmented-{dead_pid()}.{HOST_TAG}-abcd1234"
    (killed / "outfits").mkdir(parents=True)
    alive = tmp_path / f".tmp-augmented-{os.getpid()}.{HOST_TAG}-abcd1234"
    alive.mkdir()
    with pytest.raises(AttributeError):  # nothing to write: the run stops after its checks and the copy
        write_augmented_dataset(dataset, tmp_path / "augmented", None, None)
    assert not killed.exists() and alive.exists() and not (tmp_path / "augmented").exists()
    shutil.rmtree(alive)


# --- photos are untrusted input -------------------------------------------------------------------------------------


def bomb_png(path, width: int = 30_000, height: int = 30_000):
    """A tiny PNG whose header declares `width` x `height` pixels (a decompression bomb): a real 1 x 1 PNG with its
    IHDR size rewritten and its checksum fixed, so that only decoding it would allocate the pixels."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after the signature, length and type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_a_decompression_bomb_is_refused_before_it_is_decoded_by_every_reader(tmp_path, capsys):
    from umbert_hf.data.image_processing import ImageDecodeError, decode_image, read_image
    from umbert_hf.utils.images import MAX_IMAGE_PIXELS

    bomb = bomb_png(tmp_path / "bomb.png")  # 900 million pixels: PIL's own limit says so first
    large = bomb_png(tmp_path / "large.png", 7_000, 7_000)  # 49 million: only ours refuses it
    limit = f"7000 x 7000 pixels, more than the limit of {MAX_IMAGE_PIXELS:,}"
    for reader in (decode_image, read_image):
        for source in (bomb, str(bomb), bomb.read_bytes(), {"bytes": bomb.read_bytes()}):
            with pytest.raises(ImageDecodeError, match="image is too large to decode safely"):
                reader(source)
        for source in (large, large.read_bytes(), {"path": str(large)}):
            with pytest.raises(ImageDecodeError, match=limit):
                reader(source)
    ok = bomb_png(tmp_path / "small.png", 40, 30)  # the same rewrite, a sane size: the header check lets it through
    with pytest.raises(ImageDecodeError, match="cannot decode"):  # (its pixel data is 1 x 1: not a valid image)
        decode_image(ok)


def test_the_command_line_refuses_a_bomb_photo_in_one_line(model_folder, tmp_path, capsys):
    bomb = bomb_png(tmp_path / "bomb.png", 7_000, 7_000)
    outfit = ["shoes=?", f"tops={bomb}", "accessories=100002", "bottoms=100003"]
    assert umbert_hf_cli(["complete", "--model", str(model_folder), "--outfit", *outfit]) == 2
    assert "7000 x 7000 pixels" in one_error_line(capsys)


def test_the_builder_counts_a_bomb_as_an_unreadable_image(tmp_path):
    from dataset_builder.raw import read_image_bytes

    with pytest.raises(ValueError, match="bomb.png has 7000 x 7000 pixels"):
        read_image_bytes(bomb_png(tmp_path / "bomb.png", 7_000, 7_000))


def test_a_bare_string_is_an_item_id_never_a_file_to_read(tmp_path):
    from pathlib import Path

    from PIL import Image

    tester = UmBertModelTester()
    model = tester.umbert()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), (200, 30, 30)).save(photo)
    read = []
    model.set_image_embedder(lambda images: read.extend(images) or torch.zeros(len(images), tester.embedding_size))
    outfit = tester.outfit_dict(tester.outfit_rows(1)[0].tolist(), blank=0)
    with pytest.raises(ValueError, match="unknown item id"):
        model.complete([{**outfit, "tops": str(photo)}])
    assert read == []  # the file was never opened
    for given in (photo, {"image": str(photo)}, {"image": photo}, Image.open(photo)):
        model.complete([{**outfit, "tops": given}])
    assert [Path(item) if isinstance(item, (str, Path)) else "PIL" for item in read] == [photo, photo, photo, "PIL"]


# --- a loaded model is checked before it answers --------------------------------------------------------------------


def tampered(model_folder, tmp_path, change_weights=None, change_config=None):
    """A copy of the saved model with its weights and/or config edited."""
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "tampered"
    shutil.copytree(model_folder, folder)
    if change_weights is not None:
        weights = load_file(folder / "model.safetensors")
        change_weights(weights)
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    if change_config is not None:
        config = json.loads((folder / "config.json").read_text())
        change_config(config)
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def nan_row(weights):
    weights["catalogue_embeddings"][3] = float("nan")


def bad_utf8(weights):
    weights["catalogue_item_ids"][0, 0] = 0xFF


CASES = {
    "a missing weight": ({"change_weights": lambda weights: weights.pop("encoder.mask_embeddings")}, "missing keys"),
    "a mis-shaped weight": (
        {"change_weights": lambda weights: weights.update({"encoder.mask_embeddings": torch.zeros(4, 16)})},
        "do not fit the config",
    ),
    "a NaN catalogue row": ({"change_weights": nan_row}, "catalogue_embeddings holds NaN"),
    "NaN weights": (
        {"change_weights": lambda weights: weights["encoder.decoders.up_bias"].fill_(float("nan"))},
        "encoder.decoders.up_bias holds NaN",
    ),
    "a zero spread": ({"change_weights": lambda weights: weights["embedding_scale"].zero_()}, "not positive"),
    "an infinite spread": (
        {"change_weights": lambda weights: weights["embedding_scale"].fill_(float("inf"))},
        "embedding_scale holds NaN or infinite",
    ),
    "ids that are not UTF-8": ({"change_weights": bad_utf8}, "not UTF-8"),
    "an edited catalogue_size": ({"change_config": lambda config: config.update(catalogue_size=7)}, "do not fit"),
    "an edited hidden_size": ({"change_config": lambda config: config.update(hidden_size=64)}, "do not fit"),
    "20,000 layers declared": (
        {"change_config": lambda config: config.update(num_hidden_layers=20000)},
        "declares num_hidden_layers=20000 but the weights hold 2 layers",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_or_edited_model_is_refused_at_load_in_one_line(case, model_folder, tmp_path, capsys):
    from transformers import AutoModel

    changes, message = CASES[case]
    folder = tampered(model_folder, tmp_path, **changes)
    with pytest.raises(ValueError, match=message) as info:
        AutoModel.from_pretrained(folder)
    assert len(str(info.value).splitlines()) == 1 and str(folder) in str(info.value)
    outfit = ["shoes=?", "tops=100001", "accessories=100002", "bottoms=100003"]
    assert umbert_hf_cli(["complete", "--model", str(folder), "--outfit", *outfit]) == 2
    assert message.split(" ")[-1] in one_error_line(capsys)


def test_an_intact_model_loads_with_its_loading_info_on_request(model_folder):
    from transformers import AutoModel

    model, info = AutoModel.from_pretrained(model_folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.catalogue_item_id_list == UmBertModelTester().item_ids


# --- importers copy only files inside their source ------------------------------------------------------------------


def test_build_never_reads_an_image_link_that_leaves_the_raw_folder(tmp_path):
    from test_dataset_builder import _jpeg, make_hand_raw

    from dataset_builder import build_dataset

    raw = make_hand_raw(tmp_path / "raw")
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    secret.write_bytes(_jpeg((1, 2, 3)))
    (raw / "images" / "404.jpg").unlink()
    (raw / "images" / "404.jpg").symlink_to(secret)
    (raw / "images" / "403.jpg").unlink()
    (raw / "images" / "403.jpg").symlink_to(raw / "images" / "101.jpg")  # inside the folder: an image like any
    summary = build_dataset(raw, tmp_path / "out")
    assert summary.items["missing_image"] == 1 and summary.items["unreadable_image"] == 0
    parquet = b"".join(path.read_bytes() for path in (tmp_path / "out").rglob("*.parquet"))
    assert secret.read_bytes()[-200:] not in parquet  # the linked file was not copied into the dataset


def test_convert_mango_never_copies_a_photo_link_that_leaves_the_checkout(tmp_path):
    from test_mango import make_checkout

    from dataset_builder import convert_mango

    checkout = make_checkout(tmp_path / "mango")
    secret = tmp_path / "elsewhere" / "secret.jpg"
    secret.parent.mkdir()
    photo = next((checkout / "datathon" / "images").glob("2019_top_0.jpg"))
    secret.write_bytes(photo.read_bytes() + b"the user's secret")
    photo.unlink()
    photo.symlink_to(secret)
    summary = convert_mango(checkout, tmp_path / "raw")
    assert summary["missing_photos"] == 2  # the jewel without a photo, and the link
    copied = b"".join(path.read_bytes() for path in (tmp_path / "raw" / "images").iterdir())
    assert b"the user's secret" not in copied


# --- a damaged dataset is one line ---------------------------------------------------------------------------------


def damage(dataset, tmp_path, how: str):
    """A copy of the dataset with its parquet files truncated, emptied, or replaced by a PNG; or a file in its place."""
    copy = tmp_path / f"damaged_{how}"
    if how == "a file":
        copy.write_text("not a dataset")
        return copy
    shutil.copytree(dataset, copy)
    for parquet in copy.rglob("*.parquet"):
        data = parquet.read_bytes()
        parquet.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "a png": b"\x89PNG\r\n\x1a\n"}[how])
    return copy


@pytest.mark.parametrize("how", ["truncated", "empty", "a png", "a file"])
@pytest.mark.parametrize("command", ["evaluate", "finetune", "compute_embeddings", "augment", "complete --dataset"])
def test_a_damaged_dataset_is_one_error_line(command, how, outfit_dataset, model_folder, tmp_path, capsys):
    dataset, embeddings = outfit_dataset
    damaged = str(damage(dataset, tmp_path, how))
    out = str(tmp_path / "out")
    if command == "evaluate":
        status = run_command(
            evaluate.main, ["--baseline", "random", "--dataset", damaged, "--embeddings", str(embeddings)]
        )
    elif command == "finetune":
        argv = ["--dataset", damaged, "--embeddings", str(embeddings), "--output_dir", out, "--num_train_epochs", "1"]
        status = run_command(finetune.main, argv)
    elif command == "compute_embeddings":
        argv = ["--dataset", damaged, "--text_encoder", str(model_folder), "--output", f"{out}.parquet"]
        status = run_command(compute_embeddings.main, argv)
    elif command == "augment":
        status = umbert_hf_cli(["augment", "--dataset", damaged, "--embeddings", str(embeddings), "--output_dir", out])
    else:
        outfit = ["shoes=?", "tops=100001", "accessories=100002", "bottoms=100003"]
        status = umbert_hf_cli(["complete", "--model", str(model_folder), "--outfit", *outfit, "--dataset", damaged])
    assert status == 2
    err = capsys.readouterr().err.strip()  # after the progress bars of `datasets`, one error line
    assert err.count("error:") == 1 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err, err
    assert "missing or damaged" in err.splitlines()[-1]
    assert not os.path.exists(out) or os.listdir(out) == [".umbert_run"]  # a run's folder: nothing written yet


# --- resuming takes the flags of the run it resumes ------------------------------------------------------------------


def test_resume_refuses_a_flag_that_differs_from_the_checkpoints_run(tmp_path):
    import argparse

    from umbert_hf.training.checkpoints import RUN_FLAGS_NAME, check_resume_flags, run_flags
    from umbert_hf.utils.files import write_json

    def flags(**changes):
        values = {
            "learning_rate": 1e-3,
            "embeddings": "e.parquet",
            "seed": 42,
            "output_dir": "out",
            "report_to": "none",
        }
        return argparse.Namespace(**{**values, **changes})

    checkpoint = tmp_path / "step_10"
    checkpoint.mkdir()
    check_resume_flags(checkpoint, flags(learning_rate=5.0))  # a checkpoint of an older version records none
    write_json(checkpoint / RUN_FLAGS_NAME, run_flags(flags()))
    check_resume_flags(checkpoint, flags(output_dir="elsewhere", report_to="tensorboard"))  # free to change
    (tmp_path / "moved").mkdir()
    (tmp_path / "moved" / "e.parquet").write_bytes(b"PAR1")
    check_resume_flags(checkpoint, flags(embeddings=str(tmp_path / "moved" / "e.parquet")))  # moved: the same table
    for name, value in (("learning_rate", 1e-4), ("embeddings", "other.parquet"), ("seed", 1)):
        with pytest.raises(ValueError, match=f"--{name} is {value!r} but the run that saved it used"):
            check_resume_flags(checkpoint, flags(**{name: value}))
    with pytest.raises(ValueError, match="--patience is 3 but the run that saved it used None"):
        check_resume_flags(checkpoint, argparse.Namespace(**vars(flags()), patience=3))


def test_a_dataset_file_edited_in_place_is_read_again_not_served_from_the_cache(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from umbert_hf.data.outfit_data import load_dataset_config

    dataset = tmp_path / "ds"
    (dataset / "outfits").mkdir(parents=True)
    (dataset / "README.md").write_text(
        "---\nconfigs:\n- config_name: outfits\n  data_files:\n  - split: train\n    path: outfits/train-*.parquet\n---\n"
    )
    parquet = dataset / "outfits" / "train-00000-of-00001.parquet"
    cache = str(tmp_path / "cache")
    pq.write_table(pa.table({"outfit_id": ["a", "b"]}), parquet)
    assert load_dataset_config(dataset, "outfits", cache_dir=cache)["train"]["outfit_id"] == ["a", "b"]
    pq.write_table(pa.table({"outfit_id": ["c", "d", "e"]}), parquet)  # within the same second
    assert load_dataset_config(dataset, "outfits", cache_dir=cache)["train"]["outfit_id"] == ["c", "d", "e"]
    parquet.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="missing or damaged.*Parquet magic bytes not found"):
        load_dataset_config(dataset, "outfits", cache_dir=cache)


def test_compute_embeddings_never_writes_into_its_text_encoder(tmp_path, capsys):
    encoder = tmp_path / "minilm"
    encoder.mkdir()
    (encoder / "config.json").write_text("{}")
    (tmp_path / "ds").mkdir()
    argv = ["--dataset", str(tmp_path / "ds"), "--text_encoder", str(encoder), "--output", str(encoder / "emb.parquet")]
    assert run_command(compute_embeddings.main, argv) == 2
    assert "is inside the input --text_encoder" in one_error_line(capsys)
    assert sorted(path.name for path in encoder.iterdir()) == ["config.json"]
