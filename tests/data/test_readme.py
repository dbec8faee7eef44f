"""The README's training loop runs as printed, on a small dataset of its own."""

import re
from pathlib import Path

from rainbench.demo.captures import sample_specs, write_capture
from rainbench.ingest import IngestOptions, ingest
from rainbench.ingest.tag import tag_dataset

README = Path(__file__).resolve().parents[2] / "README.md"


def _training_loop() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- training-loop:.*?-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert match, "the README lost its training-loop block"
    return match.group(1)


def test_the_readme_training_loop_runs(tmp_path, monkeypatch):
    for spec in sample_specs(6, seed=5, size=(320, 240)):
        write_capture(tmp_path / "raw", spec)
    ingest([tmp_path / "raw"], tmp_path / "ds", IngestOptions(workers=1, split={"train": 1.0}))
    names = sorted(
        p.relative_to(tmp_path / "raw").as_posix() for p in (tmp_path / "raw").rglob("*.*")
    )
    sheet = tmp_path / "labels.csv"
    # Four streak and storm labels; the others labelled drizzle, so what the tagger makes
    # of them never decides how many captures the filter keeps.
    rows = [f"{name},{'streak' if i % 2 else 'storm'}" for i, name in enumerate(names[:4])]
    rows += [f"{name},drizzle" for name in names[4:]]
    sheet.write_text("source_path,rain_type\n" + "\n".join(rows) + "\n")
    tag_dataset(tmp_path / "ds", labels=sheet)
    monkeypatch.chdir(tmp_path)
    scope: dict = {"__name__": "__main__"}  # run as a script is
    exec(compile(_training_loop(), "README.md", "exec"), scope)
    assert scope["loader"].state_dict()["consumed"] == {}  # the last epoch ran to its end
    assert len(scope["data"]) == 4 * 8
