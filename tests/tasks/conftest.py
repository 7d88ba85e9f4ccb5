"""The shrunken nanogpt task (overnight.testing.nanogpt), built once per test module: its corpus,
its folder, its cache, and its prepare.py imported here with that cache built."""

from __future__ import annotations

from pathlib import Path

import pytest

from overnight.tasks import write_task
from overnight.testing.nanogpt import corpus_text, prepared, shrink


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("nanogpt-cache")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(corpus_text())
    return path


@pytest.fixture(scope="module")
def task(tmp_path_factory, corpus) -> Path:
    dest = tmp_path_factory.mktemp("task")
    write_task("nanogpt", dest, "cpu", f"text:{corpus}")
    shrink(dest)
    return dest


@pytest.fixture(scope="module")
def prep(task, cache):
    """The task's prepare.py imported in this process, its cache in the module's temp folder."""
    yield from prepared(task, cache)
