"""The labelling page: written from a dataset's rainy captures, least sure first, every
name escaped, nothing fetched from outside; a crop where the streaks are; and in a real
headless Chromium, keys label captures and Export CSV saves a sheet `rainbench tag`
applies. Without Playwright or a Chromium the browser test skips (fails under CI=true).
"""

import base64
import io
import math
import os
import re
import shutil
import tarfile

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from rainbench.cli import main
from rainbench.demo.captures import CaptureSpec, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest.label_page import (
    CROP,
    KEY_LABELS,
    Card,
    rain_crop_box,
    render_page,
    write_label_page,
)
from rainbench.ingest.tag import tag_dataset
from rainbench.shards.dataset import DatasetError
from rainbench.tagging.labels import LABEL_TYPES, match_labels, read_label_sheet

HOSTILE = "<img src=x onerror=alert(1)>&\"'.jpg"
PORTRAIT = "turned.jpg"  # stored 480×360 with orientation 6: upright 360×480


@pytest.fixture(scope="module")
def _dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("label") / "raw"
    names = [HOSTILE, PORTRAIT, *(f"scene-{n}.jpg" for n in range(4))]
    for seed, name in enumerate(names):
        orientation = 6 if name == PORTRAIT else 1
        write_capture(root, CaptureSpec(name, 480, 360, orientation=orientation, seed=seed))
    ds = root.parent / "ds"
    ingest([root], ds, IngestOptions(workers=1))
    return ds


@pytest.fixture
def dataset(tmp_path, _dataset):
    """A fresh copy of a small dataset of six rainy captures."""
    return shutil.copytree(_dataset, tmp_path / "ds")


def _samples(ds) -> pd.DataFrame:
    return pd.read_parquet(ds / "manifests" / "samples.parquet").set_index("key")


def _card_keys(page: str) -> list[str]:
    return re.findall(r'<article class="card[^"]*"[^>]*data-key="([0-9a-f]+)"', page)


def test_every_label_type_has_one_key():
    assert sorted(KEY_LABELS) == sorted(LABEL_TYPES)


def test_page_is_self_contained_and_least_sure_first(dataset, tmp_path):
    out = tmp_path / "labels.html"
    page = write_label_page(dataset, out)
    text = out.read_text(encoding="utf-8")
    samples = _samples(dataset)
    assert page.cards == page.rainy == len(samples) == 6
    assert page.unreadable == []
    assert _card_keys(text) == list(
        samples.reset_index().sort_values(["rain_type_confidence", "key"])["key"]
    )
    # Every picture is inlined; no address leads outside the file.
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(source.startswith("data:") for source in sources)
    assert not re.search(r"https?:|//[a-z]|\burl\(", re.sub(r"data:[^\"]*", "", text))
    assert text.count('class="crop"') == 6
    for key, auto in samples["rain_type_auto"].items():
        card = text[text.index(f'data-key="{key}"') :]
        assert f"auto: <b>{auto}</b>" in card[: card.index("</article>")]


def test_a_hostile_name_is_escaped(dataset, tmp_path):
    text = write_label_page(dataset, tmp_path / "labels.html").out.read_text(encoding="utf-8")
    assert "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#x27;.jpg" in text


def test_a_name_shows_its_line_breaks_and_direction_overrides_as_escapes():
    # Shown as they are, "photo\u202egpj.exe" reads "photoexe.jpg", a newline a space.
    name = "photo\u202egpj.exe\nnext\tline\x85.jpg"
    card = Card("0" * 24, name, "train", None, None, (), None, None, problem="unread")
    shown = re.search('<p class="name">(.*?)</p>', render_page("ds", [card]), re.S).group(1)
    assert shown == '<span class="number">1</span> photo\\u202egpj.exe\\nnext\\tline\\x85.jpg'


def test_pictures_are_upright_and_the_crop_is_one_to_one(dataset, tmp_path):
    text = write_label_page(dataset, tmp_path / "labels.html").out.read_text(encoding="utf-8")
    card = next(card for card in text.split("<article")[1:] if f"{PORTRAIT}</p>" in card)
    thumbnail, crop = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', card)
    assert Image.open(io.BytesIO(base64.b64decode(thumbnail))).size == (225, 300)
    assert Image.open(io.BytesIO(base64.b64decode(crop))).size == (CROP, CROP)
    left, top = map(int, re.search(r"crop at (\d+),(\d+)", card).groups())
    assert 0 <= left <= 360 - CROP and 0 <= top <= 480 - CROP


