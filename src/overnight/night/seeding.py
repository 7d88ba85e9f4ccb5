"""The seeds of a night's runs: unpredictable before the night, shared by a pair within it.

Were a night's seeds 0, 1, 2, ..., a candidate could be chosen offline for favourable noise on
them (issue 31: a do-nothing constant picked from 300,000 values for seeds 0-7 was kept). So
each night draws a secret, journals it with the tag's configuration (a resumed night goes on
with it) and derives the i-th replicate's seed from it; a run sees only its own seed
(OVERNIGHT_SEED). Runs of two experiments under the same replicate share the seed, as pairs
must. `verify` and `ablate` draw a secret of their own for their fresh seeds, every time.

A night journaled before this had no secret: its seeds stay `search seed + i`, as it ran.
"""

from __future__ import annotations

import hashlib
import secrets

SECRET_KEY = "seed_secret"  # its key in the tag's journaled configuration


def new_secret() -> str:
    return secrets.token_hex(16)


def seed(secret: str | None, replicate: int, offset: int = 0) -> int:
    """The seed of replicate `replicate` (0, 1, ...): 31 bits from the secret, or `offset +
    replicate` for a night without one."""
    if not secret:
        return offset + replicate
    digest = hashlib.sha256(f"{secret}:{replicate}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
