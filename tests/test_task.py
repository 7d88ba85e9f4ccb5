"""overnight.toml: loading, validation (one error naming the field), budget and timeout, and the
additions for the validation data ([heldout], task.watch, limits.sandbox_writable)."""

from __future__ import annotations

import textwrap

import pytest

from overnight.errors import OvernightError, TaskSpecError
from overnight.task import DEFAULT_HELDOUT_GAP, DEFAULT_HELDOUT_SHARE, default_timeout
from overnight.task_load import load_task

VALID = """\
[task]
command = "python train.py --fast"
editable = ["train.py"]
protected = ["prepare.py"]
budget = 300

[task.env]
TOY = 1

[metric]
name = "val_bpb"
goal = "minimize"

[knobs]
LR = {low = 1e-4, high = 1e-2, log = true}
ACT = ["relu", "gelu"]
SEED = false
"""


def write(tmp_path, toml, files=("train.py", "prepare.py")):
    for f in files:
        (tmp_path / f).write_text("# file\n")
    (tmp_path / "overnight.toml").write_text(textwrap.dedent(toml))
    return tmp_path


def test_valid_spec(tmp_path):
    spec = load_task(write(tmp_path, VALID))
    assert spec.root == tmp_path.resolve()
    assert spec.command == "python train.py --fast"
    assert spec.editable == ("train.py",)
    assert spec.protected == ("prepare.py", "overnight.toml")  # the spec protects itself
    assert spec.budget == 300.0 and isinstance(spec.budget, float)
    assert spec.env == {"TOY": "1"}
    assert spec.metric.name == "val_bpb" and spec.metric.goal == "minimize"
    assert spec.metric.source == "result-file"
    assert spec.knobs["ACT"] == ["relu", "gelu"] and spec.knobs["SEED"] is False


def test_metric_direction():
    from overnight.task import Metric

    low, high = Metric("loss", "minimize"), Metric("acc", "maximize")
    assert low.better(1.0, 2.0) and not low.better(2.0, 1.0) and not low.better(1.0, 1.0)
    assert high.better(2.0, 1.0) and not high.better(1.0, 2.0)
    assert low.improvement(0.9, 1.0) == pytest.approx(0.1)
    assert high.improvement(0.9, 1.0) == pytest.approx(-0.1)
    assert low.worst == float("inf") and high.worst == float("-inf")


def test_default_pattern_matches_a_summary_line(tmp_path):
    import re

    spec = load_task(write(tmp_path, VALID.replace('goal = "minimize"', 'source = "stdout"')))
    m = re.search(spec.metric.pattern, "---\nval_bpb:   0.9979\n", re.MULTILINE)
    assert m and float(m.group(1)) == 0.9979


def test_timeout_follows_budget(tmp_path):
    spec = load_task(write(tmp_path, VALID))
    assert spec.timeout == default_timeout(300) == 660
    short = spec.with_budget(10)
    assert short.budget == 10.0 and short.timeout == 80
    assert spec.budget == 300  # frozen: the original is unchanged
    assert spec.with_budget(None) is spec
    for bad in (0, -5):
        with pytest.raises(TaskSpecError, match="--budget"):
            spec.with_budget(bad)


def test_explicit_timeout(tmp_path):
    spec = load_task(write(tmp_path, VALID.replace("budget = 300", "budget = 1\ntimeout = 30")))
    assert spec.timeout == 30
    assert spec.with_budget(20).timeout == 30
    # A budget raised past the written timeout must not be killed before it ends.
    assert spec.with_budget(40).timeout == default_timeout(40)


def test_missing_file(tmp_path):
    with pytest.raises(TaskSpecError, match="no overnight.toml"):
        load_task(tmp_path)


def test_errors_are_overnight_errors():
    assert issubclass(TaskSpecError, OvernightError)


def test_not_toml(tmp_path):
    with pytest.raises(TaskSpecError, match="not valid TOML"):
        load_task(write(tmp_path, "[task\ncommand = 1\n"))


def test_editable_and_protected(tmp_path):
    toml = VALID.replace('protected = ["prepare.py"]', 'protected = ["prepare.py", "train.py"]')
    with pytest.raises(TaskSpecError, match="both editable and protected"):
        load_task(write(tmp_path, toml))
    toml = VALID.replace('editable = ["train.py"]', 'editable = ["train.py", "overnight.toml"]')
    with pytest.raises(TaskSpecError, match="both editable and protected"):
        load_task(write(tmp_path, toml))


