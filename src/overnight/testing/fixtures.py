"""The shared pytest fixtures, registered by tests/conftest.py (`pytest_plugins`): real git
repositories in tmp_path, a CLI runner, an isolated cache, the loopback LLM server.

Nothing here is mocked: task repositories are real git repositories built with the same
plumbing the harness uses, and candidates are real Python programs run as subprocesses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from overnight.testing.fake_llm import REAL_ENDPOINT_VARS, FakeLLM
from overnight.testing.toy import RESULT_HELPER, make_task_repo, quiet_toy, write_toy


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Nothing a test runs may write to ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OVERNIGHT_CACHE", str(tmp_path_factory.mktemp("overnight-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _repeatable_secrets(monkeypatch):
    """The secrets nights and checks draw their seeds from (night/seeding.py) come in the same
    order in every run of a test: seeds no candidate could predict, and outcomes that repeat.
    (A night run by a subprocess of a test still draws its own.)"""
    import hashlib
    import itertools

    from overnight.night import seeding

    count = itertools.count()
    monkeypatch.setattr(seeding, "new_secret", lambda: hashlib.sha256(f"test {next(count)}".encode()).hexdigest()[:32])


@pytest.fixture
def unsandboxed(monkeypatch):
    """Runs under limits.sandbox = "auto" go unsandboxed, as on a machine where none works: for
    the tests of what holds without one (the reaper, the guard, the run-directory checks)."""
    monkeypatch.setenv("OVERNIGHT_SANDBOX", "off")


@pytest.fixture
def task_repo(tmp_path):
    """Factory: task_repo(train, toml=None, files=None) -> a committed task repo."""
    counter = iter(range(1000))

    def factory(
        train: str, toml: str | None = None, files: dict[str, str] | None = None, evaluate: str = RESULT_HELPER
    ) -> Path:
        return make_task_repo(tmp_path / f"task{next(counter)}", train, toml, files, evaluate)

    return factory


@pytest.fixture
def toy_repo(tmp_path) -> Path:
    return write_toy(tmp_path / "toy")


@pytest.fixture
def toy_task(tmp_path):
    """Factory: toy_task(toml_extra=, task_extra=, noise=, timeout=) -> a noise-free toy repo
    (toy.quiet_toy) in a fresh folder."""
    counter = iter(range(100))

    def factory(**kw) -> Path:
        return quiet_toy(tmp_path / f"toy{next(counter)}", **kw)

    return factory


@pytest.fixture
def cli():
    """cli(*args) -> click Result; stdout and stderr are kept apart."""
    from click.testing import CliRunner

    from overnight.cli import main

    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args], catch_exceptions=True)

    return invoke


@pytest.fixture
def no_real_keys(monkeypatch):
    """No test may reach a real API: keys and base URLs from the environment are removed."""
    for name in REAL_ENDPOINT_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake(no_real_keys):
    """The scripted LLM server on loopback (fake_llm.FakeLLM), closed after the test."""
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture(scope="session")
def page_night(tmp_path_factory) -> Path:
    """The llm night of testing/pages.py (kept, rejected, crashed, kept, screened; verified and
    ablated), with its report written: the root of its toy repository. Shared: read it, and
    copy it (shutil.copytree) before writing to its journal."""
    from overnight.testing.pages import llm_night, write_page

    with pytest.MonkeyPatch.context() as mp:
        for name in REAL_ENDPOINT_VARS:
            mp.delenv(name, raising=False)
        server = FakeLLM()
        try:
            root = llm_night(tmp_path_factory.mktemp("page-night") / "toy", server)
        finally:
            server.close()
    write_page(root)
    return root
