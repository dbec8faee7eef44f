"""rainbench: a toolkit and benchmark for real rain imagery.

Captures flow capture → tagging → shards → data → synth → models → metrics →
leaderboard; each stage is one subpackage and imports only from the stages before it
(docs/architecture.md draws the layers, rainbench/architecture.py keeps their order).
"""

__version__ = "0.1.0"
