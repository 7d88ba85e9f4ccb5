"""`overnight init DIR` on a repository the user already has: what it finds there.

Two layouts. autoresearch's (karpathy/autoresearch and its forks): `train.py` edited,
`prepare.py` and `program.md` fixed, the budget as `TIME_BUDGET` in prepare.py, and a run that
ends by printing `---` then `val_bpb: ...`. Anything else is generic: a Python entry point with
UPPER_CASE constants that prints its metric as `name: value` or `name=value`. Every guess is
kept with the reason for it (`Found.why`), which adopt_toml.py writes as a comment beside the
field; what could not be decided is said, never silently defaulted.

Nothing here executes the user's code: files are read and parsed (knobs.find_constants).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from overnight import gitops
from overnight.errors import OvernightError
from overnight.knob_uses import report_only
from overnight.knobs import discover, find_constants

AUTORESEARCH_FILES = ("train.py", "prepare.py")
# The files of the environment a run depends on: protected when present (a candidate that
# changed its own dependencies would be measured on another machine, in effect).
ENVIRONMENT_FILES = ("pyproject.toml", "uv.lock", "requirements.txt")
ENTRY_NAMES = ("train.py", "main.py", "run.py", "train_gpt.py")  # most likely first
# A print's string literals, and in them `name:` / `name=` followed by a value's placeholder,
# spaces or the literal's end: `print(f"val_loss: {x}")`, `print("acc=", acc)`, `f"loss={l} acc={a}"`.
_PRINT = re.compile(r"\bprint\((.*)")
_LITERAL = re.compile(r"""[fF]?(["'])(.*?)(?<!\\)\1""")
_NAMED = re.compile(r"(?<![{\w.])([A-Za-z_][A-Za-z0-9_/.]*)[ \t]*([:=])(?=[ \t]|\{|$)")
_LOWER = re.compile(r"(loss|bpb|bpc|ppl|perplexity|err|error|mse|mae|rmse|nll|wer|cer|fid)", re.I)
_HIGHER = re.compile(r"(acc|accuracy|f1|auc|score|reward|map|bleu|rouge|iou|precision|recall|r2)", re.I)
_HELD = re.compile(r"(val|valid|test|eval|dev)", re.I)
NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"


@dataclass
class Found:
    """What `overnight init` will write, and why each value (`why[field]`)."""

    layout: str  # "autoresearch" | "generic"
    command: str
    editable: list[str]
    protected: list[str]
    metric: str
    goal: str
    pattern: str
    budget: float
    timeout: float | None = None
    overhead: float | None = None
    fixed_budget: bool = False
    knobs: list = field(default_factory=list)  # knobs.Knob found in the editable files
    idle: dict = field(default_factory=dict)  # NAME -> why: constants left out of the search (knob_uses.py)
    why: dict[str, str] = field(default_factory=dict)
    undecided: list[str] = field(default_factory=list)  # what the user should look at


def inspect_repo(
    root: Path,
    *,
    metric: str | None = None,
    goal: str | None = None,
    command: str | None = None,
    editable: tuple[str, ...] = (),
    budget: float | None = None,
) -> Found:
    """Read the repository at `root` (checked: a git repository with a commit) and guess the task."""
    files = {p: root / p for p in _tracked(root)}
    for path in editable:
        if path not in files:
            raise OvernightError(f"--editable {path}: no such file committed in {root} — name a file of the repository")
    is_autoresearch = all(p in files for p in AUTORESEARCH_FILES) and _prints_val_bpb(files["train.py"])
    found = _autoresearch(root, files) if is_autoresearch else _generic(root, files, editable)
    _apply_flags(found, root, metric=metric, goal=goal, command=command, editable=editable, budget=budget)
    found.protected = [p for p in found.protected if p not in found.editable]
    sources = {p: (root / p).read_text(errors="replace") for p in found.editable if p.endswith(".py")}
    found.knobs = discover({p: text for p, text in sources.items() if constants_of(text)}, metric=found.metric)
    found.idle = {name: why for (_, name), why in report_only(sources, found.metric).items()}
    if not found.knobs:
        found.undecided.append(
            f"no UPPER_CASE constants in {', '.join(found.editable)}: the optuna proposer has nothing to "
            "search; use --proposer llm or agent, or move hyperparameters into constants"
        )
    return found


def _tracked(root: Path) -> list[str]:
    return gitops.git(root, "ls-files", "-z").split("\0")[:-1] if gitops.rev_parse(root, "HEAD") else []


def _prints_val_bpb(train: Path) -> bool:
    text = train.read_text(errors="replace")
    return "val_bpb" in text and ('"---"' in text or "'---'" in text)


def _autoresearch(root: Path, files: dict[str, Path]) -> Found:
    why = {
        "layout": "train.py and prepare.py, train.py printing `---` then `val_bpb:`",
        "editable": "autoresearch's rule: only train.py is edited",
        "metric": "autoresearch's metric, read from the summary train.py prints after `---`",
    }
    uv = shutil.which("uv") is not None and "uv.lock" in files
    command = "uv run train.py" if uv else "python train.py"
    why["command"] = (
        "uv is installed and uv.lock is here" if uv else "no uv (or no uv.lock) here: the python first on PATH"
    )
    protected = ["prepare.py"] + [p for p in ("program.md", *ENVIRONMENT_FILES) if p in files]
    why["protected"] = "prepare.py holds the data, the evaluation and TIME_BUDGET; program.md the research brief"
    found = Found(
        "autoresearch",
        command,
        ["train.py"],
        protected,
        "val_bpb",
        "minimize",
        # Only a value after the `---` line counts: a training-loop line that mentions val_bpb is not the result.
        r"(?s)^---[ \t]*$.*^val_bpb:[ \t]*" + NUMBER,
        300.0,
        why=why,
        fixed_budget=True,
    )
    constants = constants_of(files["prepare.py"].read_text(errors="replace"))
    value = constants["TIME_BUDGET"].value if "TIME_BUDGET" in constants else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        found.budget = float(value)
        why["budget"] = "seconds of training per run: TIME_BUDGET in prepare.py, where train.py stops"
    else:
        found.undecided.append("no TIME_BUDGET in prepare.py: the budget is a guess of 300 s; pass --budget S")
        why["budget"] = "seconds of training per run: a guess (no TIME_BUDGET in prepare.py)"
    # autoresearch's program.md kills a run after 10 minutes of a 5-minute budget: start-up
    # (torch.compile) and the evaluation of ~20M tokens come on top of the training time.
    found.timeout = 2 * found.budget
    found.overhead = found.budget
    why["timeout"] = "twice the budget: start-up (compile) and evaluation come on top (program.md: 10 min for 5)"
    why["overhead"] = "seconds of start-up and evaluation a run may add to its budget before it is over budget"
    if "program.md" in files:
        why["brief"] = "program.md is given to the llm and agent proposers as the research brief"
    else:
        found.undecided.append("no program.md: the llm and agent proposers get no research brief")
    return found


def _generic(root: Path, files: dict[str, Path], editable: tuple[str, ...]) -> Found:
    why = {"layout": "not autoresearch's layout: a Python entry point that prints its metric"}
    if editable:
        entry = editable[0]
        why["editable"] = "--editable"
    else:
        entry = _entry_point(files)
        if entry is None:
            raise OvernightError(
                f"found no Python entry point with UPPER_CASE constants in {root} — "
                "pass --editable FILE (the file to tune) and --command CMD"
            )
        why["editable"] = f"{entry}: a Python entry point with UPPER_CASE constants"
    others = [p for p in files if p.endswith(".py") and p != entry and "/" not in p]
    protected = [p for p in (*others, *ENVIRONMENT_FILES) if p in files and p not in editable]
    why["protected"] = "the repository's other top-level Python files and its environment: a candidate edits only"
    why["protected"] += f" {', '.join(editable) or entry}"
    found = Found("generic", f"python {entry}", [entry, *editable[1:]], protected, "", "minimize", "", 60.0, why=why)
    why["command"] = "the editable entry point, with the python first on PATH"
    why["budget"] = (
        "seconds of training per run, a default: the harness passes it as OVERNIGHT_BUDGET; a script "
        "that ignores it is still stopped at the timeout"
    )
    found.undecided.append("the budget: read os.environ['OVERNIGHT_BUDGET'] in your script, or pass --budget S")
    return found


def _entry_point(files: dict[str, Path]) -> str | None:
    candidates = [p for p in files if p.endswith(".py") and "/" not in p]
    rank = {name: i for i, name in enumerate(ENTRY_NAMES)}
    ranked = sorted(candidates, key=lambda p: (rank.get(p, len(rank)), p))
    for path in ranked:
        text = files[path].read_text(errors="replace")
        if constants_of(text) and (path in ENTRY_NAMES or "__main__" in text):
            return path
    return None


def constants_of(source: str) -> dict:
    """The module-level UPPER_CASE constants, or none where the file does not parse here."""
    try:
        return find_constants(source)
    except (SyntaxError, ValueError):
        return {}


def printed_metrics(source: str) -> list[tuple[str, str]]:
    """(name, separator) of every `name: value` / `name=value` the source prints, in order."""
    found = []
    for call in _PRINT.finditer(source):
        for literal in _LITERAL.finditer(call.group(1)):
            found += [m.groups() for m in _NAMED.finditer(literal.group(2))]
    return list(dict.fromkeys(found))


def guess_goal(name: str) -> str | None:
    if _LOWER.search(name):
        return "minimize"
    if _HIGHER.search(name):
        return "maximize"
    return None


def _pick_metric(printed: list[tuple[str, str]]) -> str | None:
    """The printed name most like an objective: held-out and a known direction first."""
    scored = [(bool(_HELD.search(n)) + bool(guess_goal(n)), -i, n) for i, (n, _) in enumerate(printed)]
    best = max(scored, default=None)
    return best[2] if best and best[0] > 0 else None


def metric_pattern(name: str) -> str:
    """The last `name: value` or `name=value` on a line of the output, wherever on the line."""
    return r"(?:^|[\s,;(\[{])" + re.escape(name) + r"[ \t]*[:=][ \t]*" + NUMBER


def _apply_flags(found: Found, root: Path, *, metric, goal, command, editable, budget) -> None:
    if editable and found.layout == "autoresearch":
        found.editable = list(editable)
        found.why["editable"] = "--editable"
    if command:
        found.command, found.why["command"] = command, "--command"
    if budget is not None:
        if budget <= 0:
            raise OvernightError(f"--budget must be positive seconds, got {budget:g}")
        found.budget, found.why["budget"] = float(budget), "seconds of training per run: --budget"
        if found.timeout is not None:
            found.timeout, found.overhead = 2 * found.budget, found.budget
    if found.layout == "generic":
        source = "\n".join((root / p).read_text(errors="replace") for p in found.editable if (root / p).is_file())
        printed = printed_metrics(source)
        if metric is None:
            metric = _pick_metric(printed)
            if metric is None:
                names = ", ".join(n for n, _ in printed[:6]) or "none"
                raise OvernightError(
                    f"found no metric printed by {', '.join(found.editable)} as `name: value` or `name=value` "
                    f"(printed names: {names}) — pass --metric NAME"
                )
            found.why["metric"] = "printed by the entry point and named like a held-out objective"
        else:
            found.why["metric"] = "--metric"
            if metric not in {n for n, _ in printed}:
                found.undecided.append(f"--metric {metric}: no print of it found in the source; check the pattern")
        found.metric, found.pattern = metric, metric_pattern(metric)
    elif metric is not None:
        found.metric, found.pattern = metric, metric_pattern(metric)
        found.why["metric"] = "--metric"
    if goal is not None:
        found.goal, found.why["goal"] = goal, "--goal"
    else:
        guessed = guess_goal(found.metric)
        found.goal = guessed or "minimize"
        if guessed:
            found.why["goal"] = f"{found.metric} is named like a quantity to {guessed}"
        else:
            found.why["goal"] = "a guess: the name does not say"
            found.undecided.append(f"whether {found.metric} is better low or high: pass --goal minimize|maximize")
