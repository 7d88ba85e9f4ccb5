"""One base exception. The CLI prints `error: <message>` and exits; no traceback for user mistakes.

Messages follow the shape "<what is wrong> — <what to do>" so a user at 3 a.m. knows the next step.
"""


class OvernightError(Exception):
    """A problem the user can fix (bad config, bad input, missing file). Printed as one line."""


class TaskSpecError(OvernightError):
    """overnight.toml is missing, malformed, or has a wrong field."""


class GitError(OvernightError):
    """A git command failed in a way the harness cannot recover from."""
