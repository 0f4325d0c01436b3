"""The web UI: a Starlette app of read-only pages over one store.

Pages (stable URLs): ``/`` experiments, ``/experiments/<id>`` runs table,
``/compare?run=..&run=..``, ``/runs/<id>`` (``/artifacts/<path>`` previews,
``/download/<path>``, ``/audit``), ``/models``, ``/models/<name>``, ``/store``.
Every store string goes through Jinja's autoescaping; artifact bytes are served
with a sandboxing Content-Security-Policy and ``nosniff``, downloads as attachments.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import re
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casstore.exceptions import (
    CasstoreError,
    CorruptRecordError,
    IntegrityError,
    InvalidInputError,
    ObjectNotFoundError,
    StoreUnavailableError,
)
from casstore.runs import RunStore, search
from casstore.runs.records import ArtifactEntry, RunView
from casstore.ui.data import PAGE_SIZE, UIData, artifact_tree
from casstore.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

__all__ = ["create_app", "TEMPLATES", "STATIC"]

log = logging.getLogger("casstore.ui")

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

#: bytes a preview reads at most (text, CSV, JSON/YAML, images, HTML/SVG)
PREVIEW_MAX = 8 << 20
TEXT_SHOWN = 512 << 10
CSV_ROWS = 500

#: the pages' own policy: nothing from elsewhere, no inline script
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
            "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
#: artifact bytes: a sandbox (an opaque origin, no script), nothing loaded from anywhere
ARTIFACT_CSP = ("sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
                "frame-ancestors 'self'")

#: what makes the runs search box's text a filter (``metrics.acc > 0.9``) rather than words
#: to look for in run names: an entity, a key and a comparison, as MLflow's UI tells them apart
FILTER_SYNTAX = re.compile(r"\b(attributes?|attr|run|metrics?|params?|parameters?|tags?|datasets?)\.\S+\s*"
                           r"(>|<|=|!=|\blike\b|\bilike\b|\bin\b|\bnot\s+in\b|\bis\b)", re.IGNORECASE)

IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".webp": "image/webp", ".bmp": "image/bmp"}
SANDBOXED_TYPES = {".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
TEXT_NAMES = {"MLmodel", "requirements.txt", "Dockerfile", "Makefile", "LICENSE", "README"}
TEXT_SUFFIXES = {".txt", ".log", ".md", ".py", ".cfg", ".ini", ".toml", ".sh", ".r", ".sql", ".rst", ".xml",
                 ".ipynb", ".jsonl", ".yaml", ".yml", ".json", ".csv", ".tsv", ".env", ".gitignore", ".js", ".css"}


def _suffix(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def preview_kind(path: str) -> str:
    """How an artifact is previewed: image, sandboxed (HTML/SVG), csv, json, yaml, text or none."""
    suffix, name = _suffix(path), path.rsplit("/", 1)[-1]
    if suffix in IMAGE_TYPES:
        return "image"
    if suffix in SANDBOXED_TYPES:
        return "sandboxed"
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml") or name == "MLmodel":
        return "yaml"
    if suffix in TEXT_SUFFIXES or name in TEXT_NAMES:
        return "text"
    return "unknown"


# ---- helpers for templates -----------------------------------------------------------------


def fmt_time(ms: int | None) -> str:
    if not ms:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def fmt_duration(view: RunView) -> str:
    if not view.end_time or not view.start_time:
        return "-"
    s = max(0.0, (view.end_time - view.start_time) / 1000)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m {int(s % 60)}s"
    return f"{int(s // 3600)}h {int(s % 3600 // 60)}m"


def human_size(n: float | None) -> str:
    if n is None:
        return "-"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def fmt_num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def ident(entity: str, key: str) -> str:
    """A search identifier for a column, quoted with backticks where the key needs it."""
    return str(search.OrderKey(entity, key)).rsplit(" ", 1)[0]


def linkify(value: str) -> Markup:
    """A value as escaped text, made a link only when it is an http(s) URL (never ``javascript:``)."""
    text = str(value)
    if (text.startswith("http://") or text.startswith("https://")) and not any(c.isspace() for c in text):
        return Markup('<a href="{0}" rel="noopener noreferrer nofollow">{0}</a>').format(text)
    return Markup(escape(text))


def schema_rows(text: Any) -> list[tuple[str, str, str]] | None:
    """A signature's schema (MLflow's JSON string) as rows of name, type and a note (shape,
    optional, default), as MLflow's UI tables it; None if it is not such a schema."""
    try:
        items = json.loads(text) if isinstance(text, str) else text
    except ValueError:
        return None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return None
    rows = []
    for i, item in enumerate(items):
        name = str(item.get("name", "")) or ("-" if len(items) == 1 else f"({i})")
        if isinstance(item.get("tensor-spec"), dict):
            spec = item["tensor-spec"]
            rows.append((name, f"tensor of {spec.get('dtype')}", f"shape {spec.get('shape')}"))
        elif "default" in item:  # a param
            note = f"default {json.dumps(item.get('default'))}" + (f", shape {item['shape']}" if item.get("shape") else "")
            rows.append((name, str(item.get("type", item.get("dtype", ""))), note))
        else:
            rows.append((name, str(item.get("type", "")), "" if item.get("required", True) else "optional"))
    return rows


