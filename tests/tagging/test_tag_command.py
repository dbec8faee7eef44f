"""`rainbench tag`'s output lines (rainbench.cli.dataset.format_tagging)."""

from rainbench.cli.dataset import format_tagging
from rainbench.ingest.tag import TagSummary


def test_names_from_the_user_or_the_dataset_stay_on_one_line_each():
    """A sheet's file name, or a version in a hand-edited dataset.json or fitted tagger,
    holding a line break must not print a line of its own that reads as another message."""
    forged = "x\nerror: forged"
    summary = TagSummary(samples=1, empty_sheet=f"{forged}.csv", replaced=forged, tagger=forged)

    lines = format_tagging(summary, "ds")

    assert all("\n" not in line for line in lines)
    assert any(line.startswith("warning: x\\nerror: forged.csv has no label") for line in lines)
    assert any("in place of x\\nerror: forged (this" in line for line in lines)
    assert lines[-1].endswith("; tagger x\\nerror: forged")
