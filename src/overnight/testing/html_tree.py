"""A minimal DOM from the standard library's HTMLParser, for checking pages without a browser.

`parse(text)` gives the root `Node`; `find_all` matches by tag, id and class (a subset of CSS
that the page tests need); `text` is the node's text with its descendants'. Unclosed void
elements (<meta>, <input>, <br>) are handled; a stray end tag closes up to its match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list = field(default_factory=list)  # Node or str

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    def walk(self):
        for c in self.children:
            if isinstance(c, Node):
                yield c
                yield from c.walk()

    def find_all(self, tag: str | None = None, id: str | None = None, cls: str | None = None) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag)
            and (id is None or n.attrs.get("id") == id)
            and (cls is None or cls in n.classes)
        ]

    def find(self, tag: str | None = None, id: str | None = None, cls: str | None = None) -> Node:
        found = self.find_all(tag, id, cls)
        assert found, f"no <{tag or '*'}> with id={id} class={cls}"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document")
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        self.stack[-1].children.append(data)


def parse(text: str) -> Node:
    b = _Builder()
    b.feed(text)
    b.close()
    return b.root


def panels(dom: Node) -> dict[int, Node]:
    """report.html's experiment panels by id: each shipped as the text of an inert
    <script type="text/html" class="panel-src"> (html.py), parsed here as page.js makes it."""
    out = {}
    for src in dom.find_all("script", cls="panel-src"):
        out[int(src.attrs["data-id"])] = parse(src.text).find("section", cls="panel")
    return out
