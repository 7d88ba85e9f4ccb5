"""Seeds no candidate can predict (issue 31): a do-nothing constant chosen offline for
favourable noise on seeds 0-7 is kept when a night's seeds are 0, 1, 2, ... and not under the
seeds a night draws from its secret. The toy's noise depends on the seed and on every
constant of train.py, as a real run's does."""

from __future__ import annotations

from overnight.judges.noise import NoiseSettings
from overnight.night.config import RunConfig
from overnight.night.controller import Controller
from overnight.proposers import Proposal
from overnight.records import ExpStatus
from overnight.tasks.toy import evaluate
from overnight.testing.nights import Scripted, night_seeds
from overnight.testing.toy import write_toy

SHIPPED = dict(LEARNING_RATE=0.01, WEIGHT_DECAY=0.1, WARMUP_RATIO=0.5, WIDTH=64, DEPTH=4, ACTIVATION="relu")
LINE = "USE_NORM = False  # normalise activations\n"


def lucky_constant(seeds, tries: int = 20_000) -> int:
    """The attack, offline: the value of a constant nothing reads that draws the best noise."""
    constants = SHIPPED | {"USE_NORM": False}
    return min(range(tries), key=lambda k: sum(evaluate.noisy_loss(constants | {"LUCKY": k}, s) for s in seeds))


def test_a_constant_fished_for_seeds_0_to_7_is_kept_only_when_seeds_are_predictable(tmp_path):
    k = lucky_constant(range(8))

    def lucky(ctx):
        src = ctx.incumbent_files["train.py"]
        assert LINE in src
        return Proposal("a constant nothing reads", {"train.py": src.replace(LINE, LINE + f"LUCKY = {k}\n")}, {})

    outcome = {}
    # The drawn arm's secret is fixed, so the test is exact: a secret drawn at random would let
    # the candidate through as often as any no-op (the judge's A/A rate, about 1 %).
    for arm, secret in (("predictable", ""), ("drawn", "a secret the candidate never saw")):
        root = write_toy(tmp_path / arm)
        c = Controller(
            root,
            # the baseline on the 8 seeds the constant was fished for
            RunConfig(tag="t", judge="noise", experiments=2, seed_secret=secret, noise=NoiseSettings(baseline_runs=8)),
            proposer=Scripted(lucky),
        )
        c.run()
        base, cand = c.journal.experiments("t")
        outcome[arm] = cand
        if arm == "drawn":  # the night's own seeds, none of 0-7 but by a 2^-31 chance, shared by the pairs
            seeds = night_seeds(c.journal, "t", 8)
            assert [r.seed for r in base.runs] == seeds and not set(seeds) & set(range(8))
            assert [r.seed for r in cand.runs] == seeds[: len(cand.runs)]
    assert outcome["predictable"].status == ExpStatus.KEPT, outcome["predictable"].reason  # the attack works there
    assert outcome["drawn"].status == ExpStatus.DISCARDED, outcome["drawn"].reason


def test_every_night_draws_its_own_secret(tmp_path):
    secrets = []
    for name in ("a", "b"):
        root = write_toy(tmp_path / name)
        c = Controller(root, RunConfig(tag="t", judge="noise", experiments=1))
        c.run()
        secrets.append(c.journal.tag_info("t")["config"]["seed_secret"])
    assert all(len(s) == 32 and int(s, 16) >= 0 for s in secrets) and secrets[0] != secrets[1]
