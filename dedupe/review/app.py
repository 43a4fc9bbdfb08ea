"""Routes of the review app. Pages are rendered on the server; htmx only swaps them in place.

    GET  /                          the queue (filters: q, source, reason, min_size, max_size, status, page)
    GET  /cluster/{id}              a cluster: records, golden record, every pair and why, history
    POST /cluster/{id}              an action on it: confirm, reject, split, merge, undo
    GET  /record/{source}/{id}      redirect to the record's cluster
    GET  /decisions                 every decision, newest first, with undo
    POST /decisions/{action}/undo   undo an action
    GET  /decisions.csv             the export (as ``dedupe decisions export`` writes it)

Every form on a cluster page belongs to one ``<form>``: the reviewer name and note are typed once,
and each button says what to do in its ``op`` value (JSON naming records by their source keys, never
by run-local rids). Without JavaScript the forms still work (POST, then a 303 redirect); htmx's
``hx-boost`` only saves the page reload.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, unquote

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.background import BackgroundTask

from dedupe import decisions
from dedupe.config import Config, load_config
from dedupe.review import db, queries
from dedupe.review.security import HEADERS, TOKEN_COOKIE, Guard

HERE = Path(__file__).parent
REVIEWER_COOKIE = "dedupe_reviewer"
ACTION_LABELS = {"confirm": "confirmed the cluster", "reject_link": "rejected a link",
                 "split": "moved a record out", "merge": "merged two clusters", "import": "imported"}


@dataclass
class Review:
    """What every request needs: the config, the guard, and small caches of run files."""
    config: Config
    guard: Guard
    templates: Environment
    _model: tuple | None = None
    _report: tuple | None = None

    def _cached(self, path: Path, attr: str, loader):
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        cached = getattr(self, attr)
        if cached is None or cached[0] != stamp:
            setattr(self, attr, (stamp, loader(path)))
        return getattr(self, attr)[1]

    def model(self) -> queries.Model | None:
        return self._cached(self.config.output_dir / "model.json", "_model", queries.Model.load)

    def last_run(self) -> datetime | None:
        """When the last published run finished (decisions after it apply on the next run)."""
        def load(path: Path):
            try:
                text = json.loads(path.read_text(encoding="utf-8")).get("finished_at")
                return datetime.fromisoformat(text).replace(tzinfo=None) if text else None
            except (OSError, ValueError, TypeError):
                return None
        return self._cached(self.config.output_dir / "run_report.json", "_report", load)

    def render(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        template = self.templates.get_template(name)
        html = template.render(request=request, project=self.config.name, csrf=self.guard.csrf_token,
                               reviewer=_reviewer(request), reasons=queries.REASONS,
                               last_run=self.last_run(), **context)
        return HTMLResponse(html, status_code=status)

    def message(self, request: Request, title: str, text: str, status: int) -> HTMLResponse:
        return self.render(request, "message.html", status=status, title=title, text=text)


def _reviewer(request: Request) -> str:
    return unquote(request.cookies.get(REVIEWER_COOKIE, ""))[:80]


def _fmt_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M") if (value.hour or value.minute) else value.strftime("%Y-%m-%d")
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _fmt_time(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else ""


def _templates() -> Environment:
    # Autoescaping everywhere: every record value is untrusted text (a name may be "<script>").
    env = Environment(loader=FileSystemLoader(HERE / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["v"] = _fmt_value
    env.filters["when"] = _fmt_time
    env.filters["key"] = lambda k: f"{k[0]}:{k[1]}"
    env.filters["urlpart"] = lambda s: quote(str(s), safe="")
    env.filters["signed"] = lambda w: f"{w:+.1f}"
    env.globals["action_labels"] = ACTION_LABELS
    return env


def _require_state(con) -> None:
    missing = db.missing_tables(con)
    if missing:
        raise db.NoState(f"the state database has no {', '.join(missing)} yet: "
                         f"run `dedupe run` on this config first")


def create_app(config_path: Path, token: str | None = None) -> FastAPI:
    """The review app for one config (loaded once: restart the app after editing the config)."""
    config = load_config(config_path)
    review = Review(config=config, guard=Guard(token), templates=_templates())
    app = FastAPI(title=f"dedupe review: {config.name}", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = review
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def guard(request: Request, call_next):
        g = review.guard
        if not g.host_ok(request):
            response = Response("Host not allowed: open the app at http://127.0.0.1 (or localhost).\n",
                                status_code=400, media_type="text/plain")
        elif not g.token_ok(request):
            response = Response("This review app needs its access token: open the URL that "
                                "`dedupe review` printed (it ends in ?token=...).\n",
                                status_code=401, media_type="text/plain")
        elif g.token and "token" in request.query_params and request.method == "GET":
            # Keep the token out of the address bar and history: move it into a cookie.
            response = RedirectResponse(g.url_without_token(request), status_code=303)
            response.set_cookie(TOKEN_COOKIE, g.token, httponly=True, samesite="strict")
        else:
            response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    def guarded(request: Request, work):
        """Run ``work()`` (database access), mapping a busy or missing state DB to a clear page."""
        try:
            return work()
        except db.Busy:
            return review.message(
                request, "State database busy",
                "A dedupe run is using the state database right now. Nothing was changed; "
                "try again when the run has finished (reload this page).", 503)
        except db.NoState as e:
            return review.message(request, "No run yet", str(e), 503)

    # ---------------------------------------------------------------------------------- pages

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():
        return Response(status_code=204)  # no icon; and no 404 in every browser console

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request, q: str = "", source: str = "", reason: str = "",
                   min_size: str = "", max_size: str = "", status: str = "", page: int = 1):
        filters = queries.QueueFilters(
            q=q[:200], source=source if source in {s.name for s in config.sources} else "",
            reason=reason if reason in queries.REASONS else "",
            min_size=int(min_size) if min_size.strip().isdigit() else None,
            max_size=int(max_size) if max_size.strip().isdigit() else None,
            status=status if status in ("open", "reviewed", "all") else "", page=max(page, 1))

        def work():
            with db.connect(config.state) as con:
                _require_state(con)
                result = queries.queue(con, config, filters)
            return review.render(request, "queue.html", result=result, f=filters)
        return guarded(request, work)

    def cluster_response(request: Request, cluster_id: str, error: str | None = None, status: int = 200,
                         done: int | None = None, undone: int | None = None, all_pairs: bool = False):
        def work():
            with db.connect(config.state) as con:
                _require_state(con)
                page = queries.cluster_page(con, config, review.model(), cluster_id, all_pairs=all_pairs)
            if page is None:
                return review.message(request, "No such cluster",
                                      f"There is no cluster {cluster_id} in the last run (a run since "
                                      f"this link was made may have changed it): search for one of its "
                                      f"records in the queue.", 404)
            actions = _actions(page.history)
            flash = None
            if done is not None:
                flash = next((a for a in actions if a["action_id"] == done), None)
            return review.render(request, "cluster.html", status=status, page=page, actions=actions,
                                 flash=flash, undone=undone, error=error)
        return guarded(request, work)

    @app.get("/cluster/{cluster_id}", response_class=HTMLResponse)
    def cluster_view(request: Request, cluster_id: str, done: int | None = None, undone: int | None = None,
                     pairs: str = ""):
        return cluster_response(request, cluster_id, done=done, undone=undone, all_pairs=pairs == "all")

    @app.get("/record/{source}/{record_id:path}")
    def record_view(request: Request, source: str, record_id: str):
        def work():
            with db.connect(config.state) as con:
                row = con.execute("SELECT cluster_id FROM cluster_ids WHERE source = ? AND record_id = ?",
                                  [source, record_id]).fetchall()
            if not row:
                return review.message(request, "No such record", f"No record {source}:{record_id}.", 404)
            return RedirectResponse(f"/cluster/{quote(row[0][0], safe='')}", status_code=303)
        return guarded(request, work)

    @app.get("/decisions", response_class=HTMLResponse)
    def decisions_page(request: Request, undone: int | None = None):
        def work():
            with db.connect(config.state) as con:
                history = decisions.history(con)
                clusters = dict(_clusters_of(con, history))
            return review.render(request, "decisions.html", actions=_actions(history), clusters=clusters,
                                 undone=undone)
        return guarded(request, work)

    @app.get("/decisions.csv")
    def decisions_csv(request: Request):
        def work():
            tmp = Path(tempfile.mkdtemp(prefix="dedupe-review-")) / "analyst_decisions.csv"
            with db.connect(config.state) as con:
                decisions.export_csv(con, tmp)
            return FileResponse(tmp, media_type="text/csv", filename="analyst_decisions.csv",
                                background=BackgroundTask(_remove, tmp))
        return guarded(request, work)

    # ---------------------------------------------------------------------------------- actions

    @app.post("/cluster/{cluster_id}")
    def cluster_action(request: Request, cluster_id: str, op: str = Form(""), reviewer: str = Form(""),
                       note: str = Form(""), merge_with: str = Form(""), csrf: str = Form("")):
        problem = review.guard.cross_site_problem(request, csrf)
        if problem:
            return review.message(request, "Refused", problem, 403)
        try:
            spec = json.loads(op) if op else {}
            do = spec.get("do")
        except (ValueError, AttributeError):
            spec, do = {}, None
        reviewer, note = reviewer.strip()[:80], note.strip()[:2000]
        if do == "undo":
            return _undo(request, spec.get("action"), f"/cluster/{quote(cluster_id, safe='')}")
        if do not in ("confirm", "reject", "split", "merge"):
            return cluster_response(request, cluster_id, error="Unknown action.", status=400)
        if not reviewer:
            return cluster_response(request, cluster_id, status=400,
                                    error="Type your name in the Reviewer box first: every decision records who made it.")

        def work():
            with db.connect(config.state, write=True) as con:
                found = queries.member_rids(con, cluster_id)
                if not found:
                    return None, "This cluster no longer exists: a run has changed the clusters since the page was loaded."
                rid_of = {(s, r): rid for rid, s, r in found}
                keys = list(rid_of)
                try:
                    if do == "confirm":
                        links = [(a, b, p) for a, b, p, _s in queries.links_between(con, list(rid_of.values()))]
                        key_of = {rid: k for k, rid in rid_of.items()}
                        pairs = decisions.confirm_pairs(keys, [(key_of[a], key_of[b], p) for a, b, p in links])
                        action = "confirm"
                    elif do == "reject":
                        left, right = _key(spec.get("l")), _key(spec.get("r"))
                        if left not in rid_of or right not in rid_of:
                            return None, "Those records are no longer both in this cluster: reload the page."
                        pairs, action = [(left, right)], "reject_link"
                    elif do == "split":
                        key = _key(spec.get("key"))
                        if key not in rid_of:
                            return None, "That record is no longer in this cluster: reload the page."
                        if len(keys) < 2:
                            return None, "A single record is already on its own."
                        pairs, action = decisions.split_pairs(key, keys), "split"
                    else:
                        target = str(spec.get("with") or merge_with).strip()
                        if not target or target == cluster_id:
                            return None, "Name another cluster to merge with (its id, e.g. G0123abcd...)."
                        other = queries.member_rids(con, target)
                        if not other:
                            return None, f"There is no cluster {target}."
                        other_keys = [(s, r) for _rid, s, r in other]
                        key_of = {rid: (s, r) for rid, s, r in found + other}
                        scored = queries.scored_between(con, list(key_of))
                        pairs = decisions.merge_pairs(keys, other_keys,
                                                      [(key_of[a], key_of[b], p) for a, b, p in scored])
                        action = "merge"
                    if not pairs:
                        return None, "Nothing to record: a single record has no links to confirm."
                    return decisions.record(con, action, pairs, reviewer, note), None
                except (decisions.DecisionsError, ValueError, TypeError) as e:
                    return None, str(e)

        outcome = guarded(request, work)
        if isinstance(outcome, Response):
            return outcome
        action_id, error = outcome
        if error:
            return cluster_response(request, cluster_id, error=error, status=409)
        response = RedirectResponse(f"/cluster/{quote(cluster_id, safe='')}?done={action_id}", status_code=303)
        response.set_cookie(REVIEWER_COOKIE, quote(reviewer), max_age=365 * 24 * 3600, samesite="strict",
                            httponly=True)
        return response

    @app.post("/decisions/{action_id}/undo")
    def undo_action(request: Request, action_id: int, csrf: str = Form(""), next: str = Form("/decisions")):
        problem = review.guard.cross_site_problem(request, csrf)
        if problem:
            return review.message(request, "Refused", problem, 403)
        return _undo(request, action_id, next)

    def _undo(request: Request, action_id, back: str):
        # Only local paths: an open redirect would let a crafted form send the analyst elsewhere.
        if not back.startswith("/") or back.startswith("//"):
            back = "/decisions"
        try:
            action_id = int(action_id)
        except (TypeError, ValueError):
            return review.message(request, "Bad request", "Which action to undo?", 400)

        def work():
            with db.connect(config.state, write=True) as con:
                decisions.undo(con, action_id)
            sep = "&" if "?" in back else "?"
            return RedirectResponse(f"{back}{sep}undone={action_id}", status_code=303)
        return guarded(request, work)

    return app


def _key(value) -> tuple[str, str]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("a record is named by [source, record_id]")
    return (str(value[0]), str(value[1]))


def _actions(history: list[dict]) -> list[dict]:
    """Decision rows grouped by action, newest first."""
    grouped: dict[int, dict] = {}
    for row in history:
        a = grouped.setdefault(row["action_id"], {
            "action_id": row["action_id"], "action": row["action"], "kind": row["kind"],
            "reviewer": row["reviewer"], "note": row["note"], "created_at": row["created_at"],
            "undone_at": row["undone_at"], "pairs": []})
        a["pairs"].append(((row["source_l"], row["record_id_l"]), (row["source_r"], row["record_id_r"])))
        if row["undone_at"] is None:
            a["undone_at"] = None
    return sorted(grouped.values(), key=lambda a: (a["created_at"], a["action_id"]), reverse=True)


def _clusters_of(con, history: list[dict]):
    """(source, record_id) -> current cluster id, for the keys named in ``history``."""
    keys = sorted({(r[f"source_{s}"], r[f"record_id_{s}"]) for r in history for s in "lr"})
    if not keys:
        return []
    values = ", ".join("(?, ?)" for _ in keys)
    rows = con.execute(f"SELECT c.source, c.record_id, c.cluster_id FROM cluster_ids c "
                       f"JOIN (VALUES {values}) k(s, r) ON c.source = k.s AND c.record_id = k.r",
                       [v for k in keys for v in k]).fetchall()
    return [((s, r), cid) for s, r, cid in rows]


def _remove(path: Path) -> None:
    try:
        path.unlink()
        path.parent.rmdir()
    except OSError:
        pass


__all__ = ["create_app", "Review"]
