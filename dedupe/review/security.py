"""Who may use the review app, and how its POSTs are protected.

* **Loopback by default.** Without a token the app answers only requests whose ``Host`` is a
  loopback name (127.0.0.1, localhost, [::1]): a web page elsewhere cannot reach it through DNS
  rebinding (its requests would carry the attacker's host name).
* **A token for anything else.** ``serve`` refuses a non-loopback address without one. With a token,
  every request must present it: ``?token=...`` once (the app stores it in an HttpOnly, SameSite=Strict
  cookie and redirects to the same URL without it, so it does not stay in the address bar), the
  cookie, or ``Authorization: Bearer``.
* **Cross-site POSTs** fail three checks, each enough on its own: the form must carry the CSRF token
  (an HMAC of a secret made when the process starts, so a restart invalidates open forms), a
  ``Sec-Fetch-Site`` header must say ``same-origin`` (or ``none``), and an ``Origin`` header must
  name this very host. Browsers send the latter two on every POST; other clients may omit them.
* **Headers.** A strict Content-Security-Policy (scripts and styles only from the app itself, no
  inline script) makes an escaping mistake harmless; Jinja's autoescaping is the first line.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
TOKEN_COOKIE = "dedupe_review_token"

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """The host part of a Host header (``127.0.0.1:8765`` -> ``127.0.0.1``, ``[::1]:80`` -> ``::1``)."""
    return urlsplit(f"//{host_header}").hostname or ""


class Guard:
    """Per-process secrets and the checks above."""

    def __init__(self, token: str | None = None):
        self.token = token or None
        self._secret = secrets.token_bytes(32)
        self.csrf_token = hmac.new(self._secret, b"csrf", hashlib.sha256).hexdigest()

    # -- access

    def token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        offered = [request.cookies.get(TOKEN_COOKIE), request.query_params.get("token")]
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        # Any one will do: a stale cookie must not hide a correct ?token= link.
        return any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered)

    def host_ok(self, request: Request) -> bool:
        if self.token is not None:
            return True  # the token protects a non-loopback binding; any Host may be in use
        return is_loopback(host_name(request.headers.get("host", "")))

    def url_without_token(self, request: Request) -> str:
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        return request.url.path + (f"?{urlencode(rest)}" if rest else "")

    # -- cross-site requests

    def cross_site_problem(self, request: Request, form_token: str | None) -> str | None:
        """Why this POST must be refused, or None."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site})"
        origin = request.headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.netloc.lower() != request.headers.get("host", "").lower():
                return "cross-site request refused (Origin does not match this server)"
        if not form_token or not hmac.compare_digest(form_token.encode(), self.csrf_token.encode()):
            return ("this form has expired (the review app was restarted, or the request did not come "
                    "from its own page): reload the page and try again")
        return None


__all__ = ["Guard", "is_loopback", "host_name", "HEADERS", "TOKEN_COOKIE", "CSP"]
