"""The `nanogpt` task: pretrain a small GPT under a time budget, judged by val_bpb.

`write` copies the template files of this folder into a new task repository and applies the
preset by rewriting their UPPER_CASE constants in place, so the written files read as if they
had been typed with those values. The templates themselves hold the cpu preset.
"""

from __future__ import annotations

import re
from pathlib import Path

from overnight import knobs
from overnight.errors import OvernightError

HERE = Path(__file__).parent
FILES = ("train.py", "prepare.py", "program.md", "overnight.toml")

# Each preset: constants of prepare.py, of train.py, the budget and clock of overnight.toml, and
# any [knobs] ranges the preset needs.
# The templates carry the cpu values; listing them again here is what makes `--preset cpu`
# restore them, and keeps the two presets side by side for reading.
PRESETS = {
    # 2 CPU cores, 60 s: a 3-layer, 192-wide model on 2k-token BPE, 2k tokens per step. A run
    # sees well under a million tokens, so small and many steps won. Measured at equal CPU time
    # (one thread, budget in CPU seconds, to be fair on a shared machine): 60 s eager, 3x192
    # 1.97 val_bpb, 4x192 2.02, 4x256 2.16 (2.19 at 4k tokens/step); 100 s compiled (about a
    # quiet 2-core minute), 3x192 1.77 (1.76 at 4k tokens/step), 4x256 1.93 (1.94).
    "cpu": dict(
        prepare=dict(MAX_SEQ_LEN=256, VOCAB_SIZE=2048, EVAL_TOKENS=2**16, EXCLUDED_STEPS=2),
        train=dict(DEPTH=3, ASPECT_RATIO=64, HEAD_DIM=64, WINDOW_PATTERN="L", TOTAL_BATCH_SIZE=2**11,
                   DEVICE_BATCH_SIZE=8, COMPILE=False),
        budget=60,
        # The steps clock: a seed trains the same steps twice whatever the load, so paired runs
        # differ by the change alone, as under the tokens clock (bench/clock.py, docs/task-spec.md),
        # and a change pays for what it costs per step in time on this machine, which the tokens
        # clock's FLOP count did not charge (issue 30: its kept smaller model took 1.45x the time).
        clock="steps",
        # Inferred ranges would let a search draw a 6 x 128-wide model: on two cores its
        # compile and first steps alone outlast the hard timeout (seen: 3 timeouts in a row).
        knobs=('DEPTH = { low = 2, high = 4 }       # cpu preset: models that can learn in 60 s\n'
               'ASPECT_RATIO = [48, 64, 96]\n'
               'HEAD_DIM = [32, 64]\n'),
    ),
    # One big GPU, 300 s: autoresearch's default shape (depth 8, seq 2048, vocab 8192, 2**19
    # tokens per step). Full causal windows: with SDPA a sliding window costs a mask, not less work.
    "gpu": dict(
        prepare=dict(MAX_SEQ_LEN=2048, VOCAB_SIZE=8192, EVAL_TOKENS=40 * 2**19, EXCLUDED_STEPS=10),
        train=dict(DEPTH=8, ASPECT_RATIO=64, HEAD_DIM=128, WINDOW_PATTERN="L", TOTAL_BATCH_SIZE=2**19,
                   DEVICE_BATCH_SIZE=128, COMPILE=True),
        budget=300,
        clock="wall",  # a GPU is the run's own: its wall time is what the run got
    ),
}
DEFAULT_PRESET = "cpu"
_HF_NAME = re.compile(r"^[\w.-]+/[\w.-]+(/[\w.=-]+)*$")


def data_spec(data: str | None) -> str:
    """The spec as prepare.py will read it: paths made absolute, so every worktree finds them."""
    if data is None or data == "embedded":
        return "embedded"
    kind, _, arg = data.partition(":")
    if kind == "text" and arg:
        path = Path(arg).expanduser().resolve()
        if not path.is_file():
            raise OvernightError(f"--data {data}: no such file — give an existing text file as text:PATH")
        return f"text:{path}"
    if kind == "parquet" and arg:
        path = Path(arg).expanduser().resolve()
        if not path.is_dir() or not any(path.glob("*.parquet")):
            raise OvernightError(f"--data {data}: no .parquet files in that folder — give a folder of "
                                 "shards with a `text` column as parquet:DIR")
        return f"parquet:{path}"
    if kind == "hf" and arg:
        if not _HF_NAME.match(arg):
            raise OvernightError(f"--data {data}: not a dataset name — use hf:OWNER/NAME or hf:OWNER/NAME/FOLDER")
        return f"hf:{arg}"
    raise OvernightError(f"--data {data!r} is not a data spec — use embedded, text:PATH, parquet:DIR or hf:OWNER/NAME")


def _keep_comment_column(old: str, new: str) -> str:
    """After a value changed width, move its end-of-line comment back to the column it had."""
    lines = []
    for before, after in zip(old.splitlines(keepends=True), new.splitlines(keepends=True)):
        m = re.match(r"^([A-Z][A-Z0-9_]* = .*?\S)( +)(# .*)$", after, re.S)
        if before != after and m and m.group(3) in before:
            column = before.index(m.group(3))
            after = m.group(1) + " " * max(2, column - len(m.group(1))) + m.group(3)
        lines.append(after)
    return "".join(lines)


def _apply(source: str, values: dict) -> str:
    return _keep_comment_column(source, knobs.rewrite(source, values))


def render(preset: str | None = None, data: str | None = None) -> dict[str, str]:
    """The task's files, name -> text, for a preset and a data spec."""
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise OvernightError(f"unknown preset {name!r} for nanogpt — choose one of: {', '.join(PRESETS)}")
    p = PRESETS[name]
    files = {f: (HERE / f).read_text() for f in FILES}
    files["prepare.py"] = _apply(files["prepare.py"], {**p["prepare"], "DATA": data_spec(data)})
    files["train.py"] = _apply(files["train.py"], p["train"])
    budget = p["budget"]
    toml = files["overnight.toml"]
    toml = re.sub(r"(?m)^(budget\s*=\s*)\d+", rf"\g<1>{budget}", toml)
    toml = re.sub(r"(?m)^(timeout\s*=\s*)\d+", rf"\g<1>{2 * budget + 60}", toml)
    toml = re.sub(r'(?m)^(clock\s*=\s*)"\w+"', rf'\g<1>"{p["clock"]}"', toml)
    files["overnight.toml"] = toml + p.get("knobs", "")
    # Runs import prepare.py, which would leave __pycache__ in every worktree.
    files[".gitignore"] = "__pycache__/\n*.pyc\n"
    return files


def write(dest: Path, preset: str | None = None, data: str | None = None) -> None:
    files = render(preset, data)  # everything is checked before the first file is written
    for name, text in files.items():
        (Path(dest) / name).write_text(text)