def _asset_hashes() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC.iterdir() if p.is_file()}


# ---- middleware ----------------------------------------------------------------------------


class SecurityHeaders:
    """Adds the pages' CSP, ``nosniff``, framing and referrer rules to every response that
    does not set its own policy (artifact bytes set theirs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                         (b"cross-origin-opener-policy", b"same-origin")]
                if b"content-security-policy" not in names:
                    extra += [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"SAMEORIGIN")]
                headers += [h for h in extra if h[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ImmutableStatic(StaticFiles):
    """Package static files; a URL carrying the file's content hash is cached for a year."""

    def __init__(self, hashes: dict[str, str]) -> None:
        super().__init__(directory=str(STATIC), follow_symlink=False)
        self.hashes = hashes

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        query = scope.get("query_string", b"").decode()
        if response.status_code == 200 and self.hashes.get(path) and query == f"v={self.hashes[path]}":
            response.headers["cache-control"] = "public, max-age=31536000, immutable"
        return response


# ---- the app -------------------------------------------------------------------------------


def create_app(
    runs: RunStore,
    *,
    allowed_hosts: list[str] | None = None,
    warm: bool = False,
) -> Starlette:
    """The UI over ``runs``. ``allowed_hosts``: the Host names to answer (loopback names when
    bound to loopback, so a page elsewhere cannot reach it through DNS rebinding); ``warm``:
    bring the search index up to date in the background as the server starts."""
    data = UIData(runs)
    hashes = _asset_hashes()
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(time=fmt_time, size=human_size, num=fmt_num, linkify=linkify, duration=fmt_duration,
                       schema_rows=schema_rows)
    env.globals.update(preview_kind=preview_kind, store_url=data.url, ident=ident)

    def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        def url(route: str, query: dict[str, Any] | list[tuple[str, Any]] | None = None, **params: Any) -> str:
            u = str(request.url_for(route, **params).path)
            if query:
                items = query.items() if isinstance(query, dict) else query
                u += "?" + urlencode([(k, v) for k, v in items if v not in (None, "", False)], doseq=True)
            return u

        def static(name: str) -> str:
            return f"{url('static', path=name)}?v={hashes.get(name, '')}"

        html = env.get_template(name).render(request=request, url=url, static=static, **ctx)
        return HTMLResponse(html, status_code=status)

    def error_page(request: Request, status: int, title: str, message: str) -> Response:
        if request.url.path.startswith(str(request.scope.get("root_path", "")) + "/api/"):
            return JSONResponse({"error": title, "message": message}, status_code=status)
        return render(request, "error.html", status, title=title, message=message)

    async def on_casstore_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ObjectNotFoundError):
            return error_page(request, 404, "Not found", str(exc))
        if isinstance(exc, (IntegrityError, CorruptRecordError)):
            log.error("damaged store content at %s: %s", request.url.path, exc)
            return error_page(request, 500, "The store is damaged",
                              f"{exc}. Nothing of it was shown. Run `casstore verify --all` to find every damaged object.")
        if isinstance(exc, InvalidInputError):
            return error_page(request, 400, "Bad request", str(exc))
        if isinstance(exc, StoreUnavailableError):
            return error_page(request, 503, "The store cannot be reached", str(exc))
        return error_page(request, 500, "Error", str(exc))

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error_page(request, 404, "Not found", f"there is no page at {request.url.path}")
        return error_page(request, exc.status_code, "Error", str(exc.detail))

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return error_page(request, 500, "Unexpected error", f"{type(exc).__name__}: {exc} (see the server's log)")

    # ---- pages --------------------------------------------------------------------------

    def index(request: Request) -> Response:
        models, skipped_models = data.models()
        experiments, damaged_experiments = data.experiments()
        # deleted experiments are hidden, as MLflow's UI hides them, unless asked for
        show_deleted = request.query_params.get("deleted") == "1"
        n_deleted = sum(1 for exp, _ in experiments if exp.lifecycle_stage == "deleted")
        if not show_deleted:
            experiments = [(exp, n) for exp, n in experiments if exp.lifecycle_stage != "deleted"]
        return render(request, "index.html", experiments=experiments, damaged_experiments=damaged_experiments,
                      models=models, skipped_models=skipped_models, show_deleted=show_deleted, n_deleted=n_deleted)

    def experiment(request: Request) -> Response:
        exp = data.experiment(request.path_params["exp_id"])
        q = request.query_params
        filter_string = q.get("filter", "")
        order = q.get("order", "")
        show_deleted = q.get("deleted") == "1"
        hidden = [c for c in q.get("hide", "").split(",") if c]
        try:
            size = int(q.get("size", PAGE_SIZE))
        except ValueError:
            size = PAGE_SIZE
        error = None
        name_search = _name_search(filter_string)
        query = str(search.Comparison("attributes", "run_name", "ILIKE", f"%{name_search}%")) if name_search else filter_string
        try:
            page = data.search(exp.experiment_id, query, order or None, deleted=show_deleted,
                               page_size=size, token=q.get("page") or None)
        except InvalidInputError as e:
            error = str(e)
            page = data.search(exp.experiment_id, "", None, deleted=show_deleted, page_size=size)
            page.runs, page.total, page.next_token = [], 0, None
        state = {"filter": filter_string, "order": order, "deleted": "1" if show_deleted else "",
                 "hide": ",".join(hidden), "size": "" if size == PAGE_SIZE else str(size)}
        parents = data.run_names([r.tags[MLFLOW_PARENT_RUN_ID] for r in page.runs if r.tags.get(MLFLOW_PARENT_RUN_ID)])
        return render(request, "experiment.html", exp=exp, page=page, error=error, state=state, hidden=set(hidden),
                      first_page=not q.get("page"), name_search=name_search, parents=parents,
                      has_parents=any(r.tags.get(MLFLOW_PARENT_RUN_ID) for r in page.runs))

    def run_page(request: Request) -> Response:
        view = data.run(request.path_params["run_id"])
        from casstore.cli.audit import _tag_groups

        code, env_tags, other = _tag_groups(view.tags)
        histories = {k: len(s) for k, s in sorted(data.run_series(view.run_id).items())}
        parent, parent_id, children = data.family(view)
        return render(request, "run.html", run=view, exp_name=data.experiment_name(view.experiment_id),
                      parent=parent, parent_id=parent_id, children=children, parent_tag=MLFLOW_PARENT_RUN_ID,
                      child_metrics=sorted({k for c in children.runs for k in c.metrics})[:6],
                      root=artifact_tree(view.artifacts), code=code, env_tags=env_tags, other=other,
                      histories=histories, total_size=sum(a.size for a in view.artifacts.values()),
                      charted=[k for k in sorted(view.metrics) if histories.get(k, 0) > 1])

    def artifact_page(request: Request) -> Response:
        view = data.run(request.path_params["run_id"])
        entry = data.artifact(view, request.path_params["path"])
        kind = preview_kind(entry.path)
        ctx: dict[str, Any] = {"run": view, "exp_name": data.experiment_name(view.experiment_id), "entry": entry,
                               "kind": kind, "too_large": entry.size > PREVIEW_MAX}
        if kind in ("text", "json", "yaml", "csv", "unknown") and not ctx["too_large"]:
            content = data.read_artifact(view, entry, PREVIEW_MAX)
            if kind == "unknown":
                kind = "text" if b"\0" not in content[:8192] and _is_utf8(content[:8192]) else "binary"
            ctx["kind"] = kind
            if kind != "binary":
                text = content.decode("utf-8", errors="replace")
                ctx["truncated"] = len(text) > TEXT_SHOWN
                if kind == "json":
                    try:
                        parsed = json.loads(text)
                        text = json.dumps(parsed, indent=2, ensure_ascii=False)
                    except ValueError:
                        ctx["kind"] = "text"
                    else:
                        table = _table_rows(parsed)
                        if table is not None:  # what log_table writes: shown as a table, as MLflow's UI does
                            ctx["kind"], (ctx["rows"], ctx["more_rows"]) = "csv", table
                if kind == "csv":
                    ctx["rows"], ctx["more_rows"] = _csv_rows(text, "\t" if entry.path.endswith(".tsv") else ",")
                ctx["text"] = text[:TEXT_SHOWN]
        return render(request, "artifact.html", **ctx)

    def logged_model(request: Request) -> Response:
        view = data.run(request.path_params["run_id"])
        info = data.logged_model(view, request.path_params["name"])
        return render(request, "logged_model.html", run=view, exp_name=data.experiment_name(view.experiment_id), **info)

    def raw(request: Request) -> Response:
        """An artifact's bytes for display in a page (an image, or HTML/SVG in a sandboxed frame):
        read whole and verified before a byte is sent, under a sandboxing policy."""
        view = data.run(request.path_params["run_id"])
        entry = data.artifact(view, request.path_params["path"])
        suffix = _suffix(entry.path)
        media = IMAGE_TYPES.get(suffix) or SANDBOXED_TYPES.get(suffix) or "text/plain; charset=utf-8"
        content = data.read_artifact(view, entry, PREVIEW_MAX)
        return Response(content, media_type=media, headers={
            "content-security-policy": ARTIFACT_CSP, "x-content-type-options": "nosniff",
            "cache-control": "private, max-age=3600" if view.sealed else "no-store",
            "x-casstore-blake3": entry.digest,
        })

    def download(request: Request) -> Response:
        view = data.run(request.path_params["run_id"])
        path = request.path_params.get("path", "")
        if path and path.strip("/") in view.artifacts:
            entry = data.artifact(view, path)
            return _file_download(data, view, entry)
        entries = data.artifacts_under(view, path)
        base = path.strip("/")
        name = (base.rsplit("/", 1)[-1] if base else view.run_id[:12]) + ".zip"
        prefix = base + "/" if base else ""
        chunks = _zip_stream(data, view, entries, prefix)
        first = next(chunks, b"")  # the first file is read (and verified) before the response starts
        return StreamingResponse(_prepend(first, chunks), media_type="application/zip",
                                 headers=_attachment_headers(name))

    def audit(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        report = data.audit(run_id)
        from casstore.maintenance.verify import describe_affected

        return render(request, "audit.html", a=report, describe=describe_affected)

    def compare(request: Request) -> Response:
        ids = list(dict.fromkeys(r for r in request.query_params.getlist("run") if r))
        if len(ids) < 2:
            raise InvalidInputError("compare needs at least two runs: tick them in a runs table, or give ?run=<id>&run=<id>")
        views = [data.run(r) for r in ids]
        a = request.query_params.get("a") or ids[0]
        b = request.query_params.get("b") or ids[1]
        diff = data.diff(a, b)
        param_keys = sorted({k for v in views for k in v.params})
        metric_keys = sorted({k for v in views for k in v.metrics})
        scatter = [{"run_id": v.run_id, "name": v.run_name or v.run_id[:8], "params": v.params, "metrics": v.metrics}
                   for v in views]
        return render(request, "compare.html", runs=views, param_keys=param_keys, metric_keys=metric_keys,
                      diff=diff, a=a, b=b, scatter=scatter, ids=ids)

    def models(request: Request) -> Response:
        models, skipped_models = data.models()
        return render(request, "models.html", models=models, skipped_models=skipped_models)

    def model(request: Request) -> Response:
        info = data.model(request.path_params["name"])
        return render(request, "model.html", **info)

    def store(request: Request) -> Response:
        du, gc = data.store_figures()
        return render(request, "store.html", du=du.value, du_at=du.at, gc=gc.value, gc_at=gc.at,
                      pending=du.pending or gc.pending, jobs=data.jobs())

    async def start_verify(request: Request) -> Response:
        _same_origin(request)
        form = parse_qs((await request.body()).decode("utf-8", errors="replace"))
        run_id = (form.get("run") or [""])[0].strip() or None
        from starlette.concurrency import run_in_threadpool

        job = await run_in_threadpool(data.start_verify, run_id)
        return RedirectResponse(request.url_for("verify_job", job_id=job.id).path, status_code=303)

    def verify_job(request: Request) -> Response:
        job = data.job(request.path_params["job_id"])
        from casstore.cli.maintenance import unchecked_note, verify_outcome
        from casstore.maintenance.verify import describe_affected

        return render(request, "verify.html", job=job, describe=describe_affected, outcome=verify_outcome,
                      unchecked_note=unchecked_note)

    # ---- JSON ---------------------------------------------------------------------------

    def api_job(request: Request) -> Response:
        return JSONResponse(data.job(request.path_params["job_id"]).to_dict())

    def api_metrics(request: Request) -> Response:
        """``?run=<id>&run=<id>&key=<metric>&x=step|time``: each run's series, downsampled."""
        q = request.query_params
        key = q.get("key", "")
        x = q.get("x", "step")
        out = []
        for run_id in dict.fromkeys(q.getlist("run")):
            try:
                s = data.series(run_id, key)
            except ObjectNotFoundError:
                out.append({"run_id": run_id, "key": key, "missing": True, "xs": [], "ys": []})
                continue
            out.append(s.downsampled(x))
        return JSONResponse({"key": key, "x": x, "series": out})

    def api_history(request: Request) -> Response:
        """One run's full history of a metric, as CSV (step, timestamp, value)."""
        q = request.query_params
        s = data.series(q.get("run", ""), q.get("key", ""))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["step", "timestamp", "value"])
        for st, t, v in zip(s.steps, s.times, s.values):
            w.writerow([int(st), int(t), repr(v)])
        name = f"{s.run_id[:12]}-{s.key.replace('/', '_')}.csv"
        return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers=_attachment_headers(name))

    routes = [
        Route("/", index, name="index"),
        Route("/experiments/{exp_id}", experiment, name="experiment"),
        Route("/runs/{run_id}", run_page, name="run"),
        Route("/runs/{run_id}/artifacts/{path:path}", artifact_page, name="artifact"),
        Route("/runs/{run_id}/raw/{path:path}", raw, name="raw"),
        Route("/runs/{run_id}/models/{name:path}", logged_model, name="logged_model"),
        Route("/runs/{run_id}/download", download, name="download_all"),
        Route("/runs/{run_id}/download/{path:path}", download, name="download"),
        Route("/runs/{run_id}/audit", audit, name="audit"),
        Route("/compare", compare, name="compare"),
        Route("/models", models, name="models"),
        Route("/models/{name:path}", model, name="model"),
        Route("/store", store, name="store"),
        Route("/store/verify", start_verify, methods=["POST"], name="start_verify"),
        Route("/store/verify/{job_id}", verify_job, name="verify_job"),
        Route("/api/jobs/{job_id}", api_job, name="api_job"),
        Route("/api/metrics", api_metrics, name="api_metrics"),
        Route("/api/metric-history", api_history, name="api_history"),
        Mount("/static", app=ImmutableStatic(hashes), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=_warm, args=(data,), name="casstore-ui-warm", daemon=True).start()
        yield

    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={CasstoreError: on_casstore_error, HTTPException: on_http_error, Exception: on_unexpected},
        lifespan=lifespan,
    )
    app.state.data = data
    return app


