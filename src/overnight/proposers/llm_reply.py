"""Structured replies: the edit asked for as one JSON object, where the server supports it.

    {"description": "what and why", "edits": [{"path": "train.py", "search": "...", "replace": "..."}]}

Asked through the OpenAI `response_format` JSON schema (llama.cpp, Ollama and vLLM constrain the
model's sampling to it; llama-cpp-python's server takes it as `json_object` with a `schema`) or
Anthropic's forced tool use (the same schema as the tool's input).
The schema names the editable files, so a path outside them cannot even be written. A server that
refuses the field gets SEARCH/REPLACE text from then on (llm.py); a reply is read as JSON when it
is JSON and as SEARCH/REPLACE blocks otherwise, so a server that ignores the field still works.
"""

from __future__ import annotations

import json
import re

from overnight.proposers.edits import Block, EditError, describe, parse

TOOL_NAME = "propose_edit"
# The ways an OpenAI-compatible server is asked for a JSON schema, in the order tried: OpenAI's
# own (llama.cpp's llama-server, Ollama, vLLM, hosted OpenAI), then llama-cpp-python's server's
# (`json_object` with a `schema`, the only one its request model accepts).
FLAVOURS = ("json_schema", "json_object")


def refuses_schema(exc: Exception) -> bool:
    """Whether an endpoint error is a server refusing the structured reply: a 400 or 422, or an
    error that names the field (llama-cpp-python answers one with a 500 naming response_format)."""
    text = str(exc).lower()
    return getattr(exc, "code", None) in (400, 422) or "response_format" in text or "json_schema" in text


_FENCED = re.compile(r"^\s*```(?:json)?\s*\n(.*)\n\s*```\s*$", re.DOTALL)


def schema(editable: tuple[str, ...]) -> dict:
    """The JSON schema of a reply: a description and at least one edit of an editable file."""
    edit = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "enum": list(editable)},
            "search": {"type": "string"},
            "replace": {"type": "string"},
        },
        "required": ["path", "search", "replace"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "description": {"type": "string"},
            "edits": {"type": "array", "items": edit, "minItems": 1},
        },
        "required": ["description", "edits"],
        "additionalProperties": False,
    }


def parse_reply(text: str) -> tuple[str, list[Block]]:
    """(description, blocks) from a JSON reply, or from SEARCH/REPLACE text when it is not JSON."""
    body = text.strip()
    fenced = _FENCED.match(body)
    if fenced:
        body = fenced.group(1).strip()
    if not body.startswith("{"):
        return parse(text)
    try:
        data = json.loads(body, strict=False)  # a raw newline or tab inside a string: what the model meant
    except ValueError as exc:
        raise EditError(f"the reply is not valid JSON ({exc}) — reply with one JSON object as described") from None
    if not isinstance(data, dict) or not isinstance(data.get("edits"), list) or not data["edits"]:
        raise EditError('the JSON object needs "description" and a non-empty "edits" list')
    blocks = []
    for k, e in enumerate(data["edits"]):
        if not isinstance(e, dict) or not all(isinstance(e.get(f), str) for f in ("path", "search", "replace")):
            raise EditError(f'edit {k + 1}: each edit needs string "path", "search" and "replace"')
        path = e["path"].strip().lstrip("/")
        blocks.append(Block(path[2:] if path.startswith("./") else path, _lines(e["search"]), _lines(e["replace"])))
    return describe(str(data.get("description") or "")), blocks


def _lines(text: str) -> str:
    """A JSON string's text as a block's lines (no trailing newline, as a block has none)."""
    text = text.replace("\r\n", "\n")
    return text[:-1] if text.endswith("\n") else text
