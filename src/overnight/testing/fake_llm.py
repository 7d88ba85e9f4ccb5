"""A real HTTP server on 127.0.0.1 speaking OpenAI Chat Completions and Anthropic Messages.

Scripted per test: `push(...)` queues what the next request gets (a reply, or a fault on
demand); when the queue is empty `default(request)` answers. Every request body is kept in
`requests`, so tests read exactly what the SDK clients sent. As a llama.cpp server it answers
GET /props with `props`, as Ollama POST /api/show with `show`, when a test sets them (404
otherwise, as a hosted API does); `refuse_schema` answers a request with a response_format or
tools with HTTP 400, as a server without structured output does. `options` points the real SDK
clients at it (small timeouts); GELU_REPLY is a good edit of the toy task.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from overnight.proposers.options import ProposerOptions

# What would let a test reach a real API: removed from the environment (fixtures.no_real_keys),
# so the clients only know the loopback server (which gets the dummy local key).
REAL_ENDPOINT_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_AUTH_TOKEN",
    "OVERNIGHT_MODEL",
)

# The toy task's line for ACTIVATION, and a reply that switches it to the better gelu.
RELU = 'ACTIVATION = "relu"  # relu | gelu | silu'
GELU_REPLY = f"""Switch the activation to gelu: smoother gradients should lower the loss.

train.py
<<<<<<< SEARCH
{RELU}
=======
{RELU.replace('"relu"', '"gelu"')}
>>>>>>> REPLACE
"""


def edit_reply(old: str, new: str, description: str = "A change.", path: str = "train.py") -> str:
    return f"{description}\n\n{path}\n<<<<<<< SEARCH\n{old}\n=======\n{new}\n>>>>>>> REPLACE\n"


def reply(text: str, tokens_in: int = 1000, tokens_out: int = 50) -> dict:
    return {"text": text, "usage": (tokens_in, tokens_out)}


def json_reply(
    description: str, *edits: tuple[str, str], path: str = "train.py", usage: tuple[int, int] = (1000, 50)
) -> dict:
    """A structured reply: as a forced tool use (Anthropic) or JSON text (OpenAI)."""
    body = {"description": description, "edits": [{"path": path, "search": a, "replace": b} for a, b in edits]}
    return {"text": json.dumps(body), "tool": body, "usage": usage}


def fault(kind: str, **kw) -> dict:
    """kind: status (code=...), malformed, empty, sleep (seconds=...), drop."""
    return {"fault": kind, **kw}


def options(fake: FakeLLM, provider: str = "openai", **kw) -> ProposerOptions:
    """Proposer options that send the real SDK client of `provider` to `fake`."""
    url = fake.anthropic_url if provider == "anthropic" else fake.openai_url
    base = dict(model="any", provider=provider, base_url=url, request_timeout=2.0, retries=2, backoff=0.01)
    return ProposerOptions(**{**base, **kw})


class FakeLLM:
    def __init__(self):
        self.script: list[dict] = []
        self.requests: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        self.default = lambda request: fault("status", code=500)
        self.props: dict | None = None  # GET /props (llama.cpp)
        self.show: dict | None = None  # POST /api/show (Ollama)
        self.probes: list[str] = []  # the paths of those requests
        self.refuse_schema = False
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def push(self, *actions: dict) -> None:
        with self.lock:
            self.script.extend(actions)

    def next_action(self, request: dict) -> dict:
        with self.lock:
            self.requests.append(request)
            if self.script:
                return self.script.pop(0)
        action = self.default(request)
        return reply(action) if isinstance(action, str) else action

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.fake.probes.append(self.path)
        if self.path.rstrip("/").endswith("/props") and self.fake.props is not None:
            return self._send(200, json.dumps(self.fake.props).encode())
        self._send(404, b'{"error": "not found"}')

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        anthropic = self.path.rstrip("/").endswith("/messages")
        if not anthropic and not self.path.rstrip("/").endswith("/chat/completions"):
            self.fake.probes.append(self.path)
            if self.path.rstrip("/").endswith("/api/show") and self.fake.show is not None:
                return self._send(200, json.dumps(self.fake.show).encode())
            return self._send(404, b'{"error": "not found"}')
        if self.fake.refuse_schema and ("response_format" in body or "tools" in body):
            self.fake.requests.append(body)
            err = {"type": "error", "error": {"type": "invalid_request_error", "message": "no response_format"}}
            return self._send(400, json.dumps(err).encode())
        self.fake.paths.append(self.path)
        self.fake.headers.append(dict(self.headers))
        action = self.fake.next_action(body)
        kind = action.get("fault")
        if kind == "drop":
            self.close_connection = True
            self.connection.close()
            return
        if kind == "sleep":
            time.sleep(action["seconds"])
            action = reply("late")
            kind = None
        if kind == "status":
            code = action["code"]
            err = {"type": "error", "error": {"type": "api_error", "message": f"scripted {code}"}}
            return self._send(code, json.dumps(err).encode())
        if kind == "malformed":
            return self._send(200, b'{"id": "x", "choices": [ {"message": ')
        text = "" if kind == "empty" else action["text"]
        tin, tout = action.get("usage") or (0, 0)
        model = body.get("model", "any")
        if anthropic:
            content = [{"type": "text", "text": text}] if text else []
            if action.get("tool") is not None and "tools" in body:
                content = [{"type": "tool_use", "id": "toolu_1", "name": "propose_edit", "input": action["tool"]}]
            out = {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": tin, "output_tokens": tout},
            }
        else:
            out = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
            }
            if action.get("usage") is None:
                del out["usage"]
        self._send(200, json.dumps(out).encode())

    def _send(self, code: int, data: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
