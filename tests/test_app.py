"""The web app: the `umbert-hf app` command, the Space files, and the page in headless Chromium driven by Playwright.

The browser tests need the Debian package `chromium` (/usr/bin/chromium; Playwright cannot download browsers here)
and are skipped without it, except under CI (`CI=true`), where they fail without it. They run the app on a tiny synthetic dataset with images and a umBERT fine-tuned on it
for a few epochs.
"""

import importlib.util
import os
import re
import socket
from pathlib import Path

import pytest
import torch
from PIL import Image
from support.outfit_fixtures import title_embeddings

from umbert_hf.apps.app import NOTHING_CHOSEN, build_app
from umbert_hf.apps.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
CHROMIUM_ARGS += ["--disable-background-networking"]
TOP_K = 5
# Under CI (`CI=true`) the browser tests are required: a missing Chromium fails them instead of skipping, so a broken
# install cannot hide an app regression. On a developer's machine they skip, with the reason.
REQUIRED = os.environ.get("CI", "").lower() == "true"
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRED,
    reason="the browser tests need Chromium at /usr/bin/chromium: apt-get install chromium",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_inputs(tmp_path_factory):
    """(dataset folder, model folder): a synthetic dataset with images, umBERT fine-tuned on its title embeddings."""
    import datasets

    from dataset_builder import build_dataset, synthesize_polyvore
    from umbert_hf.data.embeddings import write_embeddings_table
    from umbert_hf.utils.paths import run_command

    root = tmp_path_factory.mktemp("app")
    synthesize_polyvore(root / "raw", num_items=200, num_outfits=300, image_size=32, seed=0, with_images=True)
    build_dataset(root / "raw", root / "dataset", with_images=True)
    catalogue = datasets.load_dataset(str(root / "dataset"), "catalogue")["train"]
    table = root / "embeddings.parquet"
    write_embeddings_table(table, catalogue["item_id"], catalogue["category"], title_embeddings(catalogue["title"]))
    spec = importlib.util.spec_from_file_location("app_test_finetune", ROOT / "training_scripts" / "finetune.py")
    finetune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(finetune)
    argv = ["--embeddings", str(table), "--dataset", str(root / "dataset"), "--output_dir", str(root / "model")]
    argv += ["--num_train_epochs", "3", "--learning_rate", "3e-3", "--num_hidden_layers", "1"]
    argv += ["--num_attention_heads", "2", "--per_device_train_batch_size", "32", "--seed", "7"]
    assert run_command(finetune.main, argv) == 0
    return root / "dataset", root / "model"


@pytest.fixture(scope="module")
def known_outfit(app_inputs):
    """(outfit, blank, expected top-k ids): the first test outfit and blank whose held-out item the model ranks first."""
    import datasets
    from transformers import AutoModel

    dataset, model_dir = app_inputs
    model = AutoModel.from_pretrained(model_dir).eval()
    slots = model.config.categories
    test = datasets.load_dataset(str(dataset), "outfits")["test"]
    for row in test:
        for blank in slots:
            query = {slot: (None if slot == blank else row[slot]) for slot in slots}
            expected = [entry["item_id"] for entry in model.complete([query], top_k=TOP_K)[0]]
            if expected[0] == row[blank]:
                return {slot: row[slot] for slot in slots}, blank, expected
    pytest.fail("the fine-tuned model ranks no held-out test item first")


@pytest.fixture(scope="module")
def app_url(app_inputs):
    dataset, model_dir = app_inputs
    demo = build_app(str(model_dir), dataset, top_k=TOP_K, seed=0)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"CI=true: the browser tests are required, and Chromium is missing at {CHROMIUM}")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(app_url)
    page.locator("#gallery-shoes .thumbnail-item").first.wait_for()
    yield page
    page.close()


