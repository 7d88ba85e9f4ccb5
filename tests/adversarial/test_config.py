"""Bad configuration and bad command lines (issue 12, items 3 and 10): each is one line
`error: <what> — <what to do>`, exit code 2, before anything is journaled; never a traceback,
never silently ignored."""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

from overnight import gitops
from overnight.errors import TaskSpecError
from overnight.task_load import load_task
from overnight.testing.procs import one_error_line

SPEC = """\
[task]
command = "python train.py"
editable = ["train.py"]
protected = ["evaluate.py"]
budget = 10

[task.env]
TOY = "1"

[metric]
name = "val_loss"
goal = "minimize"

[knobs]
ACT = ["relu", "gelu"]
"""


def spec_dir(tmp_path, text: str | bytes):
    for f in ("train.py", "evaluate.py"):
        (tmp_path / f).write_text("LR = 0.1\n")
    data = text if isinstance(text, bytes) else textwrap.dedent(text).encode()
    (tmp_path / "overnight.toml").write_bytes(data)
    return tmp_path


# (replace this, with that) in SPEC -> the one-line error holds every needle
BAD_SPECS = [
    # item 3: unknown names, with the closest known one
    ("[knobs]", "[limit]\nmemory_mb = 1\n[knobs]", ["[limit]", "'limits'"]),
    ("[knobs]", "[re_score]\ncommand = 'x'\n[knobs]", ["[re_score]", "'task.rescore'"]),
    ("budget = 10", "budget = 10\nre_score = 'python evaluate.py'", ["task.re_score", "'rescore'"]),
    ("budget = 10", "budget = 10\ntimeot = 30", ["task.timeot", "'timeout'"]),
    ('goal = "minimize"', 'goal = "minimize"\ngaol = "maximize"', ["metric.gaol", "'goal'"]),
    ("[task]", "budget = 10\n[task]", ["top-level field budget", "'task.budget'"]),
    (
        "[knobs]",
        "[heldout]\ncommand = 'x'\nmax_gap = 0.1\nmin_shares = 1\n[knobs]",
        ["heldout.min_shares", "'min_share'"],
    ),
    # item 3: every number finite and in range; a bool is not a number
    ("budget = 10", "budget = nan", ["task.budget"]),
    ("budget = 10", "budget = inf", ["task.budget"]),
    ("budget = 10", "budget = 10\ntimeout = true", ["task.timeout"]),
    ("budget = 10", "budget = 10\ntimeout = nan", ["task.timeout"]),
    ("budget = 10", "budget = 10\ntimeout = inf", ["task.timeout"]),
    ("budget = 10", "budget = 10\nrescore_tolerance = nan", ["task.rescore_tolerance"]),
    ("budget = 10", "budget = 10\nrescore_tolerance = true", ["task.rescore_tolerance"]),
    ("[knobs]", "[limits]\nmemory_mb = inf\n[knobs]", ["limits.memory_mb"]),
    ("[knobs]", "[limits]\noverhead = nan\n[knobs]", ["limits.overhead"]),
    ("[knobs]", "[heldout]\ncommand = 'x'\nmax_gap = nan\n[knobs]", ["heldout.max_gap"]),
    ("[knobs]", "[heldout]\ncommand = 'x'\nmin_share = nan\n[knobs]", ["heldout.min_share"]),
    ('ACT = ["relu", "gelu"]', "LR = {low = -inf, high = 1}", ["knobs.LR"]),
    ('ACT = ["relu", "gelu"]', "LR = {low = 0, high = nan}", ["knobs.LR"]),
    ('ACT = ["relu", "gelu"]', "LR = {low = 0, high = 1, logg = true}", ["knobs.LR.logg", "'log'"]),
    # item 10
    ('goal = "minimize"', "pattern = 5", ["metric.pattern"]),
    ('TOY = "1"', '"A=B" = "1"', ["task.env", "A=B"]),
    ('TOY = "1"', '"A\\u0000" = "1"', ["task.env"]),
    ('TOY = "1"', 'TOY = "a\\u0000b"', ["task.env.TOY"]),
    ('ACT = ["relu", "gelu"]', 'ACT = [["relu"], ["gelu"]]', ["knobs.ACT", "choice"]),
    ('ACT = ["relu", "gelu"]', "ACT = [{a = 1}]", ["knobs.ACT", "choice"]),
    # the second adversarial pass: integers past float range were an OverflowError traceback
    ("budget = 10", "budget = 1" + "0" * 400, ["task.budget"]),
    ("[knobs]", "[limits]\nmemory_mb = 1" + "0" * 400 + "\n[knobs]", ["limits.memory_mb"]),
    ('ACT = ["relu", "gelu"]', "LR = {low = 0, high = 1" + "0" * 400 + "}", ["knobs.LR"]),
    ('ACT = ["relu", "gelu"]', 'LR = {low = 1e-3, high = 1, log = "false"}', ["knobs.LR", "log must be true or false"]),
    ("[knobs]", "[heldout]\ncommand = ' '\n[knobs]", ["heldout.command is empty"]),
]


@pytest.mark.parametrize("old,new,needles", BAD_SPECS, ids=[n.replace("\n", " ")[:40] for _, n, _ in BAD_SPECS])
def test_bad_spec_is_one_line(tmp_path, old, new, needles):
    assert old in SPEC, old
    with pytest.raises(TaskSpecError) as info:
        load_task(spec_dir(tmp_path, SPEC.replace(old, new, 1)))
    message = str(info.value)
    assert "\n" not in message and " — " in message, message
    for needle in needles:
        assert needle in message, (needle, message)


def test_not_utf8(tmp_path):
    with pytest.raises(TaskSpecError, match="not UTF-8"):
        load_task(spec_dir(tmp_path, SPEC.replace('"relu"', '"r\xe9lu"').encode("latin-1")))


