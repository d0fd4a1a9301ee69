"""The outfit completion web app (Gradio): pick items or photos for the slots, mark the blank, see the suggestions;
or rate a complete outfit and see which piece clashes, with replacements for it.

    umbert-hf app --model demo_output/umbert --dataset demo_output/dataset        # or: make app
    umbert-hf app --model USER/umbert --dataset USER/polyvore --write_space DIR    # files of a Hugging Face Space

The model does the work (`model.complete` ranks, `model.score_outfit` rates, `model.embed_images` embeds photos); this
module lays out the page,
shows the catalogue with the titles and images of a built dataset, and turns user errors into messages in the page.
"""

import os
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageOps
from transformers.utils import logging

from ..data.image_processing import decode_image
from ..data.outfit_data import load_catalogue_details, load_dataset_config
from ..utils.files import atomic_write
from ..utils.paths import check_output, first_line, is_local_path

logger = logging.get_logger(__name__)

GALLERY_SIZE = 24  # tiles per slot gallery: the search box narrows the catalogue down to these
THUMBNAIL_SIZE = 160
MAX_TOP_K = 20
PLACEHOLDER_COLOUR = (236, 236, 236)
NOTHING_CHOSEN = "*Nothing chosen yet: search and click a tile, or upload a photo.*"
MODEL_VARIABLE, DATASET_VARIABLE = "UMBERT_MODEL", "UMBERT_DATASET"

SPACE_APP_TEMPLATE = '''"""umBERT outfit completion, as a Hugging Face Space (written by `umbert-hf app --write_space`).

The model and the dataset are the Space variables {model_variable} and {dataset_variable} when set, else the ids
below (a Hub model repo saved by the training scripts, and a dataset repo pushed by `umbert-hf build`, or "").
"""

import os

from umbert_hf.apps.app import build_app

MODEL = os.environ.get("{model_variable}", {model!r})
DATASET = os.environ.get("{dataset_variable}", {dataset!r}) or None

demo = build_app(MODEL, dataset=DATASET)

if __name__ == "__main__":
    demo.launch()
'''

SPACE_README_TEMPLATE = """---
title: umBERT outfit completion
emoji: 👗
colorFrom: indigo
colorTo: pink
sdk: gradio
sdk_version: {gradio_version}
app_file: app.py
pinned: false
---

Complete an outfit with [{model}](https://huggingface.co/{model}): pick catalogue items (or upload photos) for the
slots, mark the missing one, and see the model's suggestions. Built with `umbert-hf app --write_space`.
"""


class AppCatalogue:
    """The model's catalogue items per slot, with titles and images from a built dataset (images decoded on demand).

    Without a dataset the items are shown by id on grey tiles. The dataset's `outfits` test split, when present,
    feeds the "random test outfit" button.
    """

    def __init__(self, model, dataset: str | os.PathLike | None = None, thumbnail_size: int = THUMBNAIL_SIZE):
        self.slots = list(model.config.categories)
        item_ids = model.catalogue_item_id_list
        self.items_of_slot = {
            slot: [item_ids[row] for row in model.catalogue_rows_of_category(slot).tolist()] for slot in self.slots
        }
        self.thumbnail_size = thumbnail_size
        self.titles: dict[str, str] = {}
        self.test_outfits = None
        self._images: Mapping = {}
        if dataset:
            self._read_dataset(os.fspath(dataset))
        # A real catalogue has tens of thousands of items: decode each image once, when it is first shown.
        self.image = lru_cache(maxsize=4096)(self._thumbnail)
        self._search_text = {
            slot: [(item_id, f"{item_id} {self.titles.get(item_id, '')}".lower()) for item_id in items]
            for slot, items in self.items_of_slot.items()
        }

    def _read_dataset(self, dataset: str) -> None:
        self.titles, self._images = load_catalogue_details(dataset)  # ValueError with the reason
        try:
            test = load_dataset_config(dataset, "outfits").get("test")
        except ValueError:
            test = None
        if test is not None and len(test) and set(self.slots) <= set(test.column_names):
            self.test_outfits = test
        else:
            logger.info(
                "%s has no test outfits with the slots %s: no 'random test outfit' button.", dataset, self.slots
            )

    def describe(self, item_id: str) -> str:
        """`title (id)`, or the id alone when the dataset gives no title."""
        title = self.titles.get(item_id)
        return f"{title} ({item_id})" if title else item_id

    def _thumbnail(self, item_id: str) -> Image.Image:
        image = self._images.get(item_id)
        if image is None:
            return placeholder_tile(item_id, self.thumbnail_size)
        return thumbnail(image, self.thumbnail_size)

    def search(self, slot: str, query: str, limit: int = GALLERY_SIZE) -> list[str]:
        """The first `limit` items of `slot` whose id or title contains every word of `query` (case-insensitive)."""
        words = (query or "").lower().split()
        found = []
        for item_id, text in self._search_text[slot]:
            if all(word in text for word in words):
                found.append(item_id)
                if len(found) == limit:
                    break
        return found

    def gallery(self, item_ids: Sequence[str]) -> list[tuple[Image.Image, str]]:
        return [(self.image(item_id), self.describe(item_id)) for item_id in item_ids]


def thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """An RGB copy of `image` scaled to fit a `size` square (aspect ratio kept; small product shots are enlarged)."""
    return ImageOps.contain(ImageOps.exif_transpose(image).convert("RGB"), (size, size))


def placeholder_tile(text: str, size: int = THUMBNAIL_SIZE) -> Image.Image:
    """A grey square naming an item that has no image."""
    tile = Image.new("RGB", (size, size), PLACEHOLDER_COLOUR)
    draw = ImageDraw.Draw(tile)
    left, top, right, bottom = draw.textbbox((0, 0), text)
    draw.text(((size - (right - left)) / 2, (size - (bottom - top)) / 2), text, fill=(60, 60, 60))
    return tile


class OutfitCompletionApp:
    """What the page does, without the page: search, choose, read photos, suggest, draw a test outfit.

    Slot values are what `model.complete` takes: an item id, or the embedding of an uploaded photo. Errors a user can
    cause raise `ValueError` with the message to show.
    """

    def __init__(self, model, catalogue: AppCatalogue, seed: int | None = None):
        self.model = model
        self.catalogue = catalogue
        self.slots = catalogue.slots
        self._random = random.Random(seed)

    def read_photo(self, path: str | os.PathLike, slot: str) -> tuple[Image.Image, torch.Tensor]:
        """(preview, embedding) of a photo uploaded for `slot`, embedded by the model's own image encoder (a title
        part, where the model's embeddings have one, is the slot category's mean: see `embed_images`)."""
        name = os.path.basename(os.fspath(path))
        try:
            image = decode_image(path, upright=True)
        except ValueError as error:
            raise ValueError(f"{name} is not an image this app can read ({first_line(error)}).") from None
        try:
            with torch.inference_mode():
                embedding = self.model.embed_images([image], categories=[slot])[0].detach().clone()
        except (OSError, ValueError) as error:
            raise ValueError(f"This model cannot embed photos: {first_line(error)}") from None
        return thumbnail(image, self.catalogue.thumbnail_size), embedding

    def suggest(
        self, values: Mapping[str, Any], blank: str | None, top_k: int, diversity: float = 0.0
    ) -> tuple[list, str, str]:
        """(suggestion tiles, Markdown table, status) for the outfit `values` with `blank` as the missing slot;
        `diversity` re-ranks them (see `model.complete`)."""
        if blank not in self.slots:
            raise ValueError("Mark one slot as the blank (the item to suggest).")
        missing = [slot for slot in self.slots if slot != blank and values.get(slot) is None]
        if missing:
            raise ValueError(
                f"Choose an item or upload a photo for {', '.join(missing)} (or mark that slot as the blank)."
            )
        outfit = {slot: (None if slot == blank else values[slot]) for slot in self.slots}
        try:
            with torch.inference_mode():
                suggestions = self.model.complete([outfit], top_k=max(1, int(top_k)), diversity=float(diversity))[0]
        except ValueError as error:
            raise ValueError(first_line(error)) from None
        item_ids = [entry["item_id"] for entry in suggestions]
        tiles, table = self._ranked(suggestions)
        status = f"Top {len(item_ids)} suggestions for **{blank}** (score: higher is better)."
        own = values.get(blank)
        if isinstance(own, str):  # an item chosen for the blank slot: where does the model rank it?
            where = f"rank {item_ids.index(own) + 1}" if own in item_ids else f"not in the top {len(item_ids)}"
            status += f" The item chosen for {blank}, {self.catalogue.describe(own)}, is {where}."
        return tiles, table, status

    def rate(self, values: Mapping[str, Any], top_k: int) -> tuple[list, str, str, dict[str, str]]:
        """(replacement tiles, Markdown table, status, slot -> verdict) for the complete outfit `values`: its score
        out of 100, each piece's percentile, and `top_k` replacements for the weakest piece (`model.score_outfit`)."""
        missing = [slot for slot in self.slots if values.get(slot) is None]
        if missing:
            raise ValueError(f"Choose an item or upload a photo for {', '.join(missing)} to rate the outfit.")
        try:
            with torch.inference_mode():
                result = self.model.score_outfit(
                    [{slot: values[slot] for slot in self.slots}], top_k=max(1, int(top_k))
                )
        except ValueError as error:
            raise ValueError(first_line(error)) from None
        result = result[0]
        weakest = result["weakest"]["slot"]
        verdicts = {}
        for slot, entry in result["slots"].items():
            verdicts[slot] = f"Fits: **{entry['percentile']:.0f}**/100"
            if slot == weakest:
                verdicts[slot] += " · ⚠️ **weakest piece**"
        tiles, table = self._ranked(result["weakest"]["replacements"])
        status = (
            f"Outfit score **{result['score']:.0f}/100** (100: every piece is the model's first choice for its slot; "
            f"about 50: random pieces). The weakest piece is the **{weakest}**: replacements for it below."
        )
        return tiles, table, status, verdicts

    def _ranked(self, entries: Sequence[Mapping[str, Any]]) -> tuple[list, str]:
        """(gallery tiles, Markdown table) of ranked `{"item_id", "score"}` entries."""
        tiles = [
            (self.catalogue.image(entry["item_id"]), f"{rank}. {self.catalogue.describe(entry['item_id'])}")
            for rank, entry in enumerate(entries, start=1)
        ]
        rows = ["| rank | item | title | score |", "|---:|---|---|---:|"]
        for rank, entry in enumerate(entries, start=1):
            title = self.catalogue.titles.get(entry["item_id"], "").replace("|", "/")
            rows.append(f"| {rank} | `{entry['item_id']}` | {title} | {entry['score']:.4f} |")
        return tiles, "\n".join(rows)

    def random_test_outfit(self) -> tuple[str, dict[str, str], str]:
        """(outfit id, slot -> item id, blank slot) of a random outfit of the dataset's test split."""
        test = self.catalogue.test_outfits
        if test is None:
            raise ValueError("No test outfits: start the app with --dataset, a dataset built by `umbert-hf build`.")
        row = test[self._random.randrange(len(test))]
        return str(row.get("outfit_id", "")), {slot: row[slot] for slot in self.slots}, self._random.choice(self.slots)

    def chosen_text(self, item_id: str) -> str:
        return f"**{self.catalogue.describe(item_id)}**"


