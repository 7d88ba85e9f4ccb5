"""SEARCH/REPLACE edits: parse a model's reply strictly, apply it, validate the result.

The contract (aider's and OpenEvolve's format):

    train.py
    <<<<<<< SEARCH
    exact old lines
    =======
    new lines
    >>>>>>> REPLACE

several blocks per reply, the description of the change in the text before the first block.
Strict means: marker lines are exact, the path line must name a file of the task, and the
SEARCH lines must occur exactly once, byte for byte (only line endings are normalised), so an
edit never lands somewhere the model did not mean. Tolerated, because models do it all the
time and it carries no ambiguity: a ``` fence around a block, and a path written as `train.py`
or **train.py**.

Every failure is an `EditError` whose message is written for the model: it is sent back once
to ask for a corrected reply, and then journaled as the reason the proposal was rejected.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
_FENCE = re.compile(r"^\s*```[\w+-]*\s*$")
MAX_DESCRIPTION = 300


class EditError(ValueError):
    """The reply cannot be turned into a valid candidate; the message tells the model why."""


@dataclass(frozen=True)
class Block:
    path: str
    search: str
    replace: str


def _clean_path(line: str) -> str:
    path = line.strip().strip("`*").strip()
    return path[2:] if path.startswith("./") else path


def parse(reply: str) -> tuple[str, list[Block]]:
    """The description (text before the first block) and the blocks, in order."""
    lines = reply.replace("\r\n", "\n").split("\n")
    blocks: list[Block] = []
    first_block_line: int | None = None
    blocks_end = -1  # last line of the previous block: a path line must come after it
    i = 0
    while i < len(lines):
        if lines[i].strip() in (DIVIDER, REPLACE):
            raise EditError(
                f"line {i + 1}: {lines[i].strip()!r} outside a block — each block starts with "
                f"the file's path and {SEARCH!r}"
            )
        if lines[i].strip() != SEARCH:
            i += 1
            continue
        # The path is the nearest non-empty line above the marker that is not a fence.
        j = i - 1
        while j >= 0 and (not lines[j].strip() or _FENCE.match(lines[j])):
            j -= 1
        if j <= blocks_end:
            raise EditError(f"line {i + 1}: {SEARCH!r} without a file path on the line above it")
        path = _clean_path(lines[j])
        if first_block_line is None:
            first_block_line = j
        try:
            mid = next(k for k in range(i + 1, len(lines)) if lines[k].strip() in (DIVIDER, SEARCH, REPLACE))
        except StopIteration:
            raise EditError(f"block for {path} at line {i + 1} has no {DIVIDER!r} line") from None
        if lines[mid].strip() != DIVIDER:
            raise EditError(f"block for {path} at line {i + 1}: expected {DIVIDER!r} before {lines[mid].strip()!r}")
        try:
            end = next(k for k in range(mid + 1, len(lines)) if lines[k].strip() in (DIVIDER, SEARCH, REPLACE))
        except StopIteration:
            raise EditError(f"block for {path} at line {i + 1} has no {REPLACE!r} line") from None
        if lines[end].strip() != REPLACE:
            raise EditError(f"block for {path} at line {i + 1}: expected {REPLACE!r} before {lines[end].strip()!r}")
        blocks.append(Block(path, "\n".join(lines[i + 1 : mid]), "\n".join(lines[mid + 1 : end])))
        blocks_end = end
        i = end + 1
    if not blocks:
        raise EditError(f"the reply holds no {SEARCH} / {REPLACE} block — reply with at least one")
    head = [ln for ln in lines[:first_block_line] if not _FENCE.match(ln)]
    return describe("\n".join(head)), blocks


def describe(text: str) -> str:
    """The first paragraph of the prose, on one line, bounded (it becomes a commit subject)."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    first = " ".join(paragraphs[0].split()) if paragraphs else ""
    first = first.lstrip("#*- ").strip()
    return first[:MAX_DESCRIPTION] or "llm edit"


def _apply_one(text: str, block: Block) -> str:
    """`block` applied to `text`; a file with CRLF line endings is matched and edited as if it
    had LF ones (a model's reply has those) and keeps CRLF."""
    if "\r\n" in text:
        lf = Block(block.path, block.search.replace("\r\n", "\n"), block.replace.replace("\r\n", "\n"))
        return _apply_one(text.replace("\r\n", "\n"), lf).replace("\n", "\r\n")
    lines = text.split("\n")
    search = block.search.split("\n")
    if not block.search.strip():
        raise EditError(
            f"{block.path}: an empty SEARCH section matches nowhere in particular — copy the "
            "exact lines you want to change"
        )
    n = len(search)
    hits = [k for k in range(len(lines) - n + 1) if lines[k : k + n] == search]
    if not hits:
        squash = lambda chunk: [" ".join(ln.split()) for ln in chunk]  # noqa: E731
        near = [k for k in range(len(lines) - n + 1) if squash(lines[k : k + n]) == squash(search)]
        hint = " (it matches if whitespace is ignored: copy the lines exactly, indentation included)" if near else ""
        raise EditError(
            f"{block.path}: the SEARCH lines do not occur in the file{hint} — "
            f"copy them exactly from the current file; first line: {search[0].strip()[:80]!r}"
        )
    if len(hits) > 1:
        raise EditError(
            f"{block.path}: the SEARCH lines occur {len(hits)} times — include more "
            "surrounding lines so they match exactly once"
        )
    k = hits[0]
    return "\n".join(lines[:k] + block.replace.split("\n") + lines[k + n :])


def apply(
    blocks: list[Block], files: dict[str, str], editable: tuple[str, ...], protected: tuple[str, ...]
) -> dict[str, str]:
    """New full texts of the files the blocks change; each block sees the previous ones."""
    out: dict[str, str] = {}
    for block in blocks:
        if block.path in protected:
            raise EditError(f"{block.path} is protected and may not be edited — change only {', '.join(editable)}")
        if block.path not in editable:
            raise EditError(f"{block.path!r} is not an editable file — change only {', '.join(editable)}")
        current = out.get(block.path, files[block.path])
        out[block.path] = _apply_one(current, block)
    return validate(files, out, editable, protected)


def validate(
    original: dict[str, str], edits: dict[str, str], editable: tuple[str, ...], protected: tuple[str, ...]
) -> dict[str, str]:
    """Shared by the llm and agent proposers: only editable files, Python that compiles, and a
    real change. Returns the edits that change something. Compiling catches syntax errors only;
    a candidate that fails at run time is the runner's business (it is recorded as crashed)."""
    for path in edits:
        if path in protected or path not in editable:
            raise EditError(f"{path} may not be edited — change only {', '.join(editable)}")
    changed = {p: t for p, t in edits.items() if t != original.get(p)}
    if not changed:
        raise EditError("the edit changes nothing — propose a change to the code")
    for path, text in changed.items():
        if path.endswith(".py"):
            try:
                with warnings.catch_warnings():  # a SyntaxWarning is the run's business, not ours
                    warnings.simplefilter("ignore")
                    compile(text, path, "exec", dont_inherit=True)
            except SyntaxError as exc:
                raise EditError(
                    f"{path} does not compile after the edit (line {exc.lineno}: {exc.msg}) — fix the syntax"
                ) from None
            except ValueError as exc:  # e.g. a NUL byte
                raise EditError(f"{path} does not compile after the edit ({exc}) — fix it") from None
    return changed
