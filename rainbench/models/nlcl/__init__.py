"""NLCL's background generator as the `nlcl` derainer: the architecture (`generator`),
checkpoint files (`checkpoint`) and the published release's import (`published`).
Training it is `rainbench.train.nlcl`, which builds on these.
"""

from rainbench.models.nlcl.derainer import NLCLDerainer

__all__ = ["NLCLDerainer"]
