"""The leaderboard: `rainbench eval` scores a derainer on a dataset's splits
(eval.py, sources.py), and `rainbench leaderboard` publishes the results (publish.py).
"""
