"""Small statistics for the judges: pooled noise, t quantiles, line counts.

The noise model: every experiment that was run under several seeds is one group of
replicates; the noise standard deviation is pooled over all groups (a weighted mean of the
groups' variances, weights = degrees of freedom), so each confirmation run sharpens it.
"""

from __future__ import annotations

import functools
import io
import math
import re
import tokenize
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


@dataclass(frozen=True)
class Noise:
    sd: float  # pooled standard deviation of one run's metric
    df: int  # degrees of freedom behind it (0: unknown)

    @property
    def known(self) -> bool:
        return self.df > 0 and self.sd > 0


def pooled_sd(groups: list[list[float]]) -> Noise:
    ss, df = 0.0, 0
    for values in groups:
        n = len(values)
        if n < 2:
            continue
        mean = sum(values) / n
        ss += sum((v - mean) ** 2 for v in values)
        df += n - 1
    return Noise(math.sqrt(ss / df) if df else 0.0, df)


def t_quantile(p: float, df: int) -> float:
    return float(_st.t.ppf(p, df)) if df > 0 else math.inf


@functools.lru_cache(maxsize=256)
def sequential_boundary(
    alpha: float, n_incumbent: int, max_runs: int, screen: float, futility: float, draws: int = 100_000
) -> float:
    """The constant z boundary c for looks at 2..max_runs candidate runs such that a change
    that does nothing is kept with probability alpha, given the screen at run 1 and the
    futility stop (a Pocock-type group-sequential boundary, computed by simulation because the
    screen and the futility stop change the null distribution). Deterministic (fixed stream).
    `n_incumbent` 0 is the paired design (PAIRED): each look's statistic is the mean of the
    candidate's paired differences over its se, the incumbent's error inside each pair."""
    rng = np.random.default_rng(12345)
    inc = inverse(n_incumbent)
    e_inc = rng.standard_normal(draws) * math.sqrt(inc)  # error of the incumbent's mean
    runs = np.cumsum(rng.standard_normal((draws, max_runs)), axis=1)  # candidate's noise, summed
    ts = [(runs[:, n - 1] / n + e_inc) / math.sqrt(1 / n + inc) for n in range(1, max_runs + 1)]

    def keep_rate(c: float) -> float:
        return (kept_at(ts, screen, c, futility) > 0).mean()

    lo, hi = 0.0, 6.0
    for _ in range(40):  # bisection: keep_rate falls as c rises (same draws for every c)
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if keep_rate(mid) > alpha else (lo, mid)
    return hi


def kept_at(ts: list[np.ndarray], screen: float, crit: float, futility: float) -> np.ndarray:
    """The judge's sequential design on simulated candidates: `ts[n - 1]` holds each one's t at
    its n-th run. The look (2, 3, ...) at which each is kept, 0 where it is not: screened out
    at run 1 below `screen`, kept at the first look above `crit`, stopped below `futility`.
    The one copy of the rule that the boundary, the selection correction and the power use."""
    alive = ts[0] >= screen
    kept = np.zeros(len(ts[0]), np.int8)
    for n, t in enumerate(ts[1:], start=2):
        hit = alive & (t > crit)
        kept[hit] = n
        alive &= ~hit & (t >= futility)
    return kept


PAIRED = 0  # as n_incumbent: the paired design, where the incumbent's mean does not enter


def inverse(n_incumbent: float) -> float:
    """1 / n_incumbent, the incumbent's share of a difference's variance (0 when paired)."""
    return 0.0 if n_incumbent == PAIRED else 1 / n_incumbent


