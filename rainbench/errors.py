"""The one root of rainbench's expected failures. Every stage's error (a dataset's,
a metric's, a derainer's, a checkpoint's, the tagger's calibration's) derives from
`RainbenchError`, so a caller, the CLI above all, catches them all in one clause.
"""


class RainbenchError(Exception):
    """A problem the user should fix; the message is one line saying what to do."""


def first_line(error: BaseException) -> str:
    """What an error says, in one line: an OS error's own words, else the first line of
    its message, else its type's name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
