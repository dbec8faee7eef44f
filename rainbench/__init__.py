"""rainbench: a toolkit and benchmark for real rain imagery.

Captures flow capture → tagging → shards → data → synth → models → metrics →
leaderboard; each stage is one subpackage.
"""

__version__ = "0.1.0"
