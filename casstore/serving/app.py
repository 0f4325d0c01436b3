"""The scoring server's ASGI application (Starlette).

MLflow's protocol: ``GET /ping`` and ``/health`` (200 once the model is loaded, which
it is before the server listens), ``GET /version``, ``POST /invocations``. The Open
Inference Protocol beside it: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``,
``/v2/models/{name}``, ``/v2/models/{name}/ready``, ``POST /v2/models/{name}/infer``.

Every response carries the served model's digest and registry version
(:data:`~casstore.serving.model.DIGEST_HEADER`, :data:`~casstore.serving.model.VERSION_HEADER`):
a request takes the model from the slot once, on arrival, and that model answers it
and labels the answer, even if a new version is swapped in meanwhile. Parsing and
prediction run in worker threads, off the event loop; a body larger than the limit is
refused with 413 before it is read whole; a prediction that outlasts the timeout is
answered with 504.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from casstore import __version__
from casstore.serving import v2
from casstore.serving.model import ModelSlot, ServedModel
from casstore.serving.payload import ScoringError, bounded

__all__ = ["create_app", "DEFAULT_MAX_BODY", "DEFAULT_TIMEOUT"]

#: the largest request body read (bytes); larger ones are answered 413
DEFAULT_MAX_BODY = 64 << 20
#: seconds a prediction may take before the request is answered 504
DEFAULT_TIMEOUT = 60.0
_MODEL_KEY = "casstore.model"
_JSON = "application/json"


class _BodyTooLarge(Exception):
    pass


def _model(request: Request) -> ServedModel:
    model: ServedModel = request.scope[_MODEL_KEY]
    return model


def _json(obj: Any, status: int = 200) -> Response:
    return Response(json.dumps(obj), status_code=status, media_type=_JSON)


def _error(status: int, error_code: str, message: str) -> Response:
    """An error as MLflow returns it: ``{"error_code", "message"}``."""
    return _json({"error_code": error_code, "message": bounded(message)}, status)


def _v2_error(status: int, message: str) -> Response:
    return Response(v2.InferenceErrorResponse(error=bounded(message)).model_dump_json(), status_code=status, media_type=_JSON)


class _Pinned:
    """ASGI middleware: takes the served model for the request, and adds its digest and
    version to the response's headers (unless the endpoint set them)."""

    def __init__(self, app: ASGIApp, slot: ModelSlot) -> None:
        self.app = app
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        model = self.slot.current
        scope[_MODEL_KEY] = model

        async def send_pinned(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *model.headers]}
            await send(message)

        await self.app(scope, receive, send_pinned)


def create_app(slot: ModelSlot, *, max_body: int = DEFAULT_MAX_BODY, timeout: float = DEFAULT_TIMEOUT) -> ASGIApp:
    """The scoring application over the model in ``slot``."""

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body:
            raise _BodyTooLarge
        parts, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise _BodyTooLarge
            parts.append(chunk)
        return b"".join(parts)

    async def scored(request: Request, work: Callable[[ServedModel, bytes], bytes],
                     fail: Callable[[int, str, str], Response], media_type: str = _JSON) -> Response:
        """Read the body, then run ``work`` off the event loop within the timeout."""
        model = _model(request)
        try:
            body = await read_body(request)
            out = await asyncio.wait_for(run_in_threadpool(work, model, body), timeout)
        except _BodyTooLarge:
            return fail(413, "REQUEST_LIMIT_EXCEEDED", f"the request body is larger than the server's limit of {max_body} bytes")
        except ScoringError as e:
            return fail(e.status, e.error_code, e.message)
        except TimeoutError:
            return fail(504, "DEADLINE_EXCEEDED", f"the prediction took longer than the server's timeout of {timeout:g} s")
        return Response(out, media_type=media_type)

    async def ping(request: Request) -> Response:
        return Response("\n", media_type=_JSON)

    async def version(request: Request) -> Response:
        return _json(_model(request).describe())

    async def invocations(request: Request) -> Response:
        content_type = request.headers.get("content-type")
        return await scored(request, lambda m, body: m.invoke(body, content_type), _error)

    # ---- Open Inference Protocol ------------------------------------------------------

    def v2_named(request: Request) -> ServedModel | Response:
        model = _model(request)
        name = request.path_params["name"]
        version = request.path_params.get("version")
        if name != model.name:
            return _v2_error(404, f"this server serves the model {model.name!r}, not {bounded(name, 80)!r}")
        if version is not None and version != _v2_version(model):
            return _v2_error(404, f"this server serves version {_v2_version(model)} of {model.name!r}, not {bounded(version, 40)!r}")
        return model

    async def v2_server(request: Request) -> Response:
        meta = v2.MetadataServerResponse(name="casstore", version=__version__, extensions=[])
        return Response(meta.model_dump_json(), media_type=_JSON)

    async def v2_model(request: Request) -> Response:
        model = v2_named(request)
        if isinstance(model, Response):
            return model
        meta = v2.MetadataModelResponse(
            name=model.name,
            versions=[_v2_version(model)],
            platform="casstore-" + "-".join(sorted(f for f in model.model.metadata.flavors if f != "python_function")),
            inputs=v2.schema_tensors(model.input_schema, "input"),
            outputs=v2.schema_tensors(model.output_schema, "predict"),
        )
        return Response(meta.model_dump_json(), media_type=_JSON)

    async def v2_ready(request: Request) -> Response:
        model = v2_named(request)
        return model if isinstance(model, Response) else Response(b"", media_type=_JSON)

    async def v2_infer(request: Request) -> Response:
        model = v2_named(request)
        if isinstance(model, Response):
            return model
        return await scored(request, _v2_infer, lambda status, code, msg: _v2_error(status, msg))

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/health", ping, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/v2", v2_server, methods=["GET"]),
        Route("/v2/health/live", ping, methods=["GET"]),
        Route("/v2/health/ready", ping, methods=["GET"]),
        Route("/v2/models/{name}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/ready", v2_ready, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}", v2_model, methods=["GET"]),
        Route("/v2/models/{name}/versions/{version}/ready", v2_ready, methods=["GET"]),
        Route("/v2/models/{name}/infer", v2_infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", v2_infer, methods=["POST"]),
    ]
    return _Pinned(Starlette(routes=routes), slot)


def _v2_version(model: ServedModel) -> str:
    return str(model.version) if model.version is not None else model.digest[:12]


def _v2_infer(model: ServedModel, body: bytes) -> bytes:
    import pydantic

    try:
        request = v2.InferenceRequest.model_validate_json(body)
    except pydantic.ValidationError as e:
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in e.errors(include_input=False)[:5])
        raise ScoringError(f"the request is not an inference request: {where}") from None
    data = v2.model_input(request, model.input_schema)
    raw = model.predict(data)
    response = v2.InferenceResponse(
        model_name=model.name, model_version=_v2_version(model), id=request.id, outputs=v2.response_outputs(raw)
    )
    return response.model_dump_json(exclude_none=True).encode("utf-8")

