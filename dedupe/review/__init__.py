"""The analyst review app: a local web app over the state database (``dedupe review CONFIG``).

``create_app`` (in ``dedupe.review.app``) builds the ASGI app; ``serve`` runs it with uvicorn.
Server-rendered Jinja2 pages, htmx for live filtering and in-place form posts, no build step.
See docs/review.md.
"""

from __future__ import annotations

from pathlib import Path

from dedupe.review.security import is_loopback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class ReviewError(Exception):
    """A problem starting the review app (one line, for the command line)."""


def check_binding(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token: anyone who can reach it could rewrite decisions."""
    if not is_loopback(host) and not token:
        raise ReviewError(f"refusing to serve on {host} without a token: anyone who can reach it could "
                          f"change decisions; pass --token (or bind to 127.0.0.1)")


def serve(config_path: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, log=print) -> None:
    """Serve the review app until interrupted. Raises ``ReviewError`` (bad binding) and
    ``dedupe.config.ConfigError`` (bad config) before binding anything."""
    check_binding(host, token)
    import uvicorn

    from dedupe.review.app import create_app

    app = create_app(Path(config_path), token=token)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    log(f"review app for {app.state.review.config.name} at {url}" + (f"?token={token}" if token else ""))
    log(f"state database: {app.state.review.config.state} (opened per request; runs can proceed)")
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)


__all__ = ["serve", "check_binding", "ReviewError", "DEFAULT_HOST", "DEFAULT_PORT"]