def test_manual_labels_are_shown_and_come_last(dataset, tmp_path):
    first = _card_keys(write_label_page(dataset, tmp_path / "a.html").out.read_text())[0]
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(f"key,rain_type,note\n{first},clean,a wet lens\n")
    tag_dataset(dataset, sheet)
    text = write_label_page(dataset, tmp_path / "b.html").out.read_text()
    assert _card_keys(text)[-1] == first
    assert "applied: <b>clean</b>" in text and "note: a wet lens" in text
    # Shown as labelled, and the data the page's script seeds its labels from.
    card = re.search(rf'<article class="card labelled"[^>]*data-key="{first}"[^>]*>', text)
    assert card is not None
    assert 'data-applied="clean" data-note="a wet lens"' in card.group(0)
    assert text.count('<p class="label">label: clean</p>') == 1
    assert "not labelled" not in text.split(f'data-key="{first}"')[1].split("</article>")[0]


def test_an_existing_file_that_is_not_a_label_page_is_not_replaced(dataset, tmp_path):
    sheet = tmp_path / "labels.csv"
    sheet.write_text("key,rain_type,note\n")
    result = CliRunner().invoke(main, ["label", str(dataset), "--out", str(sheet), "-j", "1"])
    assert result.exit_code == 1
    assert f"{sheet} exists and is not a page rainbench label wrote: not replaced" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert sheet.read_text() == "key,rain_type,note\n"
    page = write_label_page(dataset, tmp_path / "labels.html", limit=1)
    assert write_label_page(dataset, page.out, limit=2).cards == 2  # its own page: replaced
    os.mkfifo(tmp_path / "fifo.html")  # read to check it, it would wait for a writer forever
    with pytest.raises(DatasetError, match=r"fifo\.html: cannot read it to check it \(not a"):
        write_label_page(dataset, tmp_path / "fifo.html")


def test_split_and_limit_choose_the_captures(dataset, tmp_path):
    samples = _samples(dataset)
    split = samples["split"].iloc[0]
    page = write_label_page(dataset, tmp_path / "labels.html", splits=(split,), limit=1)
    assert page.rainy == (samples["split"] == split).sum()
    assert page.cards == 1
    with pytest.raises(DatasetError, match="no rainy captures in split nowhere"):
        write_label_page(dataset, tmp_path / "none.html", splits=("nowhere",))


def test_two_pages_written_at_once_into_one_out_both_finish(dataset, tmp_path, held_at_rename):
    out = tmp_path / "page.html"
    first, release = held_at_rename(
        "from rainbench.ingest.label_page import write_label_page\n"
        f"write_label_page(Path({str(dataset)!r}), Path({str(out)!r}), workers=1, limit=2)\n"
    )
    write_label_page(dataset, out, workers=1)
    release()
    assert first.wait(timeout=60) == 0, first.stderr.read()
    assert len(_card_keys(out.read_text())) == 2  # the last to finish


