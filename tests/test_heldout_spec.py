"""overnight.toml's additions for the validation data: [heldout], task.watch, limits.sandbox_writable."""

from __future__ import annotations

import pytest
from test_task import VALID, write

from overnight.errors import TaskSpecError
from overnight.task import DEFAULT_HELDOUT_GAP, DEFAULT_HELDOUT_SHARE, load_task


def test_heldout_and_watch_are_read(tmp_path):
    toml = VALID.replace("budget = 300\n", 'budget = 300\nwatch = ["/data/labels.csv"]\n') + (
        '\n[heldout]\ncommand = "python -m overnight.heldout"\n'
        '\n[limits]\nsandbox = true\nsandbox_writable = ["~/.cache/x"]\n'
    )
    spec = load_task(write(tmp_path, toml))
    assert spec.heldout.command == "python -m overnight.heldout"
    assert (spec.heldout.max_gap, spec.heldout.min_share) == (DEFAULT_HELDOUT_GAP, DEFAULT_HELDOUT_SHARE)
    assert spec.watch == ("/data/labels.csv",) and spec.limits.sandbox_writable == ("~/.cache/x",)
    (tmp_path / "plain").mkdir()
    assert load_task(write(tmp_path / "plain", VALID)).heldout is None


@pytest.mark.parametrize(
    "extra, needle",
    [
        ("\n[heldout]\nmax_gap = 0.1\n", "missing field heldout.command"),
        ('\n[heldout]\ncommand = "x"\nmax_gap = -1\n', "heldout.max_gap must be a finite number at least 0"),
        ('\n[heldout]\ncommand = "x"\nmin_share = 2\n', "heldout.min_share must be a number from 0 to 1"),
        ('\n[heldout]\ncommand = "x"\nshare = 1\n', "unknown field heldout.share — did you mean 'min_share'?"),
        ('\n[limits]\nsandbox_writable = "/tmp"\n', "limits.sandbox_writable must be a list of directories"),
    ],
)
def test_bad_heldout_fields_are_one_clear_error(tmp_path, extra, needle):
    with pytest.raises(TaskSpecError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_task(write(tmp_path, VALID + extra))


def test_bad_watch(tmp_path):
    with pytest.raises(TaskSpecError, match="task.watch must be a list of file paths"):
        load_task(write(tmp_path, VALID.replace("budget = 300\n", 'budget = 300\nwatch = "x"\n')))