def build_app(model, dataset: str | os.PathLike | None = None, top_k: int = 5, seed: int | None = None):
    """The `gr.Blocks` page for `model` (a loaded umBERT/WumBERT, or a folder or Hub id to load) and `dataset`.

    `dataset` (a built dataset folder or Hub id) gives titles, images and the test outfits; without it items are
    shown by id. Raises `ValueError` for a dataset that cannot be read. A user's mistake (an unreadable photo, a
    missing slot) is said in the status line under the buttons, not in a toast: toasts would cover those buttons.
    """
    import gradio as gr

    if isinstance(model, (str, os.PathLike)):
        from .loading import load_model

        model = load_model(os.fspath(model))
    app = OutfitCompletionApp(model, AppCatalogue(model, dataset), seed=seed)
    slots = app.slots
    top_k = max(1, min(int(top_k), MAX_TOP_K))

    with gr.Blocks(title="umBERT outfit completion", analytics_enabled=False) as demo:
        gr.Markdown(
            "# Outfit completion\nFor each slot, search the catalogue and click an item, or upload a photo. Mark "
            "the slot to fill as the blank and ask for suggestions: the model ranks the catalogue items of that slot."
        )
        with gr.Row(equal_height=True):
            blank = gr.Radio(slots, value=slots[0], label="Blank (the slot to fill)", elem_id="blank", scale=3)
            top_k_slider = gr.Slider(1, MAX_TOP_K, value=top_k, step=1, label="Suggestions", elem_id="top-k", scale=2)
            has_test_outfits = app.catalogue.test_outfits is not None
            diversity_slider = gr.Slider(
                0,
                1,
                value=0,
                step=0.05,
                label="Diversity (0: by relevance; higher: fewer near-copies)",
                elem_id="diversity",
                scale=2,
            )
            random_button = gr.Button("Random test outfit", elem_id="random-outfit", visible=has_test_outfits, scale=1)
            suggest_button = gr.Button("Suggest", variant="primary", elem_id="suggest", scale=1)
            rate_button = gr.Button("Rate this outfit", elem_id="rate", scale=1)
        status = gr.Markdown("", elem_id="status")
        note = gr.State("")  # the test outfit last loaded, said before the next suggestions; cleared by a change
        with gr.Row():
            choices = [_slot_column(gr, app, slot, note, status) for slot in slots]
        values, previews, chosen, verdicts = (list(column) for column in zip(*choices))
        gr.Markdown("## Suggestions")
        results = gr.Gallery(
            columns=5,
            height=240,
            allow_preview=False,
            interactive=False,
            show_label=False,
            object_fit="contain",
            buttons=[],
            elem_id="suggestions",
        )
        table = gr.Markdown("", elem_id="suggestions-table")

        def suggest(blank_slot: str, k: int, diversity: float, pending_note: str, *slot_values):
            cleared = [""] * len(slots)  # the verdicts of an earlier rating
            try:
                tiles, rows, message = app.suggest(dict(zip(slots, slot_values)), blank_slot, k, diversity)
            except ValueError as error:
                return [], "", f"⚠️ {error}", *cleared
            return tiles, rows, f"{pending_note} {message}".strip(), *cleared

        def rate(k: int, *slot_values):
            try:
                tiles, rows, message, verdict = app.rate(dict(zip(slots, slot_values)), k)
            except ValueError as error:
                return [], "", f"⚠️ {error}", *[""] * len(slots)
            return tiles, rows, message, *[verdict[slot] for slot in slots]

        def fill_random_outfit():
            outfit_id, outfit, blank_slot = app.random_test_outfit()
            message = f"Test outfit `{outfit_id}`, its {blank_slot} held out."
            item_ids = [outfit[slot] for slot in slots]
            images = [app.catalogue.image(item_id) for item_id in item_ids]
            return blank_slot, message, *item_ids, *images, *[app.chosen_text(item_id) for item_id in item_ids]

        blank.input(lambda: "", None, note)
        suggest_inputs = [blank, top_k_slider, diversity_slider, note, *values]
        answer_outputs = [results, table, status, *verdicts]
        suggest_button.click(suggest, suggest_inputs, answer_outputs)
        rate_button.click(rate, [top_k_slider, *values], answer_outputs)
        random_button.click(fill_random_outfit, None, [blank, note, *values, *previews, *chosen]).then(
            suggest, suggest_inputs, answer_outputs
        )
    return demo


