"""Tests of `convert-csv`: small products and outfits tables made here, in both outfit layouts, as CSV and parquet,
with messy real-world values -> the raw Polyvore Outfits layout; and `convert-mango`, its preset, unchanged."""

import gzip
import hashlib
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_mango import make_checkout

from dataset_builder.cli import main
from dataset_builder.mango import convert_mango
from dataset_builder.raw import read_raw
from dataset_builder.tables import MARKER_FILE, CategoryMap, TableFile, convert_csv, normalise, read_table

KINDS = {"shoe": ("Footwear", "FOOTWEAR "), "top": ("TOPS", "Tops"), "bottom": ("Trousers",), "bag": ("bags",)}
SLOT_OF = {"shoe": "shoes", "top": "tops", "bottom": "bottoms", "bag": "accessories"}
CATEGORY_MAP = [
    "footwear=shoes",
    "Tops=tops",
    " trousers =Bottoms",
    "BAGS=accessories",
    "Swimwear=",
    "Hats=accessories",
]
PER_KIND = 8
NUM_OUTFITS = 20
HEADER = ["SKU", " Family ", "Name", "Colour", "Photo"]
# photos that never reach images/, by the reason the summary gives
PHOTO_CELLS = {
    "top-1": ("", "no_image"),
    "bag-1": ("https://cdn.example.com/bag-1.jpg", "url"),
    "bag-2": ("photos/nowhere.jpg", "not_found"),
    "bag-3": ("../secret.jpg", "outside_image_root"),
    "bottom-1": ("photos/bottom1.jpg", "unreadable"),  # a truncated JPEG
}
CONVERTED = "top-0"  # a transparent PNG: written as JPEG over white
TITLE = "Camisa añil – größe"


