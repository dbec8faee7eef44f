"""Trainers: NLCL (rainbench.train.nlcl) and CCLGAN (rainbench.train.cclgan) on a shared
core (rainbench.train.core); the rain-type tagger's training (tagger).
"""
