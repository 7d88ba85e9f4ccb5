"""The one output format (`---` then `key: value`) and its parser, on real-looking logs."""

from __future__ import annotations

from overnight.run.summary import format_summary, parse_summary

COMPLETE = """\
step 00100 | loss 3.2100 | lr 0.0004
step 00200 | loss 2.9800 | lr 0.0004
---
val_bpb:          0.997900
training_seconds: 300.1
num_steps:        953
depth:            8
device:           cuda:0
"""


def test_complete_log():
    s = parse_summary(COMPLETE)
    assert s.found
    assert s.values == {"val_bpb": 0.9979, "training_seconds": 300.1, "num_steps": 953, "depth": 8, "device": "cuda:0"}
    assert isinstance(s.values["num_steps"], int) and isinstance(s.values["val_bpb"], float)


def test_traceback_after_the_block_ends_it():
    log = COMPLETE.split("num_steps")[0] + (
        "Traceback (most recent call last):\n"
        '  File "train.py", line 3, in <module>\n'
        "RuntimeError: CUDA out of memory: 12.00 GiB\n"
    )
    s = parse_summary(log)
    assert s.found
    assert s.values == {"val_bpb": 0.9979, "training_seconds": 300.1}


def test_crash_before_any_block():
    log = "step 00100 | loss 3.2100\nTraceback (most recent call last):\nValueError: loss: nan\n"
    s = parse_summary(log)
    assert not s.found and s.values == {}


def test_traceback_instead_of_the_block_body():
    s = parse_summary("step 1\n---\nTraceback (most recent call last):\nKeyError: 'x'\nval_bpb: 0.5\n")
    assert s.found and s.values == {}


def test_cut_off_last_line_is_dropped():
    # The process was killed while printing: "0.99" may be the start of "0.9979".
    s = parse_summary("---\ntraining_seconds: 300.1\nval_bpb: 0.99")
    assert s.values == {"training_seconds": 300.1}
    # With its newline the same line is complete.
    assert parse_summary("---\ntraining_seconds: 300.1\nval_bpb: 0.99\n").values["val_bpb"] == 0.99


def test_last_block_wins():
    log = "---\nval_bpb: 1.5\nstep: 1\nmore training\n---\nval_bpb: 1.25\n"
    s = parse_summary(log)
    assert s.values == {"val_bpb": 1.25}


def test_no_block():
    s = parse_summary("val_bpb: 0.1\nlooks like a summary but has no separator\n")
    assert not s.found and s.values == {}
    assert parse_summary("").values == {}


def test_separator_with_spaces_and_crlf():
    s = parse_summary("x\r\n  ---  \r\nval_bpb: 0.5\r\n")
    assert s.values == {"val_bpb": 0.5}


def test_values_with_spaces_and_special_floats():
    s = parse_summary("---\nnote: two words  \nloss: nan\nbest: -inf\n")
    assert s.values["note"] == "two words"
    assert s.values["loss"] != s.values["loss"]  # NaN parses as a float NaN, not a string
    assert s.values["best"] == float("-inf")


def test_format_round_trips():
    values = {"val_bpb": 0.9979, "training_seconds": 300.1, "num_steps": 953}
    text = format_summary(values)
    assert text.startswith("---\n") and text.endswith("\n")
    assert parse_summary("progress line\n" + text).values == values
