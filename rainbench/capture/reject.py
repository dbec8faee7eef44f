"""Why a capture is refused. Every refusal carries one of these codes into
`manifests/rejects.parquet` together with a one-line human message.
"""

import re
from enum import StrEnum


class Reason(StrEnum):
    EMPTY = "empty"
    NOT_AN_IMAGE = "not-an-image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    TOO_MANY_PIXELS = "too-many-pixels"
    CORRUPT_EXIF = "corrupt-exif"
    # Metadata that may hold a location in a form GPS removal cannot clean with certainty.
    GPS_UNCERTAIN = "gps-uncertain"
    UNSUPPORTED = "unsupported-format"
    UNREADABLE = "unreadable"
    NOT_A_FILE = "not-a-file"  # a FIFO, socket, device or directory: never opened
    LINK_OUTSIDE = "link-outside"  # a symlink leading out of the ingest root
    DUPLICATE = "duplicate"
    CHANGED = "changed-during-ingest"


# Refusals that depend only on the file's bytes (too-many-pixels on the cap too, so
# ingest reads such a file again under a higher one): the same file is refused again, so
# a re-run skips it while its size and mtime are unchanged. The others are retried.
STICKY = frozenset(
    {
        Reason.EMPTY,
        Reason.NOT_AN_IMAGE,
        Reason.TRUNCATED,
        Reason.CORRUPT,
        Reason.TOO_MANY_PIXELS,
        Reason.CORRUPT_EXIF,
        Reason.GPS_UNCERTAIN,
        Reason.DUPLICATE,
    }
)


class CaptureRejected(Exception):
    """A capture that cannot be accepted; `reason` is a `Reason`, the message says why."""

    def __init__(self, reason: Reason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


def missing_library(what: str, library: str, extra: str) -> CaptureRejected:
    """`what` refused because the optional `library` is not installed: no fault of the
    file (UNSUPPORTED is retried by the next ingest), and the message names the extra to
    install, which `for_want_of_library` knows again in the rejects' messages."""
    return CaptureRejected(
        Reason.UNSUPPORTED, f"{what} needs {library}: pip install 'rainbench[{extra}]'"
    )


_MISSING_LIBRARY = re.compile(r" needs [^:]+: pip install 'rainbench\[\w+\]'$")


def for_want_of_library(message: str | None) -> bool:
    """Whether a refusal's message is one of `missing_library`'s."""
    return message is not None and _MISSING_LIBRARY.search(message) is not None
