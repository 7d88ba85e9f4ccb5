"""The prompt fits the model's window, structured replies where the server takes a schema, and a
model that cannot follow the format is noticed (issue 33): against the loopback server speaking
both protocols through the real SDKs, and the real nanogpt task's prompt."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from overnight.cli import main
from overnight.errors import OvernightError
from overnight.proposers import prompt, window
from overnight.proposers.elide import elide
from overnight.proposers.llm import LLMProposer
from overnight.records import ExpStatus
from overnight.report.status import status_dict
from overnight.testing.fake_llm import GELU_REPLY, RELU, json_reply, options, reply
from overnight.testing.nights import controller_with
from overnight.testing.toy import write_toy

from .test_prompt import nanogpt, night_context


def sent_chars(request: dict, provider: str = "openai") -> int:
    system = request.get("system", "") if provider == "anthropic" else ""
    return len(system) + sum(len(m["content"]) for m in request["messages"])


# --- the window -------------------------------------------------------------------------------------
def test_the_window_comes_from_the_flag_the_server_or_a_default(fake):
    assert window.resolve(4096, fake.openai_url, "m", 8192) == window.Window(4096, "--context-tokens", 1024)
    assert window.resolve(None, fake.openai_url, "m", 8192).source == "the default for a local server"
    fake.props = {"default_generation_settings": {"n_ctx": 2048}}  # llama.cpp's server
    assert window.resolve(None, fake.openai_url, "m", 8192) == window.Window(2048, "the server's /props n_ctx", 512)
    fake.props = None
    fake.show = {"parameters": "temperature 0.7\nnum_ctx 16384", "model_info": {}}  # Ollama, num_ctx set
    assert window.resolve(None, fake.openai_url, "m", 8192).tokens == 16384
    fake.show = {"parameters": "temperature 0.7", "model_info": {"llama.context_length": 131072}}
    assert window.resolve(None, fake.openai_url, "m", 8192).tokens == window.OLLAMA_DEFAULT_WINDOW
    assert "/props" in fake.probes and "/api/show" in fake.probes
    assert window.resolve(None, "https://api.openai.com/v1", "m", 8192) is None  # hosted: unsized


def test_a_big_prompt_is_shortened_in_order_and_a_small_one_is_not(tmp_path):
    ctx = night_context(nanogpt(tmp_path), 60, notes=3)
    system, user = prompt.build(ctx)
    full = prompt.size(system, user)
    # Room for all but part of the history: only the history gives way.
    s, u, cut = prompt.fit(ctx, "llm", full - 1_000)
    assert prompt.size(s, u) <= full - 1_000 and cut == ["history"] and "def forward" in u
    # An 8k-token model: the history, the program, then the file's untouched regions go, marked.
    limit = window.Window.of(8192, "test", 8192).prompt_chars - 2_000
    s, u, cut = prompt.fit(ctx, "llm", limit)
    assert prompt.size(s, u) <= limit and cut[-1] == "files" and "not shown: unchanged since the baseline" in u
    assert s == prompt.SYSTEM_JSON or s == prompt.SYSTEM  # the instructions whole
    assert "# Your move" in u and "note 2:" in u and "Metric: val_bpb" in u  # never shortened
    assert prompt.fit(ctx, "llm", full + 10) == (system, user, [])  # it fits: nothing cut
    with pytest.raises(OvernightError, match=r"the prompt needs about [\d,]+ tokens even shortened"):
        prompt.fit(ctx, "llm", 3_000)


def test_an_elided_file_keeps_what_the_night_changed():
    base = "\n".join(f"line {i} = {i}" for i in range(400))
    text = base.replace("line 300 = 300", "line 300 = 301  # changed")
    shown = elide(text, base, 2_000)
    assert len(shown) <= 2_000 and "line 300 = 301  # changed" in shown and "line 297 = 297" in shown
    assert shown.startswith("line 0 = 0") and "[... lines" in shown and "line 200 = 200" not in shown
    assert elide(text, base, 100_000) == text


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_every_request_fits_the_window_the_server_gives(tmp_path, fake, provider):
    """nanogpt's prompt (~25,000 characters) to a llama.cpp-like server with a 4,096-token window:
    every request, the retry's included, within the window less the reply's room, which is the
    reply's cap."""
    root = nanogpt(tmp_path)
    fake.props = {"default_generation_settings": {"n_ctx": 4096}}
    fake.default = lambda request: reply("No blocks here, sorry.")  # off-format: retried once
    p = LLMProposer(options(fake, provider, reply_format="text"))
    proposal = p.propose(night_context(root, 40))
    assert proposal.rejected and len(fake.requests) == 2
    win = window.Window.of(4096, "", 8192)
    for req in fake.requests:
        assert window.tokens(sent_chars(req, provider)) <= win.tokens - win.reply
        assert req["max_tokens"] == win.reply == 1024
    usage = proposal.params["usage"]
    assert usage["window"] == 4096 and "files" in usage["shortened"]
    p.close()


# --- structured replies --------------------------------------------------------------------------
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_structured_reply_is_applied(night, fake, provider):
    fake.push(json_reply("gelu is smoother", (RELU, RELU.replace('"relu"', '"gelu"'))))
    p = LLMProposer(options(fake, provider))
    proposal = p.propose(night.ctx())
    assert proposal.rejected is None and proposal.description == "gelu is smoother"
    assert 'ACTIVATION = "gelu"' in proposal.edits["train.py"]
    req = fake.requests[0]
    if provider == "anthropic":
        assert req["tool_choice"] == {"type": "tool", "name": "propose_edit"}
    else:
        assert req["response_format"]["type"] == "json_schema"
    p.close()


