"""Model text made safe for a terminal and a commit subject.

A model's description is the model's to write: escape sequences in it (an OSC that sets the
terminal's title, a clear screen, U+202E that reverses what follows) would act on the user's
terminal in `run`, `show` and `status`, and land in commit subjects. What is printed or
committed goes through `printable`; the journal keeps the text as it came.
"""

from __future__ import annotations

import re

# C0 and C1 controls but tab and newline, DEL, and the bidirectional overrides and isolates.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str, one_line: bool = False) -> str:
    """`text` with every control character shown as '?' (newlines too when `one_line`)."""
    text = _CONTROL.sub("?", text)
    return " ".join(text.split()) if one_line else text