def _slot_column(gr, app: OutfitCompletionApp, slot: str, note, status) -> tuple:
    """One slot's column and its events; returns its (value state, preview image, chosen text, rating verdict).

    The search box filters the slot's gallery, a click on a tile chooses that item, an upload reads a photo. A choice
    by hand clears the test outfit `note`; an unreadable photo leaves the slot as it was and says why in `status`.
    """
    with gr.Column(min_width=220):
        preview = gr.Image(label=slot, interactive=False, height=150, elem_id=f"preview-{slot}", buttons=[])
        chosen = gr.Markdown(NOTHING_CHOSEN, elem_id=f"chosen-{slot}")
        verdict = gr.Markdown("", elem_id=f"verdict-{slot}")  # how well this piece fits, once the outfit is rated
        search = gr.Textbox(placeholder=f"Search {slot} by id or title", show_label=False, elem_id=f"search-{slot}")
        first_items = app.catalogue.search(slot, "")
        gallery = gr.Gallery(
            app.catalogue.gallery(first_items),
            columns=2,  # gradio's tiles are at least 100 px wide
            height=270,
            allow_preview=False,
            interactive=False,
            show_label=False,
            object_fit="contain",
            buttons=[],
            elem_id=f"gallery-{slot}",
        )
        upload = gr.UploadButton("Upload a photo", file_types=["image"], size="sm", elem_id=f"upload-{slot}")
    value, shown = gr.State(None), gr.State(first_items)

    def filter_gallery(query: str):
        item_ids = app.catalogue.search(slot, query)
        return app.catalogue.gallery(item_ids), item_ids

    def choose(shown_ids: list[str], selection: gr.SelectData):
        item_id = shown_ids[selection.index]
        return item_id, app.catalogue.image(item_id), app.chosen_text(item_id), "", ""

    def read_upload(path: str):
        try:
            image, embedding = app.read_photo(path, slot)
        except ValueError as error:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), f"⚠️ {slot}: {error}"
        photo = f"**Your photo** ({os.path.basename(path)})"
        return embedding, image, photo, "", "", f"Photo uploaded for {slot}."

    search.change(filter_gallery, search, [gallery, shown], show_progress="hidden")
    gallery.select(choose, shown, [value, preview, chosen, note, verdict])  # a new piece: its old verdict goes
    upload.upload(read_upload, upload, [value, preview, chosen, note, verdict, status])
    return value, preview, chosen, verdict


