"""Changes that are never worth a run, recognised from the diff alone.

A change that only moves a random seed (`SEED = 42` -> `137`, `torch.manual_seed(42)` ->
`(137)`) re-draws the noise and nothing else: any gain it shows is luck. A statistical judge
keeps such a change with probability alpha (and more when its noise estimate is itself
unlucky), and over a night of many tries one gets through: autoresearch's "seed 42 -> 137".
So it is rejected before it runs, whatever the judge.

What this does NOT catch: a seed moved by code that is not an integer literal on a line that
says "seed" (e.g. `torch.manual_seed(sum([100, 37]))` on a new line, or an environment
variable set by hand); those run, and the noise judge's seed-ignoring and confirmation rules
are what stand in the way.
"""

from __future__ import annotations

import re

_INT = re.compile(r"\d+")


def seed_only_change(old: dict[str, str], new: dict[str, str]) -> str | None:
    """The reason to reject when every changed line of `new` against `old` mentions a seed and
    differs only in its integer literals; else None."""
    changed = []
    for path, text in new.items():
        before = old.get(path)
        if before is None:
            return None
        a, b = before.splitlines(), text.splitlines()
        if len(a) != len(b):
            return None
        for x, y in zip(a, b):
            if x == y:
                continue
            if "seed" not in x.lower() or _INT.sub("#", x) != _INT.sub("#", y):
                return None
            changed.append(f"{path}: {y.strip()}")
    if not changed:
        return None
    return f"moves only a random seed ({'; '.join(changed)}): a re-draw of the noise, not an improvement"