def test_paths_are_normalised(tmp_path):
    text = SPEC.replace('editable = ["train.py"]', 'editable = ["./train.py", "train.py"]')
    text = text.replace('protected = ["evaluate.py"]', 'protected = ["./evaluate.py"]')
    spec = load_task(spec_dir(tmp_path, text))
    assert spec.editable == ("train.py",)
    assert spec.protected == ("evaluate.py", "overnight.toml")
    # "./train.py" protected while "train.py" is editable is the same file: caught.
    text = SPEC.replace('protected = ["evaluate.py"]', 'protected = ["./train.py"]')
    with pytest.raises(TaskSpecError, match="both editable and protected"):
        load_task(spec_dir(tmp_path, text))


def test_budget_override_nan(tmp_path):
    spec = load_task(spec_dir(tmp_path, SPEC))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(TaskSpecError, match="--budget"):
            spec.with_budget(bad)


# --- the command line ------------------------------------------------------------------------


def nothing_journaled(root):
    db = root / ".overnight" / "journal.db"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            assert con.execute("SELECT count(*) FROM tags").fetchone()[0] == 0
        finally:
            con.close()
    assert not gitops.git(root, "branch", "--list", "overnight/*").strip()


BAD_FLAGS = [
    (["--line-price", "-1"], ["--line-price"]),
    (["--line-price", "nan"], ["--line-price"]),
    (["--hours", "0"], ["--hours"]),
    (["--hours", "-2"], ["--hours"]),
    (["--hours", "nan"], ["--hours"]),
    (["--hours", "inf"], ["--hours"]),
    (["--budget", "nan"], ["--budget"]),
    (["--seed", str(10**20)], ["--seed"]),
    (["--seed", "-1"], ["--seed"]),
    (["--tag", "a.lock"], ["a.lock"]),
    (["--tag", ".."], [".."]),
    (["--tag", "a..b"], ["a..b"]),
    (["--tag", ".hidden"], [".hidden"]),
    (["--agent-timeout", "-1"], ["--agent-timeout"]),
    (["--agent-timeout", "nan", "--proposer", "agent", "--agent-cmd", "true"], ["--agent-timeout"]),
    (["--price-in", "nan"], ["--price-in"]),
    (["--max-tokens", "0"], ["--max-tokens"]),
    (["--remeasure-every", "-1"], ["--remeasure-every"]),
]


@pytest.mark.parametrize("flags,needles", BAD_FLAGS, ids=[" ".join(f) for f, _ in BAD_FLAGS])
def test_bad_flag_is_one_line_and_journals_nothing(cli, toy_repo, flags, needles):
    result = cli("run", toy_repo, "--experiments", "2", "--quiet", "--proposer", "random", *flags)
    one_error_line(result, *needles)
    nothing_journaled(toy_repo)


def commit_spec(root, text):
    (root / "overnight.toml").write_text(text)
    gitops.git(root, "commit", "-qam", "spec")


def test_knob_for_a_missing_constant(cli, toy_repo):
    spec = toy_repo / "overnight.toml"
    commit_spec(toy_repo, spec.read_text() + "LEARNIN_RATE = {low = 1e-3, high = 1e-1}\n")
    one_error_line(cli("run", toy_repo, "--experiments", "2", "--quiet"), "knobs.LEARNIN_RATE", "'LEARNING_RATE'")
    assert not (toy_repo / ".overnight").exists()


def test_knob_for_a_tuple_element_out_of_range(cli, toy_repo):
    (toy_repo / "train.py").write_text("BETAS = (0.9, 0.95)\n" + (toy_repo / "train.py").read_text())
    spec = toy_repo / "overnight.toml"
    commit_spec(toy_repo, spec.read_text() + '"BETAS[1]" = {low = 0.9, high = 0.99}\n"BETAS[2]" = false\n')
    one_error_line(cli("run", toy_repo, "--experiments", "2", "--quiet"), "knobs.BETAS[2]")


def test_protected_file_git_ignored(cli, toy_repo):
    (toy_repo / "secret.dat").write_text("held out\n")
    (toy_repo / ".gitignore").write_text("*.dat\n")
    text = (toy_repo / "overnight.toml").read_text()
    text = text.replace(
        'protected = ["evaluate.py", "overnight.toml"]', 'protected = ["evaluate.py", "overnight.toml", "secret.dat"]'
    )
    assert "secret.dat" in text
    gitops.git(toy_repo, "add", ".gitignore")
    commit_spec(toy_repo, text)
    one_error_line(cli("run", toy_repo, "--experiments", "2", "--quiet"), "secret.dat", "git-ignored")
    assert not (toy_repo / ".overnight").exists()


def test_state_dir_is_a_file(cli, toy_repo):
    (toy_repo / ".overnight").write_text("not a folder\n")
    one_error_line(cli("run", toy_repo, "--experiments", "2", "--quiet"), ".overnight", "is a file")
    one_error_line(cli("note", "try x", toy_repo), ".overnight", "is a file")
    one_error_line(cli("status", toy_repo), "no journal")


def test_corrupt_journal(cli, toy_repo):
    state = toy_repo / ".overnight"
    state.mkdir()
    (state / "journal.db").write_bytes(b"this is not sqlite\n" * 500)
    for args in (
        ("status", toy_repo),
        ("status", toy_repo, "--json"),
        ("show", 1, toy_repo),
        ("run", toy_repo, "--experiments", "2", "--quiet"),
    ):
        line = one_error_line(cli(*args), "damaged")
        assert str(state / "journal.db") in line


def test_show_creates_no_journal(cli, toy_repo):
    one_error_line(cli("show", 1, toy_repo), "no journal")
    assert not (toy_repo / ".overnight").exists()