def test_a_server_refusing_the_schema_gets_text_from_then_on(night, fake):
    """A 400 for each structured way (a 500 naming response_format counts too: llama-cpp-python's)."""
    fake.refuse_schema = True
    fake.push(reply(GELU_REPLY))
    p = LLMProposer(options(fake))
    assert 'ACTIVATION = "gelu"' in p.propose(night.ctx()).edits["train.py"]
    asked = [r.get("response_format", {}).get("type") for r in fake.requests]
    assert asked == ["json_schema", "json_object", None]  # OpenAI's way, llama-cpp-python's, then text
    assert "<<<<<<< SEARCH" in fake.requests[2]["messages"][0]["content"]
    assert [k for k, _ in night.said if k != "prompt-window"] == ["reply-format", "reply-format"]
    fake.push(reply(GELU_REPLY))
    p.propose(night.ctx())
    assert "response_format" not in fake.requests[-1]  # once refused, never asked again
    p.close()


def test_a_json_edit_of_a_protected_file_is_refused_with_a_reason(night, fake):
    fake.push(
        json_reply("cheat", ("x", "y"), path="evaluate.py"),
        json_reply("cheat", ("x", "y"), path="../results/x.json"),
    )
    p = LLMProposer(options(fake))
    proposal = p.propose(night.ctx())
    assert proposal.rejected and "is not an editable file" in proposal.rejected  # the retry's path
    assert "evaluate.py is protected" in fake.requests[1]["messages"][-1]["content"]
    p.close()


# --- a model that cannot follow the format --------------------------------------------------------
def test_a_model_that_cannot_follow_the_format_is_benched_then_probed(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    # Six calls (three proposals and their retries) never an edit; from the seventh, a good one.
    fake.default = lambda request: reply(GELU_REPLY if len(fake.requests) > 6 else "The learning rate matters.")
    c = controller_with(root, 10, "llm", options(fake, unusable_after=3, probe_every=4))
    c.run()
    h = c.journal.experiments("t")[1:]
    who = ["fallback_for" in e.params for e in h]
    # Three rejected proposals, then optuna; the fourth after them asks the model again, its edit
    # applies, and the model proposes again.
    assert who == [False, False, False, True, True, True, False, False, False], [e.description for e in h]
    assert [e.status for e in h[:3]] == [ExpStatus.REJECTED] * 3 and h[6].status == ExpStatus.KEPT
    said = c.journal.events("t", "model-unusable")
    assert (
        len(said) == 1
        and "last 3 proposals could not be used (last: edit rejected after one retry" in said[0]["message"]
    )
    assert len(c.journal.events("t", "model-usable")) == 1
    u = status_dict(c.journal, "t", c.task.metric)["llm"]
    assert not u["unusable"] and u["unusable_spells"] == 1 and u["fallback_proposals"] == 3


def test_status_says_so_while_the_model_is_benched(tmp_path, fake):
    root = write_toy(tmp_path / "toy")
    fake.default = lambda request: reply("No edit today.")
    c = controller_with(root, 4, "llm", options(fake, unusable_after=2, probe_every=10))
    c.run()
    u = status_dict(c.journal, "t", c.task.metric)["llm"]
    assert u["unusable"] and "last 2 proposals could not be used" in u["unusable_message"]
    assert u["fallback_proposals"] == 1


def test_overnight_prompt_says_the_estimate_against_the_window(tmp_path):
    root = nanogpt(tmp_path)
    out = CliRunner().invoke(main, ["prompt", str(root), "--context-tokens", "8192"])
    assert out.exit_code == 0, out.output
    assert "of a 8,192 tokens (--context-tokens), 2,048 kept for the reply; shortened:" in out.output
    out = CliRunner().invoke(main, ["prompt", str(root), "--context-tokens", "12"])
    assert out.exit_code != 0 and "--context-tokens must be at least 1024" in out.output


def test_a_500_naming_response_format_is_a_refusal_not_an_outage():
    from overnight.proposers.llm_client import EndpointFault, EndpointRefused
    from overnight.proposers.llm_reply import refuses_schema

    assert refuses_schema(EndpointFault("HTTP 500: ... ('body', 'response_format', 'type') ... 'json_object'"))
    assert refuses_schema(EndpointRefused("HTTP 400: bad", 400))
    assert not refuses_schema(EndpointFault("HTTP 503: overloaded")) and not refuses_schema(EndpointRefused("x", 401))


def test_reply_format_json_refused_everywhere_is_one_line(night, fake):
    fake.refuse_schema = True
    p = LLMProposer(options(fake, reply_format="json"))
    with pytest.raises(OvernightError, match="refused structured replies .* use --reply-format auto or text"):
        p.propose(night.ctx())
    p.close()


def test_a_json_reply_with_raw_newlines_in_its_strings_is_read_as_meant():
    from overnight.proposers.llm_reply import parse_reply

    edit = '{"path": "train.py", "search": "A = 1\nB = 2", "replace": "A = 2\tB"}'  # raw control characters
    text = '{"description": "two lines", "edits": [' + edit + "]}"
    description, (block,) = parse_reply(text)
    assert description == "two lines" and block.search == "A = 1\nB = 2" and block.replace == "A = 2\tB"
