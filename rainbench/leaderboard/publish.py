"""Publishing the leaderboard: the results directory rendered in one of the formats, to
text or to a file. Each step is its own module: loading (results.py), ranking
(ranking.py), the cells every format shows (cells.py), and a renderer per format.
"""

from collections.abc import Sequence
from pathlib import Path

from rainbench.files import write_atomic
from rainbench.leaderboard.csv import CSV_COLUMNS, render_csv
from rainbench.leaderboard.html import render_html
from rainbench.leaderboard.latex import render_latex
from rainbench.leaderboard.markdown import render_markdown
from rainbench.leaderboard.results import LeaderboardError, load_results

RENDERERS = {
    "md": render_markdown,
    "csv": render_csv,
    "latex": render_latex,
    "html": render_html,
}
FORMATS = tuple(RENDERERS)


def render_leaderboard(results_dir: Path | Sequence[Path], fmt: str) -> str:
    """The leaderboard of `results_dir` (or of several, merged) as text in `fmt` (one of
    FORMATS)."""
    if fmt not in RENDERERS:
        raise LeaderboardError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](load_results(results_dir))


def is_leaderboard(path: Path) -> bool:
    """Whether `path` starts as a leaderboard of one of the FORMATS does (its title, or
    the CSV's header): one that `rainbench leaderboard --out` may replace."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).decode("utf-8", "replace")
    except OSError:
        return False
    starts = (f"# {_TITLE}", f"% {_TITLE}", ",".join(CSV_COLUMNS))
    return head.startswith(starts) or f"<title>{_TITLE}" in head


_TITLE = "rainbench leaderboard"  # how the Markdown, LaTeX and HTML pages start


def write_leaderboard(results_dir: Path | Sequence[Path], fmt: str, out: Path) -> Path:
    """Write the leaderboard of `results_dir` to `out` in `fmt`; returns `out`."""
    out = Path(out)
    # Shared: two leaderboards made at once into one --out hold no lock; each writes a
    # temporary of its own, and the last to finish replaces the other's page whole.
    write_atomic(out, render_leaderboard(results_dir, fmt).encode("utf-8"), shared=True)
    return out
