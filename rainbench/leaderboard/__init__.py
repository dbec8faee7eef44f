"""The leaderboard: `rainbench eval` scores a derainer on a dataset's splits (eval.py,
sources.py), and `rainbench leaderboard` publishes the results (publish.py) in steps that
only look down: results.py loads them, ranking.py ranks each split (with bootstrap.py's
intervals), cells.py builds the cells every format shows, and markdown.py, csv.py,
latex.py and html.py (charts.py, page.html, page.css) render them.
"""