def test_command_writes_the_page(dataset, tmp_path):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["label", str(dataset), "--out", str(out), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 6 of 6 rainy captures" in result.output
    assert "1 drizzle, 2 fog-like, 3 storm, 4 streak, 5 clean" in result.output
    assert out.exists()


def test_a_capture_damaged_in_place_is_not_shown_as_if_it_were_the_capture(dataset, tmp_path):
    # Its shard still reads, its JPEG still decodes: only its digest tells.
    key = sorted(_samples(dataset).index)[0]
    shard = dataset / _samples(dataset).loc[key, "shard"]
    with tarfile.open(shard) as tar:
        info = next(m for m in tar.getmembers() if m.name == f"{key}.jpg")
    data = bytearray(shard.read_bytes())
    middle = info.offset_data + info.size // 2
    data[middle : middle + 64] = bytes(64)
    shard.write_bytes(bytes(data))

    out = tmp_path / "page.html"
    result = CliRunner().invoke(main, ["label", str(dataset), "--out", str(out), "-j", "1"])

    assert result.exit_code == 0, result.output
    said = "could not show 1 (the page says why of each); the first: "
    assert said in result.output and "its bytes are not the manifest's" in result.output
    text = out.read_text(encoding="utf-8")
    card = text[text.index(f'data-key="{key}"') :]
    card = card[: card.index("</article>")]
    assert "its bytes are not the manifest&#x27;s" in card and "<img" not in card
    assert text.count('class="crop"') == 5


def _streaks(size=(1200, 900), box=(760, 520, 1016, 776), seed=0) -> Image.Image:
    """Grey noise with a bright facade grid on the left (strong edges, no rain) and
    faint thin streaks at 75° inside `box` only."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(90, 4, (size[1], size[0])), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(image)
    for x in range(40, 500, 60):
        for y in range(80, 800, 70):
            draw.rectangle((x, y, x + 30, y + 40), fill=(240, 240, 230))
    left, top, right, bottom = box
    dx, dy = 14 * math.cos(math.radians(75)), 14 * math.sin(math.radians(75))
    for _ in range(120):
        x, y = rng.uniform(left, right - dx), rng.uniform(top, bottom - dy)
        draw.line((x, y, x + dx, y + dy), fill=(120, 120, 120), width=1)
    return image


def test_the_crop_lands_on_the_streaks_not_the_facade():
    left, top, side = rain_crop_box(_streaks())
    assert side == CROP
    overlap_x = max(0, min(left + side, 1016) - max(left, 760))
    overlap_y = max(0, min(top + side, 776) - max(top, 520))
    assert overlap_x * overlap_y >= 0.6 * side * side


def test_the_crop_is_chosen_at_the_same_place_on_a_large_picture():
    # 4× larger: measured on a reduced copy, the crop still covers the streaks.
    large = _streaks().resize((4800, 3600), Image.Resampling.NEAREST)
    left, top, side = rain_crop_box(large)
    assert side == CROP
    assert 760 * 4 - side <= left <= 1016 * 4 and 520 * 4 - side <= top <= 776 * 4


def test_keys_label_and_export_makes_a_sheet_tag_applies(dataset, tmp_path, browser_tooling):
    sync_playwright, executable = browser_tooling
    written = write_label_page(dataset, tmp_path / "labels.html")
    out = written.out
    keys = _card_keys(out.read_text(encoding="utf-8"))
    sheet = tmp_path / "exported.csv"
    errors, outside, dialogs = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            page.on("pageerror", lambda error: errors.append(f"pageerror: {error}"))
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            # Only the page itself, its data: pictures and the export's blob: are loaded;
            # a hostile name rendered as markup would fetch file:///…/x.
            page.on(
                "request",
                lambda request: (
                    outside.append(request.url)
                    if request.url != out.as_uri()
                    and not request.url.startswith(("data:", "blob:"))
                    else None
                ),
            )
            page.goto(out.as_uri(), wait_until="load")
            # 1 drizzle → card 2; 5 clean → card 3; j → card 4; 3 storm → card 5; k k → card
            # 3; 4 streak → card 4; 0 clears card 4's storm.
            for key in ["1", "5", "j", "3", "k", "k", "4", "0"]:
                page.keyboard.press(key)
            shown = page.evaluate(
                """() => [...document.querySelectorAll('.card')].map(card => [
                    card.dataset.key, card.classList.contains('labelled'),
                    card.querySelector('.label').textContent])"""
            )
            with page.expect_download() as download:
                page.click("#export")
            download.value.save_as(sheet)
            suggested = download.value.suggested_filename
            page.reload(wait_until="load")
            kept = page.evaluate("document.querySelectorAll('.card.labelled').length")
        finally:
            browser.close()

    assert errors == [] and outside == [] and dialogs == []
    assert shown == [
        [keys[0], True, "label: drizzle"],
        [keys[1], True, "label: clean"],
        [keys[2], True, "label: streak"],
        *([key, False, "not labelled"] for key in keys[3:]),
    ]
    assert suggested == written.sheet == "labels-ds.csv"  # as `rainbench label` prints it
    assert kept == 3  # kept in the browser across a reload

    labels, problems = read_label_sheet(sheet)
    assert problems == []
    match = match_labels(labels, pq.read_table(dataset / "manifests" / "samples.parquet"))
    assert match.problems == []
    summary = tag_dataset(dataset, sheet)
    assert summary.labelled == 3
    samples = _samples(dataset)
    assert (samples.loc[keys[:3], "rain_type_source"] == "manual").all()
    assert samples.loc[keys[0], "rain_type"] == "drizzle"
    assert pd.isna(samples.loc[keys[1], "rain_type"])
    assert samples.loc[keys[2], "rain_type"] == "streak"
    assert (samples.loc[keys[3:], "rain_type_source"] == "auto").all()


def test_applied_labels_start_labelled_and_export_with_their_notes(
    dataset, tmp_path, browser_tooling
):
    sync_playwright, executable = browser_tooling
    keys = _card_keys(write_label_page(dataset, tmp_path / "a.html").out.read_text())
    sheet = tmp_path / "sheet.csv"
    # A note's line break as a spreadsheet saves it (\r\n) comes back as it was.
    rows = f'{keys[0]},storm,"lamp, ""glare""\r\nleft"\n{keys[1]},clean,\n{keys[2]},streak,=1+1\n'
    sheet.write_text(f"key,rain_type,note\n{rows}")
    tag_dataset(dataset, sheet)
    out = write_label_page(dataset, tmp_path / "b.html").out
    exported = tmp_path / "exported.csv"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(out.as_uri(), wait_until="load")
            done = page.text_content("#done")
            shown = page.evaluate(
                """() => Object.fromEntries([...document.querySelectorAll('.card')].map(card =>
                    [card.dataset.key, card.querySelector('.label').textContent]))"""
            )
            with page.expect_download() as download:
                page.click("#export")
            download.value.save_as(exported)
            # Cleared in the page, an applied label stays cleared after a reload.
            page.evaluate(f"document.querySelector('[data-key=\"{keys[0]}\"]').click()")
            page.keyboard.press("0")
            page.reload(wait_until="load")
            after = page.text_content("#done")
        finally:
            browser.close()
    assert done == "3" and after == "2"
    assert shown[keys[0]] == "label: storm" and shown[keys[1]] == "label: clean"
    assert f"{keys[2]},streak,'=1+1" in exported.read_text()  # a spreadsheet shows it
    labels, problems = read_label_sheet(exported)
    assert problems == []
    assert {label.value: (label.rain_type, label.note) for label in labels} == {
        keys[0]: ("storm", 'lamp, "glare"\r\nleft'),
        keys[1]: ("clean", None),
        keys[2]: ("streak", "=1+1"),
    }


def test_an_exported_label_gives_way_to_a_later_sheet_and_a_pending_one_stays(
    dataset, tmp_path, browser_tooling
):
    sync_playwright, executable = browser_tooling
    out = tmp_path / "labels.html"
    keys = _card_keys(write_label_page(dataset, out).out.read_text())
    first, fix, second = tmp_path / "first.csv", tmp_path / "fix.csv", tmp_path / "second.csv"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(out.as_uri(), wait_until="load")
            page.keyboard.press("3")  # the first capture storm, the second drizzle
            page.keyboard.press("1")
            with page.expect_download() as download:
                page.click("#export")
            download.value.save_as(first)
            tag_dataset(dataset, first)
            # Still on the page written before: the second changed to streak, not exported.
            page.click(f'[data-key="{keys[1]}"]')
            page.keyboard.press("4")
            # A later sheet (a colleague's) corrects the first.
            fix.write_text(f"key,rain_type,note\n{keys[0]},streak,corrected\n")
            tag_dataset(dataset, fix)
            write_label_page(dataset, out)
            page.goto(out.as_uri(), wait_until="load")
            shown = [page.text_content(f'[data-key="{key}"] .label') for key in keys[:2]]
            with page.expect_download() as download:
                page.click("#export")
            download.value.save_as(second)
        finally:
            browser.close()
    assert shown == ["label: streak", "label: streak"]
    rows = second.read_text().splitlines()
    assert rows[0] == "key,rain_type,note"
    assert sorted(rows[1:]) == sorted([f"{keys[0]},streak,corrected", f"{keys[1]},streak,"])


def test_two_pages_of_one_dataset_open_at_once_keep_each_others_labels(
    dataset, tmp_path, browser_tooling
):
    sync_playwright, executable = browser_tooling
    # All keep their labels under the dataset's name: a page of the two captures least
    # sure of, and the whole dataset's page open twice (as in two tabs).
    few = write_label_page(dataset, tmp_path / "few.html", limit=2).out
    out = write_label_page(dataset, tmp_path / "all.html").out
    keys = _card_keys(out.read_text())

    def sees(page, key: str, label: str) -> None:
        # A label stored in one tab reaches the others a moment later, as a person's
        # next key press would find it.
        page.wait_for_function(
            "([key, label]) => JSON.parse(localStorage.getItem('rainbench-labels:ds'))[key]"
            " === label",
            arg=[key, label],
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            pages = [context.new_page() for _ in range(3)]
            for page, uri in zip(pages, (few.as_uri(), out.as_uri(), out.as_uri()), strict=True):
                page.goto(uri, wait_until="load")
            pages[0].keyboard.press("1")
            sees(pages[1], keys[0], "drizzle")
            for key in ["j", "j", "3"]:
                pages[1].keyboard.press(key)
            sees(pages[2], keys[2], "storm")
            for key in ["j", "j", "j", "4"]:
                pages[2].keyboard.press(key)
            sees(pages[1], keys[3], "streak")
            pages[1].reload(wait_until="load")
            shown = pages[1].evaluate(
                """() => [...document.querySelectorAll('.card')].map(card =>
                    card.querySelector('.label').textContent)"""
            )
        finally:
            browser.close()
    assert shown[:4] == ["label: drizzle", "not labelled", "label: storm", "label: streak"]
