"""SEARCH/REPLACE parsing and validation: the strict contract and each way a reply can be wrong."""

from __future__ import annotations

import pytest

from overnight.proposers.edits import EditError, apply, describe, parse

FILES = {"train.py": "import os\n\nLR = 0.1  # rate\nWD = 0.0\n\ndef f():\n    return LR\n"}
EDITABLE, PROTECTED = ("train.py",), ("evaluate.py", "overnight.toml")


def block(old: str, new: str, path: str = "train.py") -> str:
    return f"{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def run(reply: str) -> dict[str, str]:
    _, blocks = parse(reply)
    return apply(blocks, FILES, EDITABLE, PROTECTED)


def test_description_and_several_blocks_in_order():
    reply = (
        "Lower the rate and add decay.\n\nSecond paragraph is not the description.\n\n"
        + block("LR = 0.1  # rate", "LR = 0.05  # rate")
        + "\n"
        + block("WD = 0.0", "WD = 0.1")
    )
    desc, blocks = parse(reply)
    assert desc == "Lower the rate and add decay."
    assert [b.search for b in blocks] == ["LR = 0.1  # rate", "WD = 0.0"]
    assert run(reply)["train.py"] == FILES["train.py"].replace("0.1  #", "0.05  #").replace("WD = 0.0", "WD = 0.1")


def test_blocks_see_earlier_blocks_and_fences_and_decorated_paths_are_tolerated():
    reply = (
        "Two steps.\n```python\n"
        + block("LR = 0.1  # rate", "LR = 0.2  # rate")
        + "```\n"
        + "**train.py**\n```\n<<<<<<< SEARCH\nLR = 0.2  # rate\n=======\nLR = 0.3  # rate\n>>>>>>> REPLACE\n```\n"
    )
    assert "LR = 0.3  # rate" in run(reply)["train.py"]


def test_multiline_replace_keeps_indentation():
    out = run(block("def f():\n    return LR", "def f():\n    x = LR * 2\n    return x"))
    assert "    x = LR * 2\n    return x\n" in out["train.py"]


def test_describe_fallback_and_cap():
    assert describe("") == "llm edit"
    assert describe("## **Idea**: use   gelu\nmore") == "Idea**: use gelu more"
    assert len(describe("x" * 1000)) == 300


@pytest.mark.parametrize(
    "reply, message",
    [
        ("I think we should lower the rate.", "no <<<<<<< SEARCH"),
        ("<<<<<<< SEARCH\nLR = 0.1\n=======\nLR = 0.2\n>>>>>>> REPLACE\n", "without a file path"),
        ("x\ntrain.py\n<<<<<<< SEARCH\nLR = 0.1  # rate\n", "no '======='"),
        ("train.py\n<<<<<<< SEARCH\nLR = 0.1  # rate\n=======\nLR = 0.2\n", "no '>>>>>>> REPLACE'"),
        ("train.py\n<<<<<<< SEARCH\nLR = 0.1  # rate\n>>>>>>> REPLACE\n", "expected '======='"),
        ("train.py\n<<<<<<< SEARCH\na\n=======\nb\n=======\nc\n>>>>>>> REPLACE\n", "expected '>>>>>>> REPLACE'"),
        ("=======\n", "outside a block"),
    ],
)
def test_malformed_blocks(reply, message):
    with pytest.raises(EditError, match=message):
        parse(reply)


@pytest.mark.parametrize(
    "reply, message",
    [
        (block("LR = 0.5  # rate", "LR = 0.2"), "do not occur"),
        (block("LR = 0.1 # rate", "LR = 0.2"), "whitespace is ignored"),
        (block("", "LR = 0.2"), "empty SEARCH"),
        (block("LR = 0.1  # rate", "LR = 0.1  # rate"), "changes nothing"),
        (block("import os", "import sys", path="evaluate.py"), "protected"),
        (block("a", "b", path="notes.txt"), "not an editable file"),
        (block("def f():\n    return LR", "def f(:\n    return LR"), r"does not compile .*line 6"),
    ],
)
def test_edits_that_do_not_apply_or_validate(reply, message):
    with pytest.raises(EditError, match=message):
        run(reply)


def test_ambiguous_search():
    files = {"train.py": "x = 1\ny = 2\nx = 1\n"}
    _, blocks = parse(block("x = 1", "x = 3"))
    with pytest.raises(EditError, match="occur 2 times"):
        apply(blocks, files, EDITABLE, PROTECTED)
