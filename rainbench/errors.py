"""The one root of rainbench's expected failures. Every stage's error (a dataset's,
a metric's, a derainer's, a checkpoint's, the tagger's calibration's) derives from
`RainbenchError`, so a caller, the CLI above all, catches them all in one clause.
"""


class RainbenchError(Exception):
    """A problem the user should fix; the message is one line saying what to do."""
