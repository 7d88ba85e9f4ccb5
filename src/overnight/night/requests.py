"""What the lifecycle (lifecycle.py) asks for an experiment, as types the planner dispatches.

    Runs      queue these runs (a `Want` each); none: wait for those running
    Rescore   re-score these runs of a keep (and of its yardstick) before it may land
    Wait      nothing to do until something in flight ends (`why` says what)
    Finish    the experiment's fate: its status, reason and value (the lifecycle applies it)

`View` is what the lifecycle reads besides the journal: what is queued, in flight or being
re-scored now, and whether the deadline passed. Nothing here reads or writes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from overnight.records import EventKind, Experiment, ExpStatus, Run


@dataclass
class Want:
    """A run waiting for a slot: one more seeded replicate of `exp_id`."""

    exp_id: int
    remeasure: bool = False  # a re-measure of a kept experiment (its status stays kept)
    drift: bool = False  # a drift check: compare it with the earlier runs when it ends
    priority: int = 0  # 0: finishes a decision in progress; 1: a candidate's first run
    seed: int | None = None  # the seed it must run under (a partner for a pair); None: the lowest unused
    screen: bool = False  # a screen run: a fraction of the budget, never judged (screen.py)


@dataclass(frozen=True)
class Runs:
    wants: tuple[Want, ...] = ()
    first: bool = False  # at the front of the queue (a run the executor lost, run again)
    yardstick: int | None = None  # the judge's yardstick: nothing else is judged on it this pass


@dataclass(frozen=True)
class Rescore:
    exp: Experiment  # the keep waiting for them (or the kept baseline, for `check`)
    runs: tuple[Run, ...]  # its own counted runs, and its yardstick's paired ones
    yardstick: Experiment | None = None  # whose runs are among `runs` (under [heldout])
    check: bool = False  # the kept baseline's early check: holds no decision


@dataclass(frozen=True)
class Wait:
    why: str


@dataclass(frozen=True)
class Finish:
    status: ExpStatus
    reason: str
    value: float | None = None
    flags: tuple[EventKind, ...] = ()  # events journaled with it (the judge's, the held-out rule's)
    carry_over: bool = False  # a stale winner: its change goes on as a new experiment first
    judged: bool = False  # decided by the judge: a drift check of the incumbent may follow


Request = Runs | Rescore | Wait | Finish


@dataclass
class View:
    history: list[Experiment]
    busy: set[int] = field(default_factory=set)  # experiments with a run queued, in flight or re-scored
    rescoring: set[int] = field(default_factory=set)  # runs whose re-score is in progress
    unavailable: set[int] = field(default_factory=set)  # yardstick runs that cannot be re-scored
    stopped: bool = False  # past --hours: no new re-score starts (left for the resumed night)
    screening: bool = False  # --screen on, and not turned off by its rank check