def _jpeg(colour, size=(10, 12)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def _csv_line(fields) -> str:
    return ",".join('"' + str(field).replace('"', '""') + '"' for field in fields)


def product_rows() -> list[list[str]]:
    """[SKU, Family, Name, Colour, Photo] with messy values: padding, mixed case, empty cells, non-ASCII titles."""
    rows = []
    for kind, spellings in KINDS.items():
        for number in range(PER_KIND):
            item_id = f"{kind}-{number}"
            photo = PHOTO_CELLS.get(item_id, (f"photos/{kind}{number}.jpg",))[0]
            if item_id == CONVERTED:
                photo = "photos/top0.png"
            name = f"  {TITLE}  {kind}\t{number} " if kind == "top" else f"{kind} {number}"
            colour = "" if number % 2 else " Rojo "
            rows.append([f" {item_id} ", spellings[number % len(spellings)], name, colour, photo])
    rows.append(["shoe-0", " footwear", "shoe again", "", ""])  # the same id and category: counted, first kept
    rows.append(["", "Tops", "no id", "", ""])  # counted
    rows.append(["a/b", "Tops", "an id that cannot name a file", "", ""])  # counted
    rows.append(["home-0", "Home", "cushion", "", "photos/home0.jpg"])  # unmapped: counted, never a slot
    rows.append(["swim-0", "Swimwear", "bikini", "", "photos/swim0.jpg"])  # Swimwear= : never a slot, not counted
    rows.append(["", "", "", "", ""])  # a blank row
    return rows


def outfit_members() -> dict[str, list[str]]:
    """look -> members in table order, with an unknown product (L3), a repeated one (L4), and an outfit (L99) of
    unknown products only."""
    looks = {}
    for number in range(1, NUM_OUTFITS + 1):
        members = [f"{kind}-{number % PER_KIND}" for kind in KINDS]
        if number == 3:
            members.insert(2, "nope")
        if number == 4:
            members.append(members[0])
        looks[f"L{number}"] = members
    looks["L99"] = ["missing-1"]
    return looks


def make_shop(root: Path) -> Path:
    """`root/shop/`: products.csv (BOM, CRLF, quoted), outfits.csv (one row per member), outfits_wide.csv (one row per
    outfit), photos/ (JPEG, a transparent PNG, a truncated JPEG), and a file outside the shop (`root/secret.jpg`)."""
    shop = root / "shop"
    (shop / "photos").mkdir(parents=True)
    (root / "secret.jpg").write_bytes(_jpeg((1, 2, 3)))
    for kind in KINDS:
        for number in range(PER_KIND):
            (shop / "photos" / f"{kind}{number}.jpg").write_bytes(_jpeg((40 * number, 100, 200)))
    for name in ("home0", "swim0"):
        (shop / "photos" / f"{name}.jpg").write_bytes(_jpeg((9, 9, 9)))
    truncated = _jpeg((200, 10, 10), (64, 64))
    (shop / "photos" / "bottom1.jpg").write_bytes(truncated[: len(truncated) // 2])
    png = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    png.paste((0, 0, 0, 0), (0, 0, 16, 32))  # the left half transparent: white once converted
    png.save(shop / "photos" / "top0.png")

    lines = [_csv_line(HEADER)] + [_csv_line(row) for row in product_rows()]
    (shop / "products.csv").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))
    long_rows = ["look,sku"]
    for look, members in outfit_members().items():
        padded = f" {look} " if look == "L5" else look  # the same outfit once stripped
        long_rows += [f"{padded},{item_id}" for item_id in members]
    long_rows.insert(5, ",top-1")  # a row without an outfit id: counted
    (shop / "outfits.csv").write_text("\n".join(long_rows) + "\n", encoding="utf-8")
    wide_rows = ["look,items"]
    for look, members in outfit_members().items():
        if look == "L2":  # a list written by pandas' to_csv
            cell = str(members)
        else:
            cell = " ; ".join(members) + ";"
        wide_rows.append(_csv_line([look, cell]))
    wide_rows.insert(2, _csv_line(["", "top-1;bottom-1"]))
    (shop / "outfits_wide.csv").write_text("\n".join(wide_rows) + "\n", encoding="utf-8")
    return shop


@pytest.fixture
def shop(tmp_path):
    return make_shop(tmp_path)


def digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha1(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _load(path: Path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


COLUMNS = {
    "id_column": "SKU",
    "category_column": "Family",
    "category_map": [entry.split("=") for entry in CATEGORY_MAP],
    "title_columns": ["Name", "Colour"],
    "image_column": "Photo",
}
LONG = {"outfit_id_column": "look", "outfit_item_column": "sku"}
WIDE = {"outfit_id_column": "look", "outfit_items_column": "items"}


def convert(shop: Path, output: Path, outfits: str = "outfits.csv", products: str = "products.csv", **changes):
    layout = LONG if outfits in ("outfits.csv", "split.csv") else WIDE
    return convert_csv(shop / products, shop / outfits, output, **{**COLUMNS, **layout, **changes})


def test_long_layout_fields_counts_and_photos(shop, tmp_path):
    before = digest(tmp_path)
    summary = convert(shop, tmp_path / "raw")
    raw = tmp_path / "raw"
    assert {name: sha for name, sha in digest(tmp_path).items() if not name.startswith("raw/")} == before  # inputs
    assert sorted(p.name for p in raw.iterdir()) == [
        "categories.csv",
        MARKER_FILE,
        "images",
        "nondisjoint",
        "polyvore_item_metadata.json",
        "polyvore_outfit_titles.json",
    ]
    metadata = _load(raw / "polyvore_item_metadata.json")
    assert len(metadata) == len(KINDS) * PER_KIND + 2 == summary["products"]
    for kind, slot in SLOT_OF.items():
        assert all(metadata[f"{kind}-{n}"]["semantic_category"] == slot for n in range(PER_KIND)), kind
    assert metadata["home-0"]["semantic_category"] == metadata["swim-0"]["semantic_category"] == "other"
    assert metadata["top-2"]["title"] == f"{TITLE} top 2 Rojo"  # padding and the tab collapsed, NFC kept
    assert metadata["top-3"]["title"] == f"{TITLE} top 3"  # an empty colour cell is left out
    assert metadata["shoe-0"]["title"] == "shoe 0 Rojo"  # the first row of a repeated id is kept
    assert (
        metadata["shoe-1"]["catgeories"] == ["FOOTWEAR"] and metadata["top-0"]["url_name"] == metadata["top-0"]["title"]
    )
    categories = (raw / "categories.csv").read_text(encoding="utf-8").splitlines()
    assert categories == ["1,Footwear,shoes", "2,Home,other", "3,Swimwear,other", "4,TOPS,tops", "5,Trousers,bottoms",
                          "6,bags,accessories"]  # fmt: skip
    assert metadata["shoe-0"]["category_id"] == metadata["shoe-1"]["category_id"] == "1"  # spellings of one value

    assert summary["skipped"] == {
        "invalid_product_id_rows": 2,
        "duplicate_product_rows": 1,
        "outfit_rows_without_outfit_id": 1,
        "duplicate_outfit_rows": 0,
        "unknown_product_references": 2,
        "repeated_references": 1,
        "empty_outfits": 1,
        "outfits_without_split": 0,
    }
    assert summary["unmapped_categories"] == {"Home": 1}
    assert summary["unused_category_map"] == ["Hats"]
    assert summary["photo_problems"] == {problem: 1 for _, problem in PHOTO_CELLS.values()}
    assert summary["missing_photos"] == len(PHOTO_CELLS) and summary["photos_converted"] == 1
    assert summary["photos_copied"] == summary["products"] - len(PHOTO_CELLS)
    photos = {p.stem for p in (raw / "images").iterdir()}
    assert photos == set(metadata) - set(PHOTO_CELLS)
    assert (raw / "images" / "shoe-2.jpg").read_bytes() == (shop / "photos" / "shoe2.jpg").read_bytes()
    with Image.open(raw / "images" / f"{CONVERTED}.jpg") as converted:
        assert converted.format == "JPEG" and min(converted.getpixel((2, 16))) > 240  # transparent -> white
    marker = _load(raw / MARKER_FILE)
    assert marker["summary"] == {key: summary[key] for key in marker["summary"]} and marker["columns"]["id"] == "SKU"

    outfits = {stem: _load(raw / "nondisjoint" / f"{stem}.json") for stem in ("train", "valid", "test")}
    every = {outfit["set_id"]: [m["item_id"] for m in outfit["items"]] for part in outfits.values() for outfit in part}
    expected = {
        look: [i for i in dict.fromkeys(members) if i in metadata] for look, members in outfit_members().items()
    }
    assert every == {look: members for look, members in expected.items() if members}
    assert [m["index"] for m in outfits["train"][0]["items"]] == [1, 2, 3, 4]
    assert summary["outfits"] == {"train": 16, "valid": 2, "test": 2}
    raw_read = read_raw(raw)  # the builder's reader accepts it
    assert raw_read.item_title["top-2"] == f"{TITLE} top 2 Rojo"


def _written(raw: Path) -> dict[str, str]:
    """What two conversions of the same outfits must share: everything but the marker (it names the columns)."""
    return {name: value for name, value in digest(raw).items() if name != MARKER_FILE}


def test_wide_layout_gives_the_same_folder(shop, tmp_path):
    long = convert(shop, tmp_path / "long")
    wide = convert(shop, tmp_path / "wide", outfits="outfits_wide.csv")
    assert _written(tmp_path / "long") == _written(tmp_path / "wide")
    assert wide["skipped"] == long["skipped"]
    # without an outfit id column, outfits are numbered by row (the row without an id is outfit 2; 22 is empty)
    numbered = convert(shop, tmp_path / "numbered", outfits="outfits_wide.csv", outfit_id_column=None)
    titles = _load(tmp_path / "numbered" / "polyvore_outfit_titles.json")
    assert sorted(titles, key=int) == [str(n) for n in range(1, NUM_OUTFITS + 2)]
    assert numbered["skipped"]["outfit_rows_without_outfit_id"] == 0


def _parquet(rows: list[list], names: list[str], path: Path, schema: pa.Schema | None = None) -> None:
    pq.write_table(pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)}, schema=schema), path)


