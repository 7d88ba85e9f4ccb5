"""What every proposer promises the controller (proposers/base.py), as one suite each
implementation's test class inherits (optuna's `testing/pytest_samplers.py` idea):

    class TestRandom(KnobProposerContract):
        name = "random"
        rebases = True

        @pytest.fixture
        def make(self):
            return lambda: make_proposer("random")

`make` is a fixture returning a factory of fresh proposers (a fresh one is a restarted
controller's); the model-driven ones are made against the loopback server or the fake agent
CLI there. Contexts come from a real toy repository and a real journal (nights.ToyNight).
"""

from __future__ import annotations

import math

import pytest

from overnight import gitops, knobs
from overnight.proposers import PROPOSERS, Proposal
from overnight.records import ExpStatus
from overnight.testing.nights import ToyNight
from overnight.testing.toy import write_toy

# A change the night already kept, in a line no proposer edits (an LLM's SEARCH text included).
KEPT_LINE = "\n# kept earlier tonight: proposals build on this line\n"


def check_proposal(n: ToyNight, prop: Proposal, proposed_by: tuple) -> None:
    """A usable proposal on `n`'s incumbent: described, editing only editable files (each
    changed, each Python file compiling), and it commits on the incumbent touching those only."""
    assert isinstance(prop, Proposal) and prop.rejected is None, prop
    assert prop.proposer in proposed_by, (prop.proposer, proposed_by)
    assert prop.description.strip()
    assert prop.edits and set(prop.edits) <= set(n.task.editable), sorted(prop.edits)
    for path, text in prop.edits.items():
        assert text != n.incumbent_files[path], f"{path} unchanged"
        if path.endswith(".py"):
            compile(text, path, "exec")
    parent = n.journal.experiment(n.incumbent_id).commit_sha
    commit = gitops.make_commit(n.root, parent, prop.edits, "candidate")
    assert gitops.changed_paths(n.root, parent, commit) == sorted(prop.edits)
    assert gitops.read_files(n.root, commit, list(prop.edits)) == prop.edits


def constants(text: str) -> dict:
    return {name: c.value for name, c in knobs.find_constants(text).items()}


class ProposerContract:
    name: str  # its CLI name
    rebases: bool = False  # rebase() re-proposes on a new incumbent (True) or leaves it to git (None)
    proposed_by: tuple = (None,)  # what its proposals' `proposer` may say (None: the proposer itself)

    @pytest.fixture
    def make(self):
        """Overridden by each implementation: a factory of fresh proposers."""
        raise NotImplementedError

    @pytest.fixture
    def toy_night(self, tmp_path) -> ToyNight:
        return ToyNight(write_toy(tmp_path / "toy"))

    def test_is_named_by_its_cli_name(self, make):
        p = make()
        assert p.name == self.name and self.name in PROPOSERS
        p.close()

    def test_proposes_an_applicable_edit_of_editable_files(self, make, toy_night):
        p = make()
        check_proposal(toy_night, p.propose(toy_night.ctx()), self.proposed_by)
        p.close()

    def test_builds_on_the_incumbent(self, make, toy_night):
        """After a keep, proposals start from the new incumbent's files, not the baseline's."""
        toy_night.keep({"train.py": toy_night.files["train.py"] + KEPT_LINE})
        p = make()
        prop = p.propose(toy_night.ctx())
        check_proposal(toy_night, prop, self.proposed_by)
        assert KEPT_LINE in prop.edits["train.py"]
        p.close()

    def test_tolerates_failed_experiments(self, make, toy_night):
        """Told of its own candidates crashing, invalid, rejected (one with no edits at all:
        a failed proposal) and timed out, it still proposes."""
        n, p = toy_night, make()
        ctx = n.ctx()
        p.observe(ctx.history[0], ctx)
        for status in (ExpStatus.CRASHED, ExpStatus.INVALID, ExpStatus.REJECTED, ExpStatus.TIMEOUT):
            prop = p.propose(n.ctx())
            p.observe(n.record(prop, status, None, proposer=prop.proposer or p.name), n.ctx())
        failed = Proposal.failed("no edit", "the reply had no SEARCH block", proposer=p.name)
        p.observe(n.record(failed, ExpStatus.REJECTED, None, proposer=p.name), n.ctx())
        check_proposal(n, p.propose(n.ctx()), self.proposed_by)
        p.close()

    def test_observe_is_idempotent(self, make, tmp_path):
        """Observing the same experiment twice (a resumed controller replays history) must not
        change what comes next."""

        def next_after(dirname, times):
            n = ToyNight(write_toy(tmp_path / dirname), seed=3)
            p = make()
            for _ in range(2):
                exp = n.record(p.propose(n.ctx()))
                for _ in range(times):
                    p.observe(exp, n.ctx())
            for _ in range(times):
                p.observe(n.journal.experiment(1), n.ctx())
            prop = p.propose(n.ctx())
            p.close()
            return prop.edits

        assert next_after("once", 1) == next_after("twice", 2)

    def test_a_fresh_proposer_carries_on(self, make, toy_night):
        """A fresh proposer object (a restarted controller) on the same state works."""
        n, p = toy_night, make()
        n.record(p.propose(n.ctx()))
        p.close()
        q = make()
        for e in n.journal.experiments("t"):
            q.observe(e, n.ctx())
        check_proposal(n, q.propose(n.ctx()), self.proposed_by)
        q.close()

    def test_rebase_gives_the_same_idea_on_the_new_incumbent_or_none(self, make, toy_night):
        """A candidate proposed before a keep (parallel slots): rebased onto the new incumbent,
        it carries the kept change and its own constants; or None (git merges the edits)."""
        n, p = toy_night, make()
        prop = p.propose(n.ctx())
        exp = n.record(prop, proposer=prop.proposer or p.name)
        n.keep({"train.py": n.files["train.py"] + KEPT_LINE})
        rebased = p.rebase(exp, n.ctx())
        if not self.rebases:
            assert rebased is None
        else:
            assert rebased is not None
            check_proposal(n, rebased, self.proposed_by)
            assert KEPT_LINE in rebased.edits["train.py"]
            before = constants(n.files["train.py"])
            mine = {k: v for k, v in constants(prop.edits["train.py"]).items() if v != before[k]}
            after = constants(rebased.edits["train.py"])
            assert {k: after[k] for k in mine} == mine
        p.close()

    def test_close_is_idempotent(self, make, toy_night):
        p = make()
        p.propose(toy_night.ctx())
        p.close()
        p.close()
        q = make()  # never asked
        q.close()
        q.close()


