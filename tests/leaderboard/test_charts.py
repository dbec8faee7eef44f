"""The page's SVG charts drawn from plain values."""

from rainbench.leaderboard.charts import Series, bar_chart
from rainbench.leaderboard.html import render_html
from rainbench.leaderboard.results import load_results


def test_bars_with_no_value_say_so_rather_than_draw_an_axis_near_zero(tmp_path, write_run):
    # NIQE needs 96 px a side: on a split of smaller images no run has a value. An empty
    # frame with ticks from -0.6 to 0.6 read as scores near 0.
    for model in ("a", "b"):
        write_run(tmp_path, model, "ds", "test", kind="real", metrics={"niqe": [None, None]})
    page = render_html(load_results(tmp_path))
    assert page.count("no model has a finite value to draw") == 1
    svg = bar_chart(("all images",), [Series("a", "#0969da", (None,))], "NIQE ↓", 3)
    assert "no model has a finite value to draw" in svg and "<line" not in svg
