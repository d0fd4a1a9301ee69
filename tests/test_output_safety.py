"""One matrix over every command that writes and every forbidden place to write (`umbert_hf.utils.paths.check_output`).

Each case runs the command in this process, as its console script or training script runs it (`run_command`), with
its output pointed at a place it must refuse: an input itself, a folder inside an input, a folder around an input,
the working folder, the home folder, a non-empty folder of the user's (with `--overwrite` where the command has one),
or a file. It must exit with status 2 and one `error:` line naming the rule, and leave every file where it was.
A command that drops a rule (or checks it after writing) fails its cases.
"""

import hashlib
from pathlib import Path

import pytest
from test_convert_csv import make_shop
from test_dataset_builder import make_hand_raw
from test_mango import make_checkout

from umbert_hf.apps.cli import main as umbert_hf_cli
from umbert_hf.commands import compute_embeddings, evaluate, finetune, hparam_search, pretrain, train_image_encoder
from umbert_hf.utils.paths import run_command

RELATIONS = ("equal", "inside", "around", "working folder", "home folder", "foreign folder", "file")


def cli(argv: list[str]) -> int:
    return umbert_hf_cli(argv)


def script(command):
    return lambda argv: run_command(command.main, argv)


# command -> (runner, output flag, kind of output, the flag of the input the overlap cases use, the other arguments,
# whether it takes --overwrite). {raw}, {dataset}, ... are filled with the inputs `world` makes.
COMMANDS = {
    "build": (cli, "--output_dir", "folder", "raw_dir", ["build", "--raw_dir", "{raw}", "--no_images"], True),
    "synthesize": (cli, "--output_dir", "folder", None, ["synthesize", "--num_items", "40", "--no_images"], True),
    "convert-mango": (cli, "--output_dir", "folder", "source", ["convert-mango", "--source", "{mango}"], True),
    "convert-csv": (
        cli,
        "--output_dir",
        "folder",
        "image_root",
        [
            "convert-csv",
            "--products",
            "{shop}/products.csv",
            "--outfits",
            "{shop}/outfits.csv",
            "--image_root",
            "{shop}",
        ]
        + [
            "--id_column",
            "SKU",
            "--category_column",
            "Family",
            "--category_map",
            "Tops=tops",
            "--image_column",
            "Photo",
        ]
        + ["--outfit_id_column", "look", "--outfit_item_column", "sku"],
        True,
    ),
    "augment": (
        cli,
        "--output_dir",
        "folder",
        "dataset",
        ["augment", "--dataset", "{dataset}", "--embeddings", "{embeddings}"],
        True,
    ),
    "pretrain": (
        script(pretrain),
        "--output_dir",
        "folder",
        "dataset",
        ["--dataset", "{dataset}", "--embeddings", "{embeddings}"],
        False,
    ),
    "finetune": (
        script(finetune),
        "--output_dir",
        "folder",
        "model_name_or_path",
        ["--dataset", "{dataset}", "--model_name_or_path", "{model}"],
        False,
    ),
    "train_image_encoder": (
        script(train_image_encoder),
        "--output_dir",
        "folder",
        "dataset",
        ["--dataset", "{dataset}", "--encoder", "resnet"],
        False,
    ),
    "compute_embeddings": (
        script(compute_embeddings),
        "--output",
        "file",
        "dataset",
        ["--dataset", "{dataset}", "--image_encoder", "{model}"],
        False,
    ),
    "evaluate": (
        script(evaluate),
        "--output_file",
        "file",
        "model_name_or_path",
        ["--dataset", "{dataset}", "--model_name_or_path", "{model}"],
        False,
    ),
    "hparam_search": (
        script(hparam_search),
        "--output_dir",
        "folder",
        "embeddings",
        ["--dataset", "{dataset}", "--embeddings", "{embeddings_folder}", "--sampler", "random"],
        False,
    ),
    "demo": (cli, "--output_dir", "folder", None, ["demo"], True),  # --force replaces the steps
    "app --write_space": (
        cli,
        "--write_space",
        "folder",
        "model",
        ["app", "--model", "{model}", "--dataset", "{dataset}"],
        False,
    ),
}
OVERWRITE_FLAG = {"demo": "--force"}
# The folder of `world` each overlap case uses, by input flag (the embeddings table of the search is a folder).
INPUT_FOLDERS = {
    "raw_dir": "raw",
    "source": "mango",
    "image_root": "shop",
    "dataset": "dataset",
    "model_name_or_path": "model",
    "model": "model",
    "embeddings": "embeddings_folder",
}