def _warm(data: UIData) -> None:
    try:
        data.warm()
        log.info("search index up to date")
    except CasstoreError as e:
        log.warning("could not read every experiment's runs ahead: %s", e)


def _name_search(text: str) -> str | None:
    """The words to look for in run names when the runs search box holds words rather than a
    filter (as MLflow's runs search box takes them): text that does not parse as a filter
    and has no ``<entity>.<key> <op>`` in it. None for a filter, valid or not (a filter
    that does not parse gets the parser's message)."""
    words = text.strip()
    if not words or FILTER_SYNTAX.search(words):
        return None
    try:
        search.parse_filter(words)
    except InvalidInputError:
        return words
    return None


def _same_origin(request: Request) -> None:
    """A form post must come from this UI's own pages (no cross-site request starts work here)."""
    origin = request.headers.get("origin")
    if origin and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise HTTPException(403, f"a request from {origin} may not start work on this server")


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return e.start > len(data) - 4  # a character cut at the end of the sample
    return True


def _table_rows(parsed: Any) -> tuple[list[list[str]], bool] | None:
    """The header and rows of a table ``log_table`` wrote (``{"columns": [...], "data": [[...], ...]}``),
    as the CSV preview shows them; None for any other JSON."""
    if not (isinstance(parsed, dict) and set(parsed) == {"columns", "data"} and isinstance(parsed["columns"], list)
            and isinstance(parsed["data"], list) and all(isinstance(r, list) for r in parsed["data"])):
        return None

    def cell(v: Any) -> str:
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)

    rows = [[cell(c) for c in parsed["columns"]]] + [[cell(v) for v in r] for r in parsed["data"][:CSV_ROWS]]
    return rows, len(parsed["data"]) > CSV_ROWS


