"""Security headers on every response (pages, JSON, errors, the admin panel).

Sent from `on_response_prepare` rather than a middleware: that signal also runs for responses
no handler made (aiohttp's own 404/405/413) and for HTTPExceptions raised by handlers, so no
response leaves without them. Inline scripts run only with this response's nonce (the web chat
page's one script carries it); inline styles stay allowed (the pages use them, and a style
cannot run code). Images may be data:/blob: URLs: the chat shows the heatmap as a data: URL and
the user's own photo as a blob: URL.
"""

from __future__ import annotations

import secrets

from aiohttp import web

NONCE = web.RequestKey("csp_nonce", str)


def csp_nonce(request: web.Request) -> str:
    """This response's script nonce, made on first use (a page that has no script has none)."""
    if NONCE not in request:
        request[NONCE] = secrets.token_urlsafe(18)
    return request[NONCE]


def content_security_policy(nonce: str | None) -> str:
    scripts = f"'nonce-{nonce}'" if nonce else "'none'"
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


async def add_security_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(request.get(NONCE))
    headers["X-Frame-Options"] = "DENY"  # frame-ancestors, for browsers without CSP level 2
    headers["X-Content-Type-Options"] = "nosniff"
    # Links out (maps, sources) carry no referrer: the page's URL holds nothing they need.
    headers["Referrer-Policy"] = "no-referrer"