def test_parquet_tables_give_the_same_folder(shop, tmp_path):
    convert(shop, tmp_path / "csv")
    _parquet(product_rows(), HEADER, shop / "products.parquet")
    wide = [[look, members] for look, members in outfit_members().items()]
    wide.insert(1, [None, ["top-1", "bottom-1"]])
    _parquet(
        wide,
        ["look", "items"],
        shop / "outfits.parquet",
        pa.schema({"look": pa.string(), "items": pa.list_(pa.string())}),
    )
    convert(shop, tmp_path / "parquet", products="products.parquet", outfits="outfits.parquet")
    assert _written(tmp_path / "csv") == _written(tmp_path / "parquet")


def test_parquet_and_tsv_cells_are_text(tmp_path):
    path = tmp_path / "numbers.parquet"
    table = {"id": [123, None, 7], "price": [4.0, 2.5, float("nan")], "tags": [["a", " b "], [], None]}
    pq.write_table(pa.table(table), path)
    rows = read_table(TableFile(path, "numbers.parquet"), ["id", "price"], list_columns=["tags"]).rows
    assert rows == [
        {"id": "123", "price": "4", "tags": ["a", "b"]},
        {"id": "", "price": "2.5", "tags": []},
        {"id": "7", "price": "", "tags": ""},
    ]
    tsv = tmp_path / "table.tsv"
    tsv.write_text("id\tname\n00123\t a, b \n", encoding="utf-8")
    assert read_table(TableFile(tsv, "table.tsv"), ["id"]).rows == [{"id": "00123", "name": "a, b"}]
    jsonl = tmp_path / "table.jsonl.gz"
    jsonl.write_bytes(gzip.compress(b'{"id": 5, "name": " x "}\n{"id": 6, "name": null}\n'))
    assert read_table(TableFile(jsonl, "t"), ["id"], optional=["name"]).rows == [
        {"id": "5", "name": "x"},
        {"id": "6", "name": ""},
    ]


