"""hybrid: LLM structural moves alternating with Optuna tuning phases on the current best."""

from __future__ import annotations

import optuna

from overnight.records import ExpStatus
from overnight.testing.fake_llm import GELU_REPLY, edit_reply, fault, options
from overnight.testing.nights import controller_with
from overnight.testing.toy import write_toy


def llm_replies(request):
    """First move: gelu. Later moves: a harmless structural comment at the end of train.py."""
    text = request["messages"][-1]["content"]
    if 'ACTIVATION = "relu"' in text and "experiments so far" not in text:
        return GELU_REPLY
    return edit_reply('if __name__ == "__main__":', '# structure\nif __name__ == "__main__":', "Add a comment.")


def moves(c):
    return [e.params.get("move") for e in c.journal.experiments("t")[1:]]


def test_alternation_and_resume(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.default = llm_replies
    opts = options(fake, hybrid_trials=2)
    c = controller_with(root, 4, "hybrid", opts)
    c.run()
    c.proposer.close()
    # A new controller (a restart) reads the schedule from the journal and carries on.
    c = controller_with(root, 7, "hybrid", opts)
    c.run()
    exps = c.journal.experiments("t")[1:]
    assert moves(c) == ["llm", "tune", "tune", "llm", "tune", "tune"]
    assert [e.proposer for e in exps] == [
        "hybrid:llm",
        "hybrid:optuna",
        "hybrid:optuna",
        "hybrid:llm",
        "hybrid:optuna",
        "hybrid:optuna",
    ]
    gelu = exps[0]
    assert gelu.status == ExpStatus.KEPT
    # The first tuning phase searches around the model's kept change, starting from it.
    assert {e.params["anchor"] for e in exps[1:3]} == {gelu.commit_sha}
    study = optuna.load_study(
        study_name=f"t.hybrid.{gelu.commit_sha[:12]}", storage=f"sqlite:///{root / '.overnight' / 'optuna.db'}"
    )
    assert study.trials[0].user_attrs.get("baseline") and study.trials[0].params["ACTIVATION"] == "gelu"
    assert len(study.trials) >= 3
    assert "tuned separately (Optuna)" in fake.requests[0]["messages"][-1]["content"]
    assert len(fake.requests) == 2  # only the LLM moves call the model


def test_tuner_stands_in_while_the_endpoint_is_down(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.default = lambda request: fault("status", code=500)
    c = controller_with(root, 3, "hybrid", options(fake, retries=0, hybrid_trials=1))
    c.run()
    assert moves(c) == ["tune", "tune"]
    assert [e["kind"] for e in c.journal.events("t")].count("fallback") == 1
