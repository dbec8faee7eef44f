"""Trainers: NLCL (rainbench.train.nlcl)."""