# (replace this, with that) -> the error must name this field
BAD_FIELDS = [
    ("[task]", "[tusk]", "task"),
    ('command = "python train.py --fast"\n', "", "task.command"),
    ('command = "python train.py --fast"', "command = 3", "task.command"),
    ('editable = ["train.py"]\n', "", "task.editable"),
    ('editable = ["train.py"]', 'editable = "train.py"', "task.editable"),
    ('editable = ["train.py"]', "editable = []", "task.editable"),
    ('editable = ["train.py"]', "editable = [3]", "task.editable"),
    ('editable = ["train.py"]', 'editable = ["/etc/passwd"]', "task.editable"),
    ('editable = ["train.py"]', 'editable = ["../train.py"]', "task.editable"),
    ('editable = ["train.py"]', 'editable = ["nope.py"]', "nope.py"),
    ('protected = ["prepare.py"]', 'protected = "prepare.py"', "task.protected"),
    ('protected = ["prepare.py"]', 'protected = ["missing.py"]', "missing.py"),
    ("budget = 300\n", "", "task.budget"),
    ("budget = 300", 'budget = "300"', "task.budget"),
    ("budget = 300", "budget = true", "task.budget"),
    ("budget = 300", "budget = -1", "task.budget"),
    ("budget = 300", "budget = 300\ntimeout = 100", "task.timeout"),
    ("budget = 300", 'budget = 300\ntimeout = "long"', "task.timeout"),
    ("[task.env]\nTOY = 1\n", 'env = "X=1"\n', "task.env"),
    ("[metric]", "[metrics]", "metric"),
    ('name = "val_bpb"\n', "", "metric.name"),
    ('name = "val_bpb"', "name = 1", "metric.name"),
    ('goal = "minimize"', 'goal = "lower"', "metric.goal"),
    ('goal = "minimize"', 'source = "stderr"', "metric.source"),
    ('goal = "minimize"', 'pattern = "val_bpb: ("', "metric.pattern"),
    ('ACT = ["relu", "gelu"]', "ACT = []", "knobs.ACT"),
    ('ACT = ["relu", "gelu"]', "ACT = 3", "knobs.ACT"),
    ('ACT = ["relu", "gelu"]', "ACT = true", "knobs.ACT"),
    ("LR = {low = 1e-4, high = 1e-2, log = true}", "LR = {low = 1e-4}", "knobs.LR"),
    ("LR = {low = 1e-4, high = 1e-2, log = true}", "LR = {low = 1e-2, high = 1e-4}", "knobs.LR"),
    ("LR = {low = 1e-4, high = 1e-2, log = true}", 'LR = {low = "a", high = 1}', "knobs.LR"),
    ("LR = {low = 1e-4, high = 1e-2, log = true}", "LR = {low = 0, high = 1, log = true}", "knobs.LR"),
    ("LR = {low = 1e-4, high = 1e-2, log = true}", 'LR = {low = 1, high = 2, type = "str"}', "knobs.LR"),
]


@pytest.mark.parametrize("old,new,field", BAD_FIELDS, ids=[f"{f}:{n.strip()[:20]}" for _, n, f in BAD_FIELDS])
def test_bad_field_is_named(tmp_path, old, new, field):
    assert old in VALID, old
    with pytest.raises(TaskSpecError) as info:
        load_task(write(tmp_path, VALID.replace(old, new, 1)))
    message = str(info.value)
    assert field in message
    assert "\n" not in message  # one line for the CLI


def test_knobs_not_a_table(tmp_path):
    toml = "knobs = 3\n" + VALID.split("[knobs]")[0]
    with pytest.raises(TaskSpecError, match=r"\[knobs\]"):
        load_task(write(tmp_path, toml))


def test_limits_and_rescore(tmp_path):
    spec = load_task(write(tmp_path, VALID))
    assert spec.limits.memory_mb is None and spec.limits.sandbox == "auto" and spec.rescore is None
    assert spec.limits.wall_limit(300) == 300 + 30 + 150  # start-up/evaluation allowance derived
    assert spec.limits.training_limit(300) == pytest.approx(331)
    text = (
        VALID.replace(
            "budget = 300\n", 'budget = 300\nrescore = "python prepare.py --rescore"\nrescore_tolerance = 1e-4\n'
        )
        + "\n[limits]\nmemory_mb = 2048\noverhead = 20\nsandbox = true\n"
    )
    assert load_task(write(tmp_path, text.replace("sandbox = true", "sandbox = false"))).limits.sandbox == "off"
    assert load_task(write(tmp_path, text.replace("sandbox = true", 'sandbox = "auto"'))).limits.sandbox == "auto"
    spec = load_task(write(tmp_path, text))
    assert (spec.limits.memory_mb, spec.limits.overhead, spec.limits.sandbox) == (2048.0, 20.0, "on")
    assert spec.limits.wall_limit(300) == 320 and spec.rescore == "python prepare.py --rescore"
    assert spec.rescore_tolerance == 1e-4


@pytest.mark.parametrize(
    "limits, needle",
    [
        ("memory = 1", "unknown field limits.memory"),
        ("memory_mb = -1", "limits.memory_mb must be a non-negative number"),
        ("sandbox = 1", 'limits.sandbox must be true, false or "auto"'),
        ('sandbox = "yes"', 'limits.sandbox must be true, false or "auto"'),
    ],
)
def test_bad_limits(tmp_path, limits, needle):
    with pytest.raises(TaskSpecError, match=needle):
        load_task(write(tmp_path, VALID + f"\n[limits]\n{limits}\n"))


# --- the validation data's additions: [heldout], task.watch, limits.sandbox_writable ------------


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


# --- task.clock: what a run counts its budget with (OVERNIGHT_CLOCK) ---------------------------


@pytest.mark.parametrize(
    "line, clock",
    [("", "wall"), ('clock = "wall"\n', "wall"), ('clock = "cpu"\n', "cpu"), ('clock = "tokens"\n', "tokens")],
)
def test_clock_is_read_and_defaults_to_wall(tmp_path, line, clock):
    spec = load_task(write(tmp_path, VALID.replace("budget = 300\n", f"budget = 300\n{line}")))
    assert spec.clock == clock


@pytest.mark.parametrize("value", ['"CPU"', '"process"', '""', "1", "true", '["cpu"]'])
def test_bad_clock_is_one_line_naming_the_allowed_values(tmp_path, value):
    with pytest.raises(TaskSpecError) as info:
        load_task(write(tmp_path, VALID.replace("budget = 300\n", f"budget = 300\nclock = {value}\n")))
    message = str(info.value)
    assert "task.clock" in message and "'wall' or 'cpu' or 'tokens'" in message
    assert "\n" not in message