def test_split_column(shop, tmp_path):
    spellings = {"train": ("train", " Training"), "valid": ("VAL", "validation", "dev"), "test": ("Test", "testing")}
    lines = ["look,sku,part"]
    stems = {}
    for number, (look, members) in enumerate(outfit_members().items()):
        stem = ("train", "valid", "test")[number % 3]
        spelling = spellings[stem][number % len(spellings[stem])]
        stems[look] = stem
        lines += [f"{look},{item_id},{spelling if position == 0 or number % 2 else ''}" for position, item_id in
                  enumerate(members)]  # fmt: skip
    lines.append("L50,shoe-1,")  # no split: counted
    (shop / "split.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = convert(shop, tmp_path / "raw", outfits="split.csv", split_column="part", seed=5)
    for stem in ("train", "valid", "test"):
        set_ids = [outfit["set_id"] for outfit in _load(tmp_path / "raw" / "nondisjoint" / f"{stem}.json")]
        assert set_ids == [look for look, of in stems.items() if of == stem and look != "L99"]
    assert summary["skipped"]["outfits_without_split"] == 1 and summary["seed"] is None


def test_seeded_split_is_deterministic(shop, tmp_path):
    convert(shop, tmp_path / "a", seed=3)
    convert(shop, tmp_path / "b", seed=3)
    convert(shop, tmp_path / "c", seed=4)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert (tmp_path / "a" / "nondisjoint" / "test.json").read_bytes() != (
        tmp_path / "c" / "nondisjoint" / "test.json"
    ).read_bytes()


def test_category_map_rules():
    mapping = CategoryMap([("Hats, caps", "Accessories"), ("Calzado Niño", "shoes"), ("Swimwear", "")])
    assert mapping(["hats caps"]) == "accessories" and mapping(["CALZADO NINO"]) == "shoes"
    assert mapping(["swimwear"]) == "other" and mapping(["Home"]) == "other" and mapping([""]) == "other"
    assert dict(mapping.unmapped) == {"Home": 1, "(empty)": 1}
    assert normalise("  Hats,  Scarves & gloves ") == "hats scarves gloves" and normalise("靴 ") == "靴"
    with pytest.raises(ValueError, match="to two slots, shoes and tops"):
        CategoryMap([("T-shirt", "shoes"), ("t shirt", "tops")])
    with pytest.raises(ValueError, match="no comma"):
        CategoryMap([("Tops", "tops, shirts")])


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cli_args(shop: Path, output: Path, layout: dict = LONG) -> list[str]:
    flags = {**COLUMNS, **layout}
    argv = ["convert-csv", "--products", shop / "products.csv", "--outfits", shop / "outfits.csv"]
    argv += ["--output_dir", output]
    for name, value in flags.items():
        if name == "category_map":
            argv += ["--category_map", *CATEGORY_MAP]
        elif isinstance(value, list):
            argv += [f"--{name}", *value]
        else:
            argv += [f"--{name}", value]
    return argv


def test_cli_prints_the_summary_and_the_next_command(shop, tmp_path, capsys):
    code, out, err = _run(cli_args(shop, tmp_path / "raw"), capsys)
    assert code == 0, err
    assert "34 products, 20 outfits (train 16, valid 2, test 2; seed 0)" in out
    assert "photos: 29 copied (1 converted to JPEG), 5 missing" in out
    assert "unmapped (never a slot; map them with --category_map VALUE=SLOT): Home 1" in out
    assert "--category_map values no product has: Hats" in out
    assert "missing photos: no_image 1, url 1, outside_image_root 1, not_found 1, unreadable 1" in out
    assert f"next: umbert-hf build --raw_dir {tmp_path / 'raw'} --output_dir DATASET\n" in out


def test_umbert_hf_delegates_and_reads_arguments_from_a_file(shop, tmp_path, capsys):
    from umbert_hf.apps.cli import main as umbert_main

    argv = cli_args(shop, tmp_path / "raw")
    start = argv.index("--category_map")
    (tmp_path / "map.txt").write_text("\n".join(CATEGORY_MAP) + "\n", encoding="utf-8")
    argv[start + 1 : start + 1 + len(CATEGORY_MAP)] = [f"@{tmp_path / 'map.txt'}"]
    assert umbert_main([str(arg) for arg in argv]) == 0
    out = capsys.readouterr().out
    assert "umbert-hf build" in out and "shoes 8" in out


def _replace(name: str, text: str):
    return lambda shop: (shop / name).write_text(text, encoding="utf-8")


def _append_product(row):
    def prepare(shop):
        with open(shop / "products.csv", "a", encoding="utf-8") as handle:
            handle.write(_csv_line(row) + "\r\n")

    return prepare


BAD_INPUTS = {
    # name: (flags to change, how the inputs are prepared, what the one error line says)
    "missing_column": ({"category_column": "Familia"}, None, "products.csv: required column 'Familia' (named by "
                       "--category_column) not found (header: SKU, Family, Name, Colour, Photo)"),
    "column_case": ({"id_column": "sku"}, None, "required column 'sku' (named by --id_column) not found (header: "
                    "SKU, Family, Name, Colour, Photo); did you mean 'SKU'?"),
    "semicolons": ({}, _replace("products.csv", "SKU;Family\nx;y\n"), "is it separated by ';' or '|'? pass --delimiter"),
    "empty_products_file": ({}, _replace("products.csv", ""), "products.csv: empty file (expected a header with SKU"),
    "no_product_rows": ({}, _replace("products.csv", ",".join(HEADER) + "\n\n"), "products.csv: no product rows"),
    "no_outfit_rows": ({}, _replace("outfits.csv", "look,sku\n"), "outfits.csv: no outfit rows (expected rows of "
                       "look, sku)"),
    "duplicate_id_other_category": ({}, _append_product(["shoe-0", "Tops", "x", "", ""]), "products.csv: product id "
                                    "'shoe-0' appears twice with different categories, 'Footwear' and 'Tops'"),
    "unknown_products_only": ({}, _replace("outfits.csv", "look,sku\nL1,nope\n"), "outfits.csv: no outfit references "
                              "a product of"),
    "no_usable_id": ({"id_column": "Photo"}, None, "products.csv: no row has a usable product id in column 'Photo'"),
    "nothing_mapped": ({"category_map": ["Hats=accessories"]}, None, "no product is mapped to a slot: --category_map "
                       "names none of the values of --category_column 'Family' (most common: Footwear 8, TOPS 8, Trousers 8, bags 8, Home 1, Swimwear 1)"),
    "two_layouts": ({"outfit_items_column": "items"}, None, "give one of --outfit_item_column"),
    "no_outfit_id": ({"outfit_id_column": None}, None, "--outfit_item_column needs --outfit_id_column"),
    "products_missing": ({}, lambda shop: (shop / "products.csv").unlink(), "products.csv: file not found"),
    "unknown_format": ({"products": "products.xlsx"}, _replace("products.xlsx", "x"), "products.xlsx: unknown table "
                       "format '.xlsx'"),
    "not_utf8": ({}, lambda shop: (shop / "outfits.csv").write_bytes(b"look,sku\nL1,caf\xe9\n"), "outfits.csv: not "
                 "UTF-8 text (invalid continuation byte at byte 15); pass --encoding"),
    "bad_parquet": ({"products": "products.parquet"}, _replace("products.parquet", "PAR1 nope"), "products.parquet: "
                    "not a readable parquet file"),
    "split_value": ({"split_column": "sku"}, None, "outfits.csv: --split_column 'sku' has 'shoe-1' (outfit 'L1'); "
                    "expected train (training), valid (validation, val, dev) or test (testing)"),
    "image_root_missing": ({"image_root": "nowhere"}, None, "nowhere': folder not found"),
    "map_conflict": ({"category_map": ["Tops=tops", "TOPS=shoes"]}, None, "--category_map maps 'Tops' and 'TOPS'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_error_line_and_changes_nothing(shop, tmp_path, capsys, case):
    changes, prepare, message = BAD_INPUTS[case]
    if prepare is not None:
        prepare(shop)
    argv = cli_args(shop, tmp_path / "raw")
    for name, value in changes.items():
        flag = f"--{name}"
        if name in ("products", "image_root"):
            value = shop / value
        if flag in argv:
            position = argv.index(flag)
            end = position + 1
            while end < len(argv) and not str(argv[end]).startswith("--"):
                end += 1
            argv[position:end] = [] if value is None else [flag, *(value if isinstance(value, list) else [value])]
        elif value is not None:
            argv += [flag, *(value if isinstance(value, list) else [value])]
    before = digest(tmp_path)
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err
    assert digest(tmp_path) == before  # nothing written, no input changed
    assert not (tmp_path / "raw").exists()


def test_split_conflict_is_an_error(shop, tmp_path, capsys):
    (shop / "split.csv").write_text("look,sku,part\nL1,shoe-1,train\nL1,top-1,test\n", encoding="utf-8")
    argv = cli_args(shop, tmp_path / "raw")
    argv[argv.index(shop / "outfits.csv")] = shop / "split.csv"
    code, _, err = _run([*argv, "--split_column", "part"], capsys)
    assert code == 2 and "outfit 'L1' is in two splits of --split_column 'part', train and test" in err


def test_output_folder_rules(shop, tmp_path, capsys):
    argv = cli_args(shop, tmp_path / "raw")
    at = argv.index("--output_dir") + 1
    argv[at] = shop / "photos" / "raw"  # inside the image root (by default the products table's folder)
    code, _, err = _run(argv, capsys)
    assert code == 2 and "is inside the input --image_root" in err
    argv[at] = shop / "raw"
    code, _, err = _run([*argv, "--no_images"], capsys)  # without photos the shop folder is no input
    assert code == 0, err
    assert not (shop / "raw" / "images").exists()
    argv[at] = tmp_path / "raw"
    assert _run(argv, capsys)[0] == 0
    code, _, err = _run([*argv, "--seed", "1"], capsys)
    assert code == 2 and "already exists; pass --overwrite" in err
    assert _run([*argv, "--seed", "1", "--overwrite"], capsys)[0] == 0
    assert _load(tmp_path / "raw" / MARKER_FILE)["seed"] == 1
    convert_mango(make_checkout(tmp_path / "mango"), tmp_path / "mango_raw", with_images=False)
    argv[at] = tmp_path / "mango_raw"
    code, _, err = _run([*argv, "--overwrite"], capsys)
    assert code == 2 and "was not written by `convert-csv`" in err


# Digests of `convert_mango(make_checkout(...), with_images=False, seed=...)` written by the importer before it became
# a preset of `convert-csv` (photos are copied byte for byte: test_mango.py checks them).
MANGO_DIGESTS = {
    0: "0497b306cabec396d10bd4a653c67f1c1cd618793c621f0b8675c19a0575fccd",
    3: "8e493060b6cba44754e51908e502494905621557e96e5c1a1df36d1bba8e2f92",
}


@pytest.mark.parametrize("seed", list(MANGO_DIGESTS))
def test_convert_mango_writes_the_same_bytes_as_before(tmp_path, seed):
    folder = tmp_path / "raw"
    convert_mango(make_checkout(tmp_path / "mango"), folder, seed=seed, with_images=False)
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            sha.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    assert sha.hexdigest() == MANGO_DIGESTS[seed]


def test_end_to_end_build_and_load(shop, tmp_path, monkeypatch):
    import datasets

    from dataset_builder.export import build_dataset

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    raw, out = tmp_path / "raw", tmp_path / "dataset"
    convert(shop, raw)
    summary = build_dataset(raw, out)
    kept = {split: summary.outfits[split]["kept"] for split in ("train", "validation", "test")}
    assert sum(kept.values()) == 11  # the outfits of items without a photo lack a slot
    outfits = datasets.load_dataset(str(out), "outfits", cache_dir=str(tmp_path / "cache"))
    assert {split: len(rows) for split, rows in outfits.items()} == kept
    assert outfits["train"].column_names == ["outfit_id", "shoes", "tops", "accessories", "bottoms"]
    catalogue = datasets.load_dataset(str(out), "catalogue", cache_dir=str(tmp_path / "cache"))["train"]
    rows = {row["item_id"]: row for row in catalogue}
    assert rows["top-4"]["title"] == f"{TITLE} top 4 Rojo" and rows["top-4"]["image"].size == (10, 12)
    assert min(rows[CONVERTED]["image"].convert("RGB").getpixel((2, 16))) > 240