def z_to_t(z: float, df: int) -> float:
    """The t quantile at the level where the standard normal has quantile z (for estimated sd)."""
    return float(_st.t.ppf(_st.norm.cdf(z), df)) if df > 0 else math.inf


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def paired_interval(a: list[float], b: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """mean(a - b) over runs paired by seed, with a two-sided t confidence interval:
    (diff, low, high). Pairing by seed removes what two configurations share under one seed."""
    d = [x - y for x, y in zip(a, b)]
    diff = mean(d)
    if len(d) < 2:
        return diff, -math.inf, math.inf
    half = t_quantile(0.5 + level / 2, len(d) - 1) * math.sqrt(sample_var(d) / len(d))
    return diff, diff - half, diff + half


def sample_var(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return sum((v - m) ** 2 for v in values) / (len(values) - 1)


def net_added_lines(diff: str | None, files: dict[str, str] | None = None) -> int:
    """Net code-carrying lines the diff adds (negative: removes), summed over its files.

    A line carries code when it is part of a logical Python statement: blank lines, comments,
    docstrings (and other bare string statements) and pure reformatting (a statement rewrapped
    over more or fewer lines, re-indented, re-spaced) count 0. `files` maps a path to its full
    new text (an Experiment's `edits`): the old text is rebuilt by undoing the diff's hunks and
    both are counted in logical lines with `tokenize`. Without the new text, or where it does
    not match the diff or does not tokenize, each hunk's two sides are scanned like source and
    only changed lines that end a statement with code count (see _hunk_count): re-spacing and
    rewrapping cancel, blank, comment and docstring lines count 0."""
    total = 0
    for path, hunks in _diff_files(diff or ""):
        counted = None
        new = (files or {}).get(path) if path is not None and path.endswith(".py") else None
        if new is not None:
            old = _undo_hunks(new, hunks)
            if old is not None:
                a, b = code_lines(old), code_lines(new)
                if a is not None and b is not None:
                    counted = len(b) - len(a)
        total += _hunk_count(hunks) if counted is None else counted
    return total


def code_lines(text: str) -> list[str] | None:
    """The logical statements of Python source, each as its tokens joined by one space; comments,
    blank lines and bare string statements (docstrings) left out. None when it does not tokenize."""
    out: list[str] = []
    line: list[tuple[int, str]] = []
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NEWLINE:
                if line and not all(t == tokenize.STRING for t, _ in line):
                    out.append(" ".join(s for _, s in line))
                line = []
            elif tok.type not in skip:
                line.append((tok.type, tok.string))
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    if line and not all(t == tokenize.STRING for t, _ in line):
        out.append(" ".join(s for _, s in line))
    return out


def _diff_files(diff: str) -> list[tuple[str | None, list[list[str]]]]:
    """A unified (git) diff as [(new path or None, [hunks, each its @@ header and its lines])].
    A hunk ends when its header's line counts are used up, so a removed line that reads
    "--- ..." is not taken for a file header (headers without counts run to the next header)."""
    files: list[tuple[str | None, list[list[str]]]] = []
    path: str | None = None
    left = None  # (old, new) lines the open hunk still holds; None: no hunk open
    for line in diff.splitlines():
        if left is not None and (left[0] > 0 or left[1] > 0 or left == (-1, -1)):
            if line.startswith("\\"):
                files[-1][1][-1].append(line)
                continue
            if left == (-1, -1) and line.startswith(("diff --git ", "--- ", "+++ ", "@@")):
                left = None  # an open-ended hunk stops at the next header
            else:
                files[-1][1][-1].append(line)
                if left != (-1, -1):
                    tag = line[:1]
                    left = (left[0] - (tag in " -"), left[1] - (tag in " +"))
                continue
        if left is not None and line[:1] in (" ", "+", "-") and not line.startswith(("--- ", "+++ ")):
            files[-1][1][-1].append(line)  # past its header's counts (a hand-made diff): still the hunk
            continue
        if line.startswith("diff --git "):
            path, left = None, None
            files.append((None, []))
        elif line.startswith("+++ "):
            name = line[4:].split("\t")[0].strip()
            path = None if name == "/dev/null" else name[2:] if name.startswith("b/") else name
            if not files or files[-1][1]:
                files.append((path, []))
            else:
                files[-1] = (path, files[-1][1])
        elif line.startswith("@@"):
            if not files:
                files.append((path, []))
            m = _HUNK.match(line)
            left = (-1, -1) if m is None else (int(m.group(2) or 1), int(m.group(4) or 1))
            files[-1][1].append([line])
    return [f for f in files if f[1]]


_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _undo_hunks(new: str, hunks: list[list[str]]) -> str | None:
    """The old text, from the new one and the diff's hunks; None if they do not fit together."""
    lines = new.splitlines()
    out: list[str] = []
    pos = 0  # next line of `lines` not yet copied
    for hunk in hunks:
        m = _HUNK.match(hunk[0])
        if m is None:
            return None
        start = int(m.group(3)) - (0 if m.group(4) == "0" else 1)
        if start < pos or start > len(lines):
            return None
        out += lines[pos:start]
        pos = start
        for line in hunk[1:]:
            if line.startswith("\\"):
                continue
            tag, body = line[:1], line[1:]
            if tag in (" ", "+"):
                if pos >= len(lines) or lines[pos] != body:
                    return None
                pos += 1
            if tag in (" ", "-"):
                out.append(body)
            elif tag not in ("+",):
                return None
    out += lines[pos:]
    return "\n".join(out) + "\n"


def _hunk_count(hunks: list[list[str]]) -> int:
    """Added minus removed lines that carry code, read from the hunk lines alone: each side of
    a hunk (context and removed lines; context and added lines) is scanned like source, and a
    changed line counts only where a statement with code ends on it (not blank, not a comment,
    not inside a bracket or a string, not a bare string statement such as a docstring). A hunk
    that starts inside a string or a bracket can still be misread."""
    total = 0
    for hunk in hunks:
        old = [(line[1:], line[:1] == "-") for line in hunk[1:] if line[:1] in (" ", "-", "")]
        new = [(line[1:], line[:1] == "+") for line in hunk[1:] if line[:1] in (" ", "+", "")]
        # A hunk may start inside a triple-quoted string (its first context line closes one):
        # take the first starting state that leaves both sides with no string open at the end.
        counts = [(_statement_ends(new, q), _statement_ends(old, q)) for q in ("", '"""', "'''")]
        clean = [(a, b) for (a, ok_a), (b, ok_b) in counts if ok_a and ok_b]
        a, b = clean[0] if clean else (counts[0][0][0], counts[0][1][0])
        total += a - b
    return total


def _statement_ends(lines: list[tuple[str, bool]], quote: str = "") -> tuple[int, bool]:
    """How many of the marked lines end a statement that carries code (see _hunk_count), and
    whether the scan ends outside any string. `quote`: the string open at the first line."""
    count = depth = 0
    code = False  # the statement so far has something besides strings
    for text, marked in lines:
        i = 0
        while i < len(text):
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 2
                    continue
                if text.startswith(quote, i):
                    i += len(quote)
                    quote = ""
                    continue
            elif ch == "#":
                break
            elif text.startswith(('"""', "'''"), i):
                quote = text[i : i + 3]
                i += 3
                continue
            elif ch in "\"'":
                quote = ch
            elif ch in "([{":
                depth, code = depth + 1, True
            elif ch in ")]}":
                depth, code = max(0, depth - 1), True
            elif not ch.isspace() and ch != "\\":
                code = True
            i += 1
        if quote in ("'", '"'):
            quote = ""  # an unterminated one-line string: the line is broken; drop it
        if quote or depth or text.rstrip().endswith("\\"):
            continue
        if code and marked:
            count += 1
        code = False
    return count, not quote


def ignores_seed(values: list[float], seeds: list[int]) -> bool:
    """Identical values under two or more different seeds: the candidate does not use the seed."""
    return len(set(seeds)) >= 2 and len(values) >= 2 and max(values) == min(values)
