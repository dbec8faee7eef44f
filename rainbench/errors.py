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


def one_line(error: BaseException) -> str:
    """An exception of code not rainbench's (a derainer's, a plug-in's) as one line: its
    type and the first line of its message; its type alone when the message is empty or
    cannot be had (its __str__ raises)."""
    try:
        text = str(error).strip().splitlines()
    except Exception:
        text = []
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
