"""The page shell: static assets, the embedded data, the Content-Security-Policy.

Everything a report holds is someone else's text, so it reaches the page in only two ways:
HTML-escaped into the static parts (`html.escape`), or as JSON inside
`<script type="application/json">`, where `embed_json` writes `<`, `>`, `&`, U+2028 and U+2029
as `\\uXXXX` escapes so no text can close the element (`</script>`) or open a comment; the
page's script reads it with `JSON.parse` and puts it on the page with `textContent` only.
As a second line, the page carries a Content-Security-Policy that allows no fetch of any kind
(`default-src 'none'`) and runs only the one script whose hash it names, so a `<script>` that
somehow got through would still not run, and nothing is loaded from anywhere: the page works
from `file://` offline. Nothing here blocks; nothing raises for encodable data.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from functools import cache
from importlib.resources import files
from typing import Any, Final

import msgspec

__all__ = ["asset", "embed_json", "page"]

_ESCAPES: Final = (
    (b"&", b"\\u0026"),
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


@cache
def asset(name: str) -> str:
    """A file shipped beside this module (`report.js`, `page.css`), as text."""
    return files(__package__ or "orket_pipeline.cli._html").joinpath(name).read_text("utf-8")


def embed_json(data: Any) -> str:
    """`data` as JSON safe inside a `<script type="application/json">` element.

    Outside strings JSON has none of the escaped characters, and inside strings `\\uXXXX` is
    the same text to `JSON.parse`; a lone surrogate (which UTF-8 cannot hold) falls back to the
    standard library's ASCII-only encoder, which writes it as an escape.
    """
    try:
        raw = msgspec.json.encode(data)
    except UnicodeEncodeError:
        raw = json.dumps(data, ensure_ascii=True, allow_nan=False).encode()
    for old, new in _ESCAPES:
        raw = raw.replace(old, new)
    return raw.decode("utf-8", "surrogatepass")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def page(title: str, body: str, *, data: Any = None, script: str = "") -> str:
    """A whole page: `title` (escaped here), `body` (already safe HTML), the shared stylesheet,
    and, when given, `data` embedded as JSON (`#orket-data`) with the `script` that reads it."""
    css = asset("page.css")
    policy = f"default-src 'none'; style-src {_csp_hash(css)}; img-src data:"
    tail = ""
    if script:
        policy += f"; script-src {_csp_hash(script)}"
        tail = (
            f"<script type='application/json' id='orket-data'>{embed_json(data)}</script>\n"
            f"<script>{script}</script>\n"
        )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{policy}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{css}</style></head>\n"
        f"<body>\n{body}\n{tail}</body></html>\n"
    )