def in_range(k: knobs.Knob, v) -> bool:
    if k.kind == "cat":
        return v in k.choices
    if k.kind == "pow2":
        return v > 0 and v & (v - 1) == 0 and k.low <= math.log2(v) <= k.high
    # Files hold 4 significant digits, so a value at a bound may round a hair past it.
    slack = 5e-4 * max(abs(k.low), abs(k.high))
    return k.low - slack <= v <= k.high + slack


class KnobProposerContract(ProposerContract):
    """What the knob searches (proposers/base.py's KnobProposer) add: every proposal a
    configuration within the knobs' ranges and nothing else, searching, seeded."""

    rebases = True

    def test_proposals_set_knobs_in_range_and_nothing_else(self, make, toy_night):
        n, p = toy_night, make()
        space = {k.name: k for k in knobs.discover(n.files, n.task.knobs)}
        assert "ACTIVATION" in space and space["ACTIVATION"].choices == ("relu", "gelu", "silu")
        ctx = n.ctx()
        p.observe(ctx.history[0], ctx)
        changed = set()
        for i in range(6):
            prop = p.propose(n.ctx())
            assert prop.description.strip()
            assert set(prop.edits) <= set(n.task.editable)
            for path, text in prop.edits.items():
                compile(text, path, "exec")
                assert text != n.files[path]
                before, after = constants(n.files[path]), constants(text)
                assert set(before) == set(after)  # no constant lost or invented
                for kname, k in space.items():
                    value = after[k.constant] if k.index is None else after[k.constant][k.index]
                    assert in_range(k, value), (kname, value)
                    if value != k.default:
                        changed.add(kname)
                # Everything but the constants' values is untouched.
                strip = lambda s: [ln.split("=")[0] if ln[:1].isupper() else ln for ln in s.splitlines()]
                assert strip(text) == strip(n.files[path])
            # params: the knobs set, plus the proposer's bookkeeping (keys starting with "_")
            assert {k for k in prop.params if not k.startswith("_")} <= set(space)
            p.observe(n.record(prop, value=1.2 + 0.01 * i), n.ctx())
        assert len(changed) >= 3  # it searches, rather than re-proposing the baseline
        p.close()

    def test_deterministic_for_a_seed(self, make, tmp_path):
        def sequence(dirname, seed):
            n = ToyNight(write_toy(tmp_path / dirname), seed=seed)
            p = make()
            out = []
            for _ in range(3):
                prop = p.propose(n.ctx())
                out.append(prop.edits)
                p.observe(n.record(prop), n.ctx())
            p.close()
            return out

        first = sequence("a", seed=7)
        assert sequence("b", seed=7) == first
        assert sequence("c", seed=8) != first

    def test_no_knobs_is_a_clear_error(self, make, task_repo):
        from overnight.errors import OvernightError

        n = ToyNight(task_repo("print('no constants here')\n"))
        with pytest.raises(OvernightError, match="no tunable"):
            make().propose(n.ctx())