def choose_item(page, slot: str, item_id: str) -> None:
    """Search the slot's gallery for the item id and click its tile."""
    from playwright.sync_api import expect

    page.locator(f"#search-{slot} textarea").fill(item_id)
    tiles = page.locator(f"#gallery-{slot} .thumbnail-item")
    expect(tiles).to_have_count(1)
    expect(tiles.first).to_contain_text(item_id)
    tiles.first.click()
    expect(page.locator(f"#chosen-{slot}")).to_contain_text(item_id)


def upload(page, slot: str, path: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(f"#upload-{slot}").click()
    chooser.value.set_files(str(path))


@needs_chromium
@pytest.mark.slow
def test_the_page_suggests_the_held_out_item_of_a_test_outfit(page, known_outfit, tmp_path):
    from playwright.sync_api import expect

    outfit, blank, expected = known_outfit
    for slot, item_id in outfit.items():
        if slot != blank:
            choose_item(page, slot, item_id)
    page.locator(f"#blank [data-testid='{blank}-radio-label']").click()
    page.locator("#suggest").click()
    expect(page.locator("#suggestions .thumbnail-item")).to_have_count(TOP_K)
    expect(page.locator("#status")).to_contain_text(f"Top {TOP_K} suggestions for {blank}")
    shown = page.locator("#suggestions-table td code").all_inner_texts()
    assert shown == expected  # the model's own ranking, through the page
    assert outfit[blank] in shown
    captions = page.locator("#suggestions .caption-label").all_inner_texts()
    assert [re.search(r"\((\d+)\)$", caption).group(1) for caption in captions] == expected
    page.screenshot(path=tmp_path / "app.png", full_page=True)
    assert Image.open(tmp_path / "app.png").size[0] >= 1400


@needs_chromium
@pytest.mark.slow
def test_rate_this_outfit_shows_the_score_the_weakest_piece_and_its_replacements(page, known_outfit, app_inputs):
    from playwright.sync_api import expect
    from transformers import AutoModel

    outfit, _, _ = known_outfit
    model = AutoModel.from_pretrained(app_inputs[1]).eval()
    expected = model.score_outfit([outfit], top_k=TOP_K)[0]
    weakest = expected["weakest"]["slot"]
    page.locator("#rate").click()  # nothing chosen yet: the page says what is missing
    expect(page.locator("#status")).to_contain_text("to rate the outfit")
    for slot, item_id in outfit.items():
        choose_item(page, slot, item_id)
    page.locator("#rate").click()
    expect(page.locator("#status")).to_contain_text(f"Outfit score {expected['score']:.0f}/100")
    expect(page.locator("#status")).to_contain_text(f"The weakest piece is the {weakest}")
    for slot, entry in expected["slots"].items():
        expect(page.locator(f"#verdict-{slot}")).to_contain_text(f"Fits: {entry['percentile']:.0f}/100")
    expect(page.locator(f"#verdict-{weakest}")).to_contain_text("weakest piece")
    others = [slot for slot in outfit if slot != weakest]
    assert all("weakest" not in page.locator(f"#verdict-{slot}").inner_text() for slot in others)
    replacements = [entry["item_id"] for entry in expected["weakest"]["replacements"]]
    expect(page.locator("#suggestions .thumbnail-item")).to_have_count(len(replacements))
    assert page.locator("#suggestions-table td code").all_inner_texts() == replacements
    assert outfit[weakest] not in replacements
    # Choosing another piece for the weakest slot clears its verdict: it no longer describes the outfit.
    choose_item(page, weakest, replacements[0])
    expect(page.locator(f"#verdict-{weakest}")).to_have_text("")


@needs_chromium
@pytest.mark.slow
def test_the_diversity_slider_reranks_the_suggestions(page, known_outfit, app_inputs):
    from playwright.sync_api import expect
    from transformers import AutoModel

    outfit, blank, _ = known_outfit
    model = AutoModel.from_pretrained(app_inputs[1]).eval()
    query = {slot: (None if slot == blank else item_id) for slot, item_id in outfit.items()}
    expected = [entry["item_id"] for entry in model.complete([query], top_k=TOP_K, diversity=1.0)[0]]
    assert expected != [entry["item_id"] for entry in model.complete([query], top_k=TOP_K)[0]]
    for slot, item_id in outfit.items():
        if slot != blank:
            choose_item(page, slot, item_id)
    page.locator(f"#blank [data-testid='{blank}-radio-label']").click()
    number = page.locator("#diversity input[type='number']")
    number.fill("1")
    number.press("Enter")
    page.locator("#suggest").click()
    expect(page.locator("#suggestions .thumbnail-item")).to_have_count(TOP_K)
    expect(page.locator("#suggestions-table td code").first).to_have_text(expected[0])
    assert page.locator("#suggestions-table td code").all_inner_texts() == expected


@needs_chromium
@pytest.mark.slow
def test_bad_uploads_are_messages_in_the_page(page, tmp_path):
    from playwright.sync_api import expect

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a shopping list, not a photo")
    upload(page, "tops", not_an_image)
    expect(page.locator("#status")).to_contain_text("tops: notes.png is not an image this app can read")
    # The model's catalogue embeds titles, not photos: a real photo is refused with the model's reason.
    photo = tmp_path / "photo.png"
    Image.new("RGB", (50, 70), (200, 30, 30)).save(photo)
    upload(page, "tops", photo)
    expect(page.locator("#status")).to_contain_text("tops: This model cannot embed photos:")
    expect(page.locator("#chosen-tops")).to_contain_text(NOTHING_CHOSEN.strip("*").split(":")[0])
    page.locator("#suggest").click()
    expect(page.locator("#status")).to_contain_text("Choose an item or upload a photo for")
    assert "Traceback" not in page.content()


@needs_chromium
@pytest.mark.slow
def test_random_test_outfit_fills_every_slot_and_suggests(page, app_inputs):
    import datasets
    from playwright.sync_api import expect

    dataset, _ = app_inputs
    page.locator("#random-outfit").click()
    expect(page.locator("#suggestions .thumbnail-item")).to_have_count(TOP_K)
    status = page.locator("#status").inner_text()
    found = re.search(r"Test outfit (\S+), its (\w+) held out\. Top 5 suggestions for (\w+)", status)
    assert found and found.group(2) == found.group(3), status
    outfit_id, blank = found.group(1), found.group(2)
    row = next(row for row in datasets.load_dataset(str(dataset), "outfits")["test"] if row["outfit_id"] == outfit_id)
    for slot in ("shoes", "tops", "accessories", "bottoms"):
        expect(page.locator(f"#chosen-{slot}")).to_contain_text(row[slot])
    assert f"The item chosen for {blank}" in status and row[blank] in status


@pytest.mark.slow
def test_app_errors_are_one_line(app_inputs, capsys, tmp_path):
    dataset, model_dir = app_inputs
    assert main(["app", "--model", str(tmp_path / "missing")]) == 2
    assert main(["app", "--model", str(model_dir), "--dataset", str(tmp_path / "no_dataset")]) == 2
    assert main(["app", "--model", str(model_dir), "--port", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines), lines
    assert (
        "cannot load a model folder or Hub repo id" in lines[0]
        and "no_dataset" in lines[1]
        and "--port in 1..65535" in lines[2]
    )


@pytest.fixture(scope="module")
def app_without_page(app_inputs):
    """(the page's `OutfitCompletionApp`, the model): what the buttons call, without a browser."""
    from transformers import AutoModel

    from umbert_hf.apps.app import AppCatalogue, OutfitCompletionApp

    dataset, model_dir = app_inputs
    model = AutoModel.from_pretrained(model_dir).eval()
    return OutfitCompletionApp(model, AppCatalogue(model, dataset), seed=0), model


@pytest.mark.slow
def test_the_rank_said_for_a_random_test_outfits_held_out_item_is_the_models(app_without_page):
    app, model = app_without_page
    for _ in range(8):
        _, outfit, blank = app.random_test_outfit()
        size = len(app.catalogue.items_of_slot[blank])
        query = {slot: (None if slot == blank else item_id) for slot, item_id in outfit.items()}
        ranking = [entry["item_id"] for entry in model.complete([query], top_k=size)[0]]
        rank = ranking.index(outfit[blank]) + 1
        _, _, status = app.suggest(outfit, blank, size)  # every item of the slot: the held-out one is always ranked
        assert status.endswith(f"{app.catalogue.describe(outfit[blank])}, is rank {rank}."), status
        _, _, status = app.suggest(outfit, blank, TOP_K)
        assert status.endswith(f"is rank {rank}." if rank <= TOP_K else f"is not in the top {TOP_K}."), status


@pytest.mark.slow
def test_rating_is_the_models_score_and_needs_every_slot(app_without_page):
    app, model = app_without_page
    _, outfit, _ = app.random_test_outfit()
    expected = model.score_outfit([outfit], top_k=3)[0]
    tiles, table, status, verdicts = app.rate(outfit, 3)
    assert f"Outfit score **{expected['score']:.0f}/100**" in status
    assert [verdict.endswith("weakest piece**") for verdict in verdicts.values()] == [
        slot == expected["weakest"]["slot"] for slot in verdicts
    ]
    assert len(tiles) == 3 and all(entry["item_id"] in table for entry in expected["weakest"]["replacements"])
    with pytest.raises(ValueError, match="Choose an item or upload a photo for tops to rate the outfit"):
        app.rate({**outfit, "tops": None}, 3)
    with pytest.raises(ValueError, match="unknown item id 'nope'"):
        app.rate({**outfit, "tops": "nope"}, 3)


@pytest.mark.slow
def test_the_catalogue_search_finds_an_item_by_words_of_its_title(app_inputs, app_without_page):
    import datasets

    catalogue = datasets.load_dataset(str(app_inputs[0]), "catalogue")["train"]
    search = app_without_page[0].catalogue.search
    item = next(row for row in catalogue if row["category"] == "tops")
    words = item["title"].split()  # e.g. "navy striped formal wool blouse": no word is in an item id
    found = search("tops", f"{words[-1].upper()} {words[0]}", limit=1000)
    assert item["item_id"] in found
    titles = dict(zip(catalogue["item_id"], catalogue["title"]))
    assert all(words[0] in titles[item_id] and words[-1] in titles[item_id] for item_id in found)
    assert search("shoes", item["title"], limit=1000) == []  # a top's title: no shoe has it


@pytest.mark.slow
def test_write_space_gives_a_runnable_app(app_inputs, tmp_path, monkeypatch, capsys):
    dataset, model_dir = app_inputs
    space = tmp_path / "space"
    assert main(["app", "--model", "USER/umbert", "--dataset", "USER/polyvore", "--write_space", str(space)]) == 0
    assert sorted(path.name for path in space.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    assert "sdk: gradio" in (space / "README.md").read_text()
    assert (space / "requirements.txt").read_text().strip() == "umbert-hf[app]"
    text = (space / "app.py").read_text()
    assert "'USER/umbert'" in text and "'USER/polyvore'" in text
    assert main(["app", "--model", "USER/umbert", "--write_space", str(space)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    # The Space reads its model and dataset from its variables: here, the local test folders.
    monkeypatch.setenv("UMBERT_MODEL", str(model_dir))
    monkeypatch.setenv("UMBERT_DATASET", str(dataset))
    spec = importlib.util.spec_from_file_location("space_app", space / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    blocks = {block.elem_id: block for block in module.demo.blocks.values() if getattr(block, "elem_id", None)}
    assert {"suggest", "gallery-shoes", "upload-bottoms"} <= set(blocks)
    assert blocks["random-outfit"].visible is True  # the dataset came from UMBERT_DATASET


@pytest.mark.slow
def test_catalogue_details_give_every_title_and_decode_images_on_lookup(app_inputs):
    import datasets

    from umbert_hf.data.outfit_data import load_catalogue_details

    dataset, _ = app_inputs
    catalogue = datasets.load_dataset(str(dataset), "catalogue")["train"]
    titles, images = load_catalogue_details(dataset)
    assert titles == dict(zip(catalogue["item_id"], catalogue["title"]))
    assert len(images) == len(catalogue) and set(images) == set(catalogue["item_id"])
    for row in (0, len(catalogue) - 1):
        expected = catalogue[row]["image"]
        assert images[catalogue[row]["item_id"]].tobytes() == expected.tobytes()
    assert images.get("no-such-item") is None


def test_write_space_refuses_a_local_model_or_dataset_path(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "dataset").mkdir()
    for argv in (
        ["--model", str(tmp_path / "model")],
        ["--model", "USER/umbert", "--dataset", str(tmp_path / "dataset")],
    ):
        assert main(["app", *argv, "--write_space", str(tmp_path / "space")]) == 2
        err = capsys.readouterr().err
        assert "is a local path; a Space loads Hub ids" in err and err.count("\n") == 1
        assert not (tmp_path / "space").exists()


def test_write_space_never_overwrites_a_users_readme(tmp_path, capsys):
    folder = tmp_path / "my_repo"
    folder.mkdir()
    (folder / "README.md").write_text("my own README")
    assert main(["app", "--model", "USER/umbert", "--write_space", str(folder)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (folder / "README.md").read_text() == "my own README"
    assert sorted(path.name for path in folder.iterdir()) == ["README.md"]  # nothing half-written beside it


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory):
    """(model folder, tester): a tiny umBERT whose config records a tiny SSIM autoencoder, so photos can be embedded."""
    from support.umbert_testing import UmBertModelTester

    from umbert_hf.configuration_ssim_autoencoder import SsimAutoEncoderConfig
    from umbert_hf.data.image_processing import ImagePreprocessing
    from umbert_hf.modeling_ssim_autoencoder import SsimAutoEncoderModel

    root = tmp_path_factory.mktemp("photo_app")
    tester = UmBertModelTester()
    torch.manual_seed(0)
    encoder_config = SsimAutoEncoderConfig(
        image_size=32,
        hidden_channels=8,
        latent_channels=8,
        intermediate_size=32,
        embedding_dim=tester.hidden_size,
        num_downsampling_layers=2,
    )
    SsimAutoEncoderModel(encoder_config).save_pretrained(root / "encoder")
    model = tester.umbert()
    model.config.image_encoder = str(root / "encoder")
    preprocessing = ImagePreprocessing.for_encoder("ssim-autoencoder", 32)
    model.config.embedding_metadata = {"parts": ["image"], "image_preprocessing": preprocessing.to_dict()}
    model.save_pretrained(root / "model")
    return root / "model", tester


@needs_chromium
@pytest.mark.slow
def test_an_uploaded_photo_is_a_context_item_even_without_a_dataset(browser, photo_model, tmp_path):
    from playwright.sync_api import expect
    from transformers import AutoModel

    model_dir, tester = photo_model
    demo = build_app(str(model_dir), top_k=TOP_K)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        expect(page.locator("#random-outfit")).to_be_hidden()  # no dataset, no test outfits
        ids = tester.item_ids
        choose_item(page, "accessories", ids[2])  # tiles without a dataset: grey, named by item id
        choose_item(page, "bottoms", ids[3])
        photo = tmp_path / "photo.jpg"
        Image.new("RGB", (40, 60), (200, 30, 30)).save(photo)
        upload(page, "tops", photo)
        expect(page.locator("#chosen-tops")).to_contain_text("Your photo (photo.jpg)")
        page.locator("#blank [data-testid='shoes-radio-label']").click()
        page.locator("#suggest").click()
        expect(page.locator("#suggestions .thumbnail-item")).to_have_count(TOP_K)
        shown = page.locator("#suggestions-table td code").all_inner_texts()
    finally:
        page.close()
        demo.close()
    model = AutoModel.from_pretrained(model_dir).eval()
    outfit = {"shoes": None, "tops": Image.open(photo), "accessories": ids[2], "bottoms": ids[3]}
    assert shown == [entry["item_id"] for entry in model.complete([outfit], top_k=TOP_K)[0]]