def write_space(directory: str | os.PathLike, model: str, dataset: str | None = None) -> list[Path]:
    """Write `app.py`, `requirements.txt` and `README.md` of a Hugging Face Space that serves `build_app`.

    `model` and `dataset` become the Space's defaults (Hub ids; the Space variables UMBERT_MODEL and
    UMBERT_DATASET override them). The folder must be new or empty (`utils.paths.check_output`: a repository's own
    README.md is never replaced); each file is written atomically.
    """
    directory = Path(directory)
    check_output(directory, {"model": model, "dataset": dataset}, flag="--write_space", existing="new")
    for flag, value in (("--model", model), ("--dataset", dataset)):
        if value and is_local_path(value):  # it would write this machine's path into the Space's files
            raise ValueError(
                f"{flag} {value!r} is a local path; a Space loads Hub ids: push it first and give its repo id."
            )
    try:
        from importlib.metadata import version

        gradio_version = version("gradio")
    except Exception:
        gradio_version = "5.0.0"
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "app.py": SPACE_APP_TEMPLATE.format(
            model=model, dataset=dataset or "", model_variable=MODEL_VARIABLE, dataset_variable=DATASET_VARIABLE
        ),
        # umbert-hf registers the model classes and holds the app; gradio comes with the Space's `sdk_version`.
        "requirements.txt": "umbert-hf[app]\n",
        "README.md": SPACE_README_TEMPLATE.format(model=model, gradio_version=gradio_version),
    }
    written = []
    for name, text in files.items():
        written.append(atomic_write(directory / name, text))
    return written


__all__ = ["AppCatalogue", "OutfitCompletionApp", "build_app", "write_space"]