def digest(root: Path) -> dict[str, str]:
    """Every file and folder under `root` with a hash of its bytes: what must not change."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(root.rglob("*"))
        if ".cache" not in path.parts
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Inputs of every command (the checks run before any is read, so a few are stand-ins), a working folder and a
    home folder, each holding a file of the user's."""
    root = tmp_path_factory.mktemp("world")
    inputs = root / "inputs"
    make_hand_raw(inputs / "raw", images=False)
    make_checkout(inputs / "mango")
    make_shop(inputs)
    for folder in ("dataset", "model", "embeddings_folder"):
        (inputs / folder).mkdir(parents=True)
        (inputs / folder / "README.md").write_text(f"the user's {folder}")
    (inputs / "model" / "config.json").write_text("{}")
    (inputs / "embeddings.parquet").write_bytes(b"PAR1 the user's table")
    (inputs / "embeddings_folder" / "train.parquet").write_bytes(b"PAR1 a table saved as a folder")
    for folder in ("work", "home", "mine"):
        (root / folder).mkdir()
        (root / folder / "precious.txt").write_text(f"the user's {folder} file")
    (root / "notes.txt").write_text("the user's notes")
    return root


def output_for(relation: str, world: Path, input_flag: str | None, kind: str) -> str | None:
    """Where the output goes for `relation`; None when the relation does not apply to the command."""
    inputs = world / "inputs"
    source = None if input_flag is None else inputs / INPUT_FOLDERS[input_flag]
    if relation in ("equal", "inside", "around") and source is None:
        return None  # a command without inputs
    if relation == "file" and kind == "file":
        return None  # a file output replaces its own file
    return str(
        {
            "equal": source,
            "inside": source / "output" if source is not None else None,
            "around": inputs,
            "working folder": Path("."),
            "home folder": world / "home",
            "foreign folder": world / "mine",
            "file": world / "notes.txt",
        }[relation]
    )


EXPECTED = {
    "equal": "is the input --",
    "inside": "is inside the input --",
    "around": "contains the input --",
    "working folder": "is the working folder or contains it",
    "home folder": "is the home folder or contains it",
    "foreign folder": ("was not written by", "exists and is not empty", "is a folder, not a file"),
    "file": "is a file, not a folder",
}


# Every pair but those that cannot arise: a command without inputs has nothing to overlap (synthesize, demo), and a
# file output (an embeddings table, a metrics file) replaces its own earlier file.
CASES = [
    (command, relation)
    for command, (_, _, kind, input_flag, _, _) in COMMANDS.items()
    for relation in RELATIONS
    if output_for(relation, Path("/world"), input_flag, kind) is not None
]


@pytest.mark.parametrize(("command", "relation"), CASES, ids=[f"{c}-{r}" for c, r in CASES])
def test_no_command_writes_over_into_or_around_what_the_user_owns(world, command, relation, monkeypatch, capsys):
    runner, flag, kind, input_flag, arguments, overwrite = COMMANDS[command]
    output = output_for(relation, world, input_flag, kind)
    monkeypatch.chdir(world / "work")
    monkeypatch.setenv("HOME", str(world / "home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(world.parent / "cache"))
    names = {name: str(world / "inputs" / name) for name in ("dataset", "model", "embeddings_folder")}
    names.update(raw=str(world / "inputs" / "raw"), mango=str(world / "inputs" / "mango"))
    names["shop"] = str(world / "inputs" / "shop")
    names["embeddings"] = str(world / "inputs" / "embeddings.parquet")
    argv = [argument.format(**names) for argument in arguments] + [flag, output]
    if overwrite:
        argv.append(OVERWRITE_FLAG.get(command, "--overwrite"))
    before = digest(world)
    status = runner(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, (argv, err)
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    expected = EXPECTED[relation]
    assert any(part in err for part in ((expected,) if isinstance(expected, str) else expected)), err
    if relation in ("equal", "inside"):
        assert f"the input --{input_flag} " in err, err
    assert digest(world) == before, "a refused command changed the user's files"


def test_the_matrix_covers_every_command_that_writes():
    """Every writing command is in the matrix, with every relation that can arise for it."""
    assert len(CASES) == len(COMMANDS) * len(RELATIONS) - 8
    assert set(COMMANDS) == {
        "build",
        "synthesize",
        "convert-mango",
        "convert-csv",
        "augment",
        "pretrain",
        "finetune",
        "train_image_encoder",
        "compute_embeddings",
        "evaluate",
        "hparam_search",
        "demo",
        "app --write_space",
    }
