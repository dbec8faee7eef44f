"""The trainer core every method shares: run settings (`config`), the step loop with
exact resume, atomic checkpoints, logs and data parallelism (`loop`), and validation
(`validation`). A method (NLCL, CCLGAN) brings its networks and its step.
"""
