"""`rainbench leaderboard` over a results folder from a stranger: names, values and
provenance made to break out of each format (LaTeX commands, HTML script, spreadsheet
formulas) are published as plain text, and a results file that is a link leading out of
the folder is refused in one line, never read."""

import csv
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rainbench.cli import main

FORMATS = ("md", "csv", "latex", "html")
# \input reads a file and \write18 runs a command when a paper's LaTeX is built.
HOSTILE = r"=1+1\input{/etc/passwd}\write18{touch pwned}<script>alert(1)</script>&%$#_^~|"


def _write_run(root: Path, model: str, dataset: str, split: str, name: str = "x") -> None:
    """One finished run of two images, as eval lays it out; `name` is put in every text
    the renderers show that a stranger's files can set."""
    metric = f"psnr_y{name}" if name != "x" else "psnr_y"
    table = pa.table(
        {
            "key": ["a", "b"],
            "kind": ["synthetic"] * 2,
            "rain_type": [name, None],
            "status": ["ok"] * 2,
            "s_per_mp": [0.5, float("inf")],
            metric: [float("inf"), -5.0],
        }
    )
    folder = root / model / dataset
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / f"{split}.parquet")
    provenance = {
        "model": {"name": model, "version": name},
        "kind": "synthetic",
        "metrics": [metric],
        "lower_is_better": {metric: False},
        "metric_protocol_version": name,
        "finished_at": "2026-01-01T00:00:00+00:00",
        "images": {"ok": 2, "failed": 0},
    }
    (folder / f"{split}.json").write_text(json.dumps(provenance))


def _publish(results: Path, fmt: str, out: Path):
    result = CliRunner().invoke(
        main, ["leaderboard", "--results", str(results), "--format", fmt, "--out", str(out)]
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_names_and_values_are_published_as_plain_text(tmp_path, fmt):
    results = tmp_path / "results"
    # "/" cannot be in a folder's name: the model, dataset and split take the rest.
    folder_name = HOSTILE.replace("/", "∕")
    _write_run(results, folder_name, folder_name, "test" + folder_name, HOSTILE)
    out = tmp_path / f"leaderboard.{fmt}"

    result = _publish(results, fmt, out)

    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([out.name, "results"])
    if fmt == "latex":
        assert not re.search(r"(?<!\\textbackslash\{\})\\(input|write18)", text)
        assert "\\textbackslash{}input\\{" in text
    if fmt == "html":
        assert "<script>alert" not in text and "&lt;script&gt;alert" in text
    if fmt == "csv":
        cells = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
        assert not [cell for cell in cells if cell.startswith("=")]
        assert "'" + HOSTILE in cells


def _link_json(folder: Path, outside: Path) -> Path:
    (folder / "test.json").rename(outside / "test.json")
    (folder / "test.json").symlink_to(outside / "test.json")
    return folder / "test.json"


def _link_parquet(folder: Path, outside: Path) -> Path:
    (folder / "test.parquet").rename(outside / "test.parquet")
    (folder / "test.parquet").symlink_to(outside / "test.parquet")
    return folder / "test.parquet"


def _link_model(folder: Path, outside: Path) -> Path:
    model = folder.parent
    model.rename(outside / "model")
    model.symlink_to(outside / "model")
    return model / "ds" / "test.parquet"


LINKS = {"json": _link_json, "parquet": _link_parquet, "model-folder": _link_model}


@pytest.mark.parametrize("link", sorted(LINKS))
def test_a_results_file_that_leads_outside_is_refused_unread(tmp_path, link):
    results, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    _write_run(results, "model", "ds", "test")
    shown = LINKS[link](results / "model" / "ds", outside)

    result = _publish(results, "md", tmp_path / "leaderboard.md")

    assert result.exit_code == 1
    assert result.stderr == f"error: {shown} leads outside {results}; refused\n"
    assert not (tmp_path / "leaderboard.md").exists()
