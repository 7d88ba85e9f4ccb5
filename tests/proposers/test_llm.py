"""The llm proposer against a real HTTP server speaking both protocols, through the real SDKs."""

from __future__ import annotations

import pytest

from overnight.errors import OvernightError
from overnight.proposers.llm import LLMProposer
from overnight.records import ExpStatus
from overnight.report.status import status_dict
from overnight.testing.fake_llm import GELU_REPLY, RELU, edit_reply, fault, options, reply
from overnight.testing.gitutil import git_out
from overnight.testing.nights import controller_with
from overnight.testing.toy import write_toy

PROVIDERS = ["openai", "anthropic"]


def user_text(request: dict) -> str:
    return request["messages"][-1]["content"]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_end_to_end_on_toy(tmp_path, fake, provider):
    root = write_toy(tmp_path / "toy")
    fake.push(reply(GELU_REPLY, 1200, 80))
    c = controller_with(root, 2, "llm", options(fake, provider))
    c.run()
    exp = c.journal.experiments("t")[1]
    assert exp.status == ExpStatus.KEPT and exp.proposer == "llm"
    assert exp.description.startswith("Switch the activation to gelu")
    assert '-ACTIVATION = "relu"' in exp.diff and '+ACTIVATION = "gelu"' in exp.diff
    assert git_out(root, "rev-parse", "overnight/t").strip() == exp.commit_sha
    assert 'ACTIVATION = "gelu"' in git_out(root, "show", "overnight/t:train.py")
    usage = exp.params["usage"]
    assert usage | {"prompt_chars": 0, "prompt_tokens_est": 0, "seconds": 0} == {
        "model": "any",
        "calls": 1,
        "tokens_in": 1200,
        "tokens_out": 80,
        "cost_usd": None,
        "prompt_chars": 0,
        "format": "json_schema",  # asked for by default; the SEARCH/REPLACE text it got is read too
        "window": 8192,  # a server on this machine that says nothing of its window
        "prompt_tokens_est": 0,
        "shortened": [],
        "largest_prompt": 1200,  # the server's count for the largest call
        "seconds": 0,
    }
    assert usage["prompt_tokens_est"] == -(-usage["prompt_chars"] // 3)
    path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    assert fake.paths == [path]
    req = fake.requests[0]
    system = req["system"] if provider == "anthropic" else req["messages"][0]["content"]
    assert "one JSON object with two fields" in system
    assert "Minimise `val_loss`" in user_text(req) and RELU in user_text(req)
    asked = (
        req["tools"][0]["input_schema"] if provider == "anthropic" else req["response_format"]["json_schema"]["schema"]
    )
    assert asked["properties"]["edits"]["items"]["properties"]["path"]["enum"] == ["train.py"]
    headers = {k.lower(): v for k, v in fake.headers[0].items()}
    assert "overnight-local" in headers.get(
        "x-api-key", headers.get("authorization", "")
    )  # a local server works without a key


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_edit_is_sent_back_once_with_the_error(night, fake, provider):
    fake.push(reply(edit_reply("ACTIVATION = 'relu'", "x")), reply(GELU_REPLY, 500, 40))
    p = LLMProposer(options(fake, provider))
    proposal = p.propose(night.ctx())
    assert proposal.rejected is None and 'ACTIVATION = "gelu"' in proposal.edits["train.py"]
    second = fake.requests[1]["messages"]
    assert second[-2]["role"] == "assistant" and "ACTIVATION = 'relu'" in second[-2]["content"]
    assert "could not be used" in second[-1]["content"] and "do not occur" in second[-1]["content"]
    assert proposal.params["usage"]["calls"] == 2 and proposal.params["usage"]["tokens_in"] == 1500
    p.close()


BAD = {
    "no blocks": ("I would lower the learning rate.", "no <<<<<<< SEARCH"),
    "does not apply": (edit_reply("LEARNING_RATE = 0.5", "LEARNING_RATE = 0.1"), "do not occur"),
    "protected file": (edit_reply("import json", "import os", path="evaluate.py"), "protected"),
    "not editable": (edit_reply("a", "b", path="program.md"), "not an editable file"),
    "does not compile": (edit_reply(RELU, 'ACTIVATION = "gelu"(('), "does not compile"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_edit_twice_is_a_failed_proposal(night, fake, case):
    text, message = BAD[case]
    fake.push(reply(text), reply(text))
    p = LLMProposer(options(fake))
    proposal = p.propose(night.ctx())
    assert proposal.edits == {} and "after one retry" in proposal.rejected and message in proposal.rejected
    assert len(fake.requests) == 2
    p.close()


def test_rejected_proposal_is_journaled_never_run(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.push(reply("No blocks here."), reply("Still none."), reply(GELU_REPLY))
    c = controller_with(root, 3, "llm", options(fake))
    c.run()
    bad, good = c.journal.experiments("t")[1:]
    assert bad.status == ExpStatus.REJECTED and bad.runs == [] and bad.commit_sha is None
    assert "no <<<<<<< SEARCH" in bad.reason and bad.proposer == "llm"
    assert (root / ".overnight" / bad.params["replies"]).read_text().count("---- next reply ----") == 1
    assert good.status == ExpStatus.KEPT
    d = status_dict(c.journal, "t", c.task.metric)
    assert d["crashed"] == 1 and d["llm"]["rejected"] == 1 and d["llm"]["proposals"] == 2


FAULTS = {
    "429": fault("status", code=429),
    "500": fault("status", code=500),
    "503": fault("status", code=503),
    "malformed json": fault("malformed"),
    "empty reply": fault("empty"),
    "timeout": fault("sleep", seconds=0.6),
    "dropped connection": fault("drop"),
}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", sorted(FAULTS))
def test_endpoint_fault_is_retried(night, fake, provider, name):
    fake.push(FAULTS[name], reply(GELU_REPLY))
    p = LLMProposer(options(fake, provider, request_timeout=0.3))
    proposal = p.propose(night.ctx())
    assert proposal.proposer == "llm" and 'ACTIVATION = "gelu"' in proposal.edits["train.py"]
    assert len(fake.requests) == 2 and [k for k, _ in night.said if k != "prompt-window"] == ["endpoint"]
    p.close()


def test_backoff_doubles(night, fake):
    fake.push(fault("status", code=500), fault("status", code=500), fault("status", code=500), reply(GELU_REPLY))
    waits = []
    p = LLMProposer(options(fake, retries=3, backoff=1.5), sleep=waits.append)
    assert p.propose(night.ctx()).proposer == "llm"
    assert waits == [1.5, 3.0, 6.0]
    p.close()


def test_connection_refused_falls_back_to_optuna(night, fake):
    fake.close()  # nothing listens there any more
    p = LLMProposer(options(fake, retries=1))
    proposal = p.propose(night.ctx())
    assert proposal.proposer == "optuna" and proposal.params["fallback_for"] == "llm"
    assert proposal.description.startswith("optuna ")  # a local move or a TPE trial
    kinds = [k for k, _ in night.said]
    assert (
        kinds == ["prompt-window", "endpoint", "endpoint", "fallback"] and "continuing with optuna" in night.said[-1][1]
    )
    p.close()


def test_fallback_and_recovery_in_the_journal(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    calls = {"n": 0}

    def default(request):
        calls["n"] += 1
        return fault("status", code=503) if calls["n"] <= 2 else GELU_REPLY

    fake.default = default
    c = controller_with(root, 5, "llm", options(fake, retries=1, probe_every=2))
    c.run()
    exps = c.journal.experiments("t")
    assert [e.proposer for e in exps[1:]] == ["optuna", "optuna", "llm", "llm"]
    kinds = [e["kind"] for e in c.journal.events("t")]
    assert kinds.count("fallback") == 1 and kinds.index("fallback") < kinds.index("fallback-end")
    d = status_dict(c.journal, "t", c.task.metric)
    assert d["llm"]["fallback"] is False and d["llm"]["fallback_proposals"] == 2


def test_status_says_when_on_fallback(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.default = lambda request: fault("status", code=500)
    c = controller_with(root, 3, "llm", options(fake, retries=0))
    c.run()
    u = status_dict(c.journal, "t", c.task.metric)["llm"]
    assert u["fallback"] is True and "continuing with optuna" in u["fallback_message"]


def test_refusal_before_any_answer_is_a_configuration_error(night, fake):
    fake.push(fault("status", code=401))
    p = LLMProposer(options(fake))
    with pytest.raises(OvernightError, match="refused the request .*401.* check --model"):
        p.propose(night.ctx())
    p.close()


@pytest.mark.parametrize("provider, env", [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY")])
def test_missing_key_for_a_real_endpoint(provider, env):
    from overnight.proposers.options import ProposerOptions

    with pytest.raises(OvernightError, match=f"{env} is not set — export it"):
        LLMProposer(ProposerOptions(model="m", provider=provider, base_url="https://api.example.com/v1"))
    with pytest.raises(OvernightError, match=env):
        LLMProposer(ProposerOptions(model="m", provider=provider))


def test_token_accounting_and_cost(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.push(
        reply("none"),
        reply(GELU_REPLY, 2000, 100),
        reply(edit_reply("WIDTH = 64  # model width", "WIDTH = 128  # model width"), 3000, 50),
    )
    c = controller_with(root, 3, "llm", options(fake, price_in=3.0, price_out=15.0))
    c.run()
    u = status_dict(c.journal, "t", c.task.metric)["llm"]
    assert (u["calls"], u["tokens_in"], u["tokens_out"]) == (3, 6000, 200)
    assert u["cost_usd"] == pytest.approx((6000 * 3 + 200 * 15) / 1e6)
    assert u["kept"] == 2 and u["cost_per_kept"] == pytest.approx(u["cost_usd"] / 2)


def test_missing_usage_is_estimated(night, fake):
    fake.push({"text": GELU_REPLY, "usage": None})
    p = LLMProposer(options(fake))
    usage = p.propose(night.ctx()).params["usage"]
    assert usage["estimated"] and usage["tokens_in"] > 100 and usage["tokens_out"] == len(GELU_REPLY) // 4
    p.close()


def test_notes_reach_the_prompt(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.push(reply(GELU_REPLY))
    c = controller_with(root, 2, "llm", options(fake))
    c.journal.event(None, "note", "given before the run")
    c.journal.event("t", "note", "try a longer warmdown")
    c.journal.event("other", "note", "not for this run")
    c.run()
    text = user_text(fake.requests[0])
    assert "- given before the run\n- try a longer warmdown" in text and "not for this run" not in text
