"""Which constants change nothing the training does: their value only reaches a report.

A constant such as `H100_BF16_PEAK_FLOPS = 989.5e12` is read only to print MFU: a search
that moves it spends a trial on nothing, and every kept commit would carry the pointless
change. `report_only` follows each use of a name in the file (never running it):

- a use inside the arguments of a reporting call (print, a logger's or a tracker's log,
  `report(...)`, `add_scalar`, a progress bar's postfix) goes to a report, unless the call
  names the task's metric (`print(f"val_loss: {loss}")` is where a generic script's metric is
  read: a value that reaches it changes the result);
- a use inside an expression (arithmetic, an f-string, a conditional value, a subscript, a
  pass-through builtin such as `round` or `next`, a method of the value itself) is followed
  up to where the expression ends;
- an expression assigned to plain names is followed through every use of those names, in
  any function of the file (names are not told apart by scope: conflating two can only make
  a constant count as used);
- anything else (a condition, a return, an argument of any other call, an attribute or
  item assigned, a default argument) may reach the training: the constant is used.

A constant is report-only when it is read at least once and every read ends in a report. A
name that appears in another of the given files is left alone (that file may use it), and
so is one never read in its own file (another module may import it).
"""

from __future__ import annotations

import ast
import re

# Calls whose arguments are only shown or logged.
_SINKS = {"print", "report", "log", "info", "debug", "warning", "warn", "add_scalar", "add_scalars"}
_SINKS |= {"set_postfix", "set_description", "write_summary", "log_metrics", "log_metric", "log_dict"}
# Calls that pass a value through: what they return is followed like the value.
_PASS = {"round", "float", "int", "abs", "min", "max", "str", "format", "next", "sum", "len", "repr"}
_PASS |= {"sqrt", "log2", "log10", "exp", "ceil", "floor", "isfinite", "item", "get", "items", "values"}
_MATH = {"math", "np", "numpy", "torch"}  # math.log(x) computes; wandb.log(x) and logger.log(x) report
_EXPR = (
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.Subscript,
    ast.Tuple,
    ast.List,
    ast.Set,
    ast.Dict,
    ast.Starred,
    ast.GeneratorExp,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.comprehension,
    ast.keyword,
    ast.Attribute,
)


_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


class _Uses:
    def __init__(self, tree: ast.AST, source: str, metric: str):
        self.source, self.metric = source, metric
        self.parent: dict[ast.AST, ast.AST] = {}
        self.loads: dict[str, list[ast.Name]] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self.loads.setdefault(node.id, []).append(node)
        self.memo: dict[str, str | None] = {}

    def reason(self, name: str) -> str | None:
        """Where every read of `name` ends ("print", "report", ...), or None where one may
        reach the training (or there is no read)."""
        if name in self.memo:
            return self.memo[name]
        self.memo[name] = ""  # a cycle (x = x + 1) adds no use of its own
        sinks: set[str] = set()
        for load in self.loads.get(name, []):
            end = self._follow(load)
            if end is None:
                self.memo[name] = None
                return None
            sinks |= end
        found = ", ".join(sorted(sinks)) if sinks else None
        self.memo[name] = found
        return found

    def _follow(self, node: ast.AST) -> set[str] | None:
        """The reporting calls a value read at `node` ends in; None if it may go elsewhere."""
        while True:
            up = self.parent.get(node)
            if isinstance(up, ast.Call):
                name = _call_name(up)
                if node is up.func:  # a method of the value itself (PEAK.items()): its result follows
                    node = up
                    continue
                math = isinstance(up.func, ast.Attribute) and getattr(up.func.value, "id", "") in _MATH
                if name in _SINKS and not math:
                    # A report that names the metric may be where the harness reads it from.
                    said = ast.get_source_segment(self.source, up) or ""
                    return None if self.metric in said else {name + "()"}
                if name in _PASS or (name == "log" and math):
                    node = up
                    continue
                return None
            if isinstance(up, _EXPR) and not (isinstance(up, ast.Attribute) and not isinstance(up.ctx, ast.Load)):
                node = up
                continue
            if isinstance(up, (ast.Assign, ast.AnnAssign, ast.AugAssign)) and node is up.value:
                return self._assigned(up)
            return None

    def _assigned(self, stmt: ast.stmt) -> set[str] | None:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names: list[str] = []
        for t in targets:
            parts = t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t]
            if not all(isinstance(p, ast.Name) for p in parts):
                return None  # an attribute or an item: the value leaves what this follows
            names += [p.id for p in parts]
        out: set[str] = set()
        for n in names:
            r = self.reason(n)
            if r is None:
                return None
            out |= {s for s in r.split(", ") if s}
        return out


def report_only(files: dict[str, str], metric: str) -> dict[tuple[str, str], str]:
    """(file, NAME) -> why, for the module-level UPPER_CASE names of `files` (path -> source,
    Python files only) whose value reaches nothing but reports that do not name `metric` (the
    task's metric, printed by a generic script: the value the harness reads). Without a metric
    name nothing is found."""
    out: dict[tuple[str, str], str] = {}
    if not metric:
        return out
    for path, source in files.items():
        if not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        constants = {
            t.id
            for stmt in tree.body
            if isinstance(stmt, (ast.Assign, ast.AnnAssign))
            for t in (stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target])
            if isinstance(t, ast.Name) and _UPPER.match(t.id)
        }
        uses = _Uses(tree, source, metric)
        others = [text for p, text in files.items() if p != path]
        for name in sorted(constants):
            if any(re.search(rf"\b{re.escape(name)}\b", text) for text in others):
                continue
            why = uses.reason(name)
            if why:
                out[(path, name)] = f"only reaches {why}: its value changes nothing the run trains"
    return out
