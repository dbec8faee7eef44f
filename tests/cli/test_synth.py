"""`rainbench synth --preview`'s --out: only a format the sheet is written in with the
mark that lets a later preview replace it."""

import pytest
from click.testing import CliRunner
from PIL import Image

from rainbench.cli import main


@pytest.mark.parametrize("suffix", ["psd", "xpm", "grib", "gif", "bmp", "pdf"])
def test_a_sheet_format_that_cannot_hold_its_mark_is_refused_in_one_line(tmp_path, suffix):
    # Pillow reads these but writes them not at all (psd: a KeyError traceback), only
    # with a plugin (grib), or without EXIF (gif: a second preview refused its own sheet).
    photo = tmp_path / "photo.png"
    Image.new("RGB", (17, 9), (120, 130, 140)).save(photo)
    sheet = tmp_path / f"sheet.{suffix}"
    result = CliRunner().invoke(main, ["synth", "--preview", str(photo), "--out", str(sheet)])
    assert result.exit_code == 2, result.output
    assert f"sheet.{suffix}: name the sheet's image file: .png, .jpg, .webp or .tif" in (
        result.output
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not sheet.exists()


@pytest.mark.parametrize("suffix", ["png", "JPEG", "webp", "tiff"])
def test_a_sheet_in_each_format_it_is_written_in_is_replaced_by_the_next(tmp_path, suffix):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (17, 9), (120, 130, 140)).save(photo)
    sheet = tmp_path / f"sheet.{suffix}"
    for seed in ("0", "1"):
        args = ["synth", "--preview", str(photo), "--out", str(sheet), "--seed", seed]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