def _csv_rows(text: str, delimiter: str) -> tuple[list[list[str]], bool]:
    rows: list[list[str]] = []
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    try:
        for row in reader:
            if len(rows) > CSV_ROWS:
                return rows[:CSV_ROWS + 1], True
            rows.append(row)
    except csv.Error:
        pass
    return rows, False


def _attachment_headers(name: str) -> dict[str, str]:
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in name) or "download"
    return {
        "content-disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}",
        "x-content-type-options": "nosniff",
        "content-security-policy": ARTIFACT_CSP,
        "cache-control": "no-store",
    }


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


def _file_download(data: UIData, view: RunView, entry: ArtifactEntry) -> Response:
    """The file, streamed as it is verified: each chunk is checked before it is sent, the
    first before the response starts (so a damaged file gives an error page); damage
    found later cuts the response short, which the client sees as a failed download."""
    chunks = data.artifact_chunks(view, entry)
    first = next(chunks, b"")
    name = entry.path.rsplit("/", 1)[-1]
    headers = _attachment_headers(name)
    headers.update({"content-length": str(entry.size), "x-casstore-blake3": entry.digest})
    return StreamingResponse(_prepend(bytes(first), (bytes(c) for c in chunks)), media_type="application/octet-stream",
                             headers=headers)


class _Sink(io.RawIOBase):
    """Collects what ``zipfile`` writes, for the stream to take away."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.parts.append(data)
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts = []
        return out


def _zip_stream(data: UIData, view: RunView, entries: list[ArtifactEntry], prefix: str) -> Iterator[bytes]:
    """A zip of the artifacts, written as their chunks are read and verified."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for entry in entries:
            info = zipfile.ZipInfo(entry.path[len(prefix):], date_time=_zip_time(entry.logged_at or view.start_time))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = entry.size
            with zf.open(info, "w", force_zip64=entry.size >= 1 << 31) as out:
                for chunk in data.artifact_chunks(view, entry):
                    out.write(chunk)
                    if sink.pos and sink.parts:
                        yield sink.take()
    tail = sink.take()
    if tail:
        yield tail


def _zip_time(ms: int) -> tuple[int, int, int, int, int, int]:
    t = time.gmtime(max(ms / 1000, 315532800))  # zip cannot say before 1980
    return (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)

