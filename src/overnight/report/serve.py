"""`overnight serve`: report.html, live, from the journal a running night is writing.

Read-only by construction: the journal is opened with SQLite's mode=ro (Journal.reader), the
handler answers GET and HEAD only (anything else is 405), and no endpoint writes a file. The
page is rendered again only when the journal changed (SQLite's data_version counts commits by
other connections), so a browser polling `state` every two seconds costs one tiny query.

Endpoints: `/` the page (report.html with data-live=1), `/state` {"version", "tag",
"experiments", "finished"} for page.js's poll, `/status.json` the `status --json` object.

Bound to 127.0.0.1 by default. On a loopback address a request must name a loopback host
(the Host header): a web page elsewhere cannot read the night through DNS rebinding. The
page's Content-Security-Policy lets it contact nothing but this server. What it does not
protect: anyone who can reach a non-loopback --host can read every diff and log.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from overnight.errors import OvernightError
from overnight.journal import Journal
from overnight.night.tags import resolve_tag
from overnight.report import page_data
from overnight.report.html import render
from overnight.report.status import status_dict
from overnight.task import TaskSpec
from overnight.task_load import load_task

LOOPBACK_NAMES = ("localhost",)


class NightSite:
    """The journal, read-only, and the page rendered from it, cached per journal version."""

    def __init__(self, root: Path, journal_path: Path, tag: str | None):
        self.root, self.wanted = root, tag
        self.journal = Journal.reader(journal_path)
        self.lock = threading.Lock()  # one sqlite connection: one reader at a time
        self._seen: int | None = None
        self.generation = 0
        self._page: tuple[int, str] | None = None
        self.tag = self._resolve()

    def _resolve(self) -> str:
        tag = resolve_tag(self.journal, self.wanted)
        if self.journal.tag_info(tag) is None:
            known = ", ".join(self.journal.tags()) or "none"
            raise OvernightError(f"no run tagged {tag!r} — known tags: {known}")
        return tag

    def _task(self) -> TaskSpec:
        budget = ((self.journal.tag_info(self.tag) or {}).get("config") or {}).get("budget")
        return load_task(self.root).with_budget(budget)

    def version(self) -> int:
        """A number that grows whenever another process committed to the journal."""
        with self.lock:
            seen = self.journal.data_version()
            if seen != self._seen:
                self._seen, self.generation = seen, self.generation + 1
                if self.wanted is None:  # following the latest night: a new one may have started
                    self.tag = self._resolve()
            return self.generation

    def state(self) -> dict:
        v = self.version()
        with self.lock:
            history = self.journal.experiments(self.tag)
        return {
            "version": v,
            "tag": self.tag,
            "experiments": len(history),
            "finished": sum(e.status.final for e in history),
        }

    def page(self) -> str:
        v = self.version()
        with self.lock:
            if self._page is None or self._page[0] != v:
                page = page_data.build(self.journal, self.tag, self._task(), self.root / ".overnight", live=True)
                page.version = str(v)
                self._page = (v, render(page))
            return self._page[1]

    def status(self) -> dict:
        with self.lock:
            return status_dict(self.journal, self.tag, self._task().metric)


class Handler(BaseHTTPRequestHandler):
    site: NightSite  # set on a subclass by serve()
    loopback: bool
    server_version = "overnight-serve"

    def log_message(self, format, *args) -> None:  # a night's server stays quiet
        return

    def _host_ok(self) -> bool:
        if not self.loopback:
            return True
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def _send(self, code: int, body: bytes, kind: str, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_GET(self, head: bool = False) -> None:
        if not self._host_ok():
            return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain", head)
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                return self._send(200, self.site.page().encode(), "text/html; charset=utf-8", head)
            if path == "/state":
                return self._send(200, json.dumps(self.site.state()).encode(), "application/json", head)
            if path == "/status.json":
                body = json.dumps(self.site.status(), default=str).encode()
                return self._send(200, body, "application/json", head)
        except OvernightError as exc:  # e.g. the tag vanished with a replaced journal
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc}\n".encode(), "text/plain", head)
        self._send(HTTPStatus.NOT_FOUND, b"not found: / /state /status.json\n", "text/plain", head)

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse


def make_server(site: NightSite, host: str, port: int) -> ThreadingHTTPServer:
    try:
        loopback = host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    handler = type("NightHandler", (Handler,), {"site": site, "loopback": loopback})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise OvernightError(
            f"cannot listen on {host}:{port} ({exc.strerror}) — pass --port N (0 picks a free one)"
        ) from None
    server.daemon_threads = True
    return server
