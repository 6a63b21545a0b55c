"""Plain answers to malformed API requests, where Gradio would answer with its internals.

Three places, all outside Gradio's success paths:

* **HTTP errors** (:func:`app_kwargs`, passed to ``demo.launch(app_kwargs=...)``): FastAPI answers a body it
  cannot validate with pydantic's error list (422), and Gradio an unknown ``api_name`` or ``fn_index`` with a
  bare 500. FastAPI exception handlers turn these into ``{"detail": "<a sentence>"}`` with 422 / 404.
* **Unknown event streams** (:class:`UnknownEventStream`): ``GET /gradio_api/call/<name>/<event_id>`` for an
  event the queue does not hold starts a 200 event stream and then aborts the connection; this ASGI
  middleware answers 404 before the stream starts, by the same test Gradio applies in its first loop.
* **Event errors** (:func:`install`): errors raised before a handler runs (pydantic validating a file payload,
  a component's preprocessing, too few inputs) reach the client as their ``str()`` because the app launches
  with ``show_error=True``; :func:`plain_error_payload` replaces that text with a sentence. Messages of
  ``gr.Error`` (our handlers' own) pass unchanged.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pydantic
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from gradio import queueing
from gradio import utils as gradio_utils
from gradio.exceptions import AppError, ComponentProcessingError, InvalidPathError
from gradio.route_utils import FnIndexInferError
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

LOG = logging.getLogger("ddpm_playground")

API_HELP = "the endpoints and their inputs are listed on the app's “Use via API” page (/gradio_api/info)"
BAD_BODY = (
    'This request is not valid: send a JSON object such as {"data": [...]} with one value per input '
    f"of the endpoint; {API_HELP}."
)
BAD_REQUEST = "This request is not valid: its body or parameters are not in the form this address expects."
UNKNOWN_ENDPOINT = f"There is no API endpoint with that name; {API_HELP}."
UNKNOWN_HANDLER = f"There is no event handler with that fn_index; {API_HELP}."
UNKNOWN_EVENT = "There is no event with that id (it may have finished and been collected already)."
SERVER_ERROR = "Something went wrong on the server. Please try again."
BAD_INPUT_FORM = f"An input is not in the form this endpoint expects; {API_HELP}."
NOT_UPLOADED = "This file was not uploaded by a user of the app; please upload it again."

_EVENT_STREAM = re.compile(r"/gradio_api/call/(?:v2/)?[^/]+/(?P<event_id>[^/]+)/?$")
_PREPROCESS = re.compile(r"^Could not preprocess input component at index (\d+) \(a `([\w ]+)` component\)")
_CHOICES = re.compile(r"^Value: (.*) \(type: <class '\w+'>\) is not in the list of choices: (.*)$", re.DOTALL)


# ----------------------------------------------------------------------------------------------
# HTTP errors: FastAPI exception handlers
# ----------------------------------------------------------------------------------------------


def _plain(status_code: int, message: str) -> JSONResponse:
    """FastAPI's error shape ({"detail": ...}), holding a sentence instead of pydantic's error list."""
    return JSONResponse({"detail": message}, status_code=status_code)


def _is_event_call(path: str) -> bool:
    """Requests that start an event: POST /gradio_api/call/<name> (and /run, /api) and /gradio_api/queue/join."""
    path = path.rstrip("/")
    return any(part in path for part in ("/call/", "/run/", "/api/")) or path.endswith("/queue/join")


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A body or query FastAPI could not validate (not JSON, ``data`` not a list, a missing field)."""
    return _plain(422, BAD_BODY if _is_event_call(request.url.path) else BAD_REQUEST)


async def _unknown_endpoint(request: Request, exc: Exception) -> JSONResponse:
    """``/gradio_api/call/<name>`` or ``/run/<name>`` naming no endpoint (Gradio raises FnIndexInferError)."""
    return _plain(404, UNKNOWN_ENDPOINT)


async def _key_error(request: Request, exc: Exception) -> JSONResponse:
    """``/queue/join`` with an fn_index no handler has (a KeyError in Gradio's lookup); elsewhere, a bug."""
    if request.url.path.rstrip("/").endswith("/queue/join"):
        return _plain(404, UNKNOWN_HANDLER)
    LOG.error("request to %s failed", request.url.path, exc_info=exc)  # handled here, so uvicorn logs nothing
    return _plain(500, SERVER_ERROR)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    """Anything else a route did not handle: Starlette still re-raises it, so uvicorn logs the trace."""
    return _plain(500, SERVER_ERROR)


def api_error_handlers() -> dict[Any, Any]:
    """FastAPI ``exception_handlers`` giving plain JSON errors for malformed API requests."""
    return {
        RequestValidationError: _invalid_request,
        FnIndexInferError: _unknown_endpoint,
        KeyError: _key_error,
        Exception: _server_error,
    }


# ----------------------------------------------------------------------------------------------
# Unknown event streams: an ASGI middleware
# ----------------------------------------------------------------------------------------------


def _event_is_unknown(app: Any, event_id: str) -> bool:
    """Gradio's own test (``routes.simple_predict_get`` then ``sse_stream``), made before the stream starts.

    It reads the queue's private tables; if they change shape in a later Gradio, this says "known" and
    Gradio answers as it always did.
    """
    try:
        queue = app.get_blocks()._queue
        event = queue.event_ids_to_events.get(event_id)
        if event is not None:
            session_hash = event.session_hash
        else:
            pending = queue.pending_event_ids_session.items()
            session_hash = next((s for s, ids in pending if event_id in ids), event_id)
        return session_hash not in queue.pending_messages_per_session
    except Exception:  # fail open: Gradio then answers by itself
        return False


class UnknownEventStream:
    """Answer ``GET /gradio_api/call/<name>/<event_id>`` for an unknown event with a plain 404."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "GET":
            match = _EVENT_STREAM.search(scope.get("path", ""))
            if match and "app" in scope and _event_is_unknown(scope["app"], match["event_id"]):
                await _plain(404, UNKNOWN_EVENT)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def app_kwargs() -> dict[str, Any]:
    """Keyword arguments for the FastAPI app Gradio builds (``demo.launch(app_kwargs=...)``)."""
    return {"exception_handlers": api_error_handlers(), "middleware": [Middleware(UnknownEventStream)]}


# ----------------------------------------------------------------------------------------------
# Event errors: the text Gradio sends for an exception
# ----------------------------------------------------------------------------------------------

# Gradio's own function, kept even if this module is imported again after install().
_gradio_error_payload = getattr(gradio_utils.error_payload, "gradio_original", gradio_utils.error_payload)


def plain_message(error: BaseException | None) -> str:
    """A sentence for an error Gradio raised before (or after) a handler ran; never Python's or pydantic's text."""
    text = str(error)
    if isinstance(error, InvalidPathError) and "not uploaded by a user" in text:  # an input naming any path
        return NOT_UPLOADED  # (the output-side variant, a handler returning a file it may not, is our bug)
    if isinstance(error, ComponentProcessingError) and (match := _PREPROCESS.match(text)):
        return f"Input {int(match[1]) + 1} (a {match[2]}) is not in the form this endpoint expects; {API_HELP}."
    if isinstance(error, pydantic.ValidationError):
        return BAD_INPUT_FORM
    if isinstance(error, ValueError) and text.startswith("An event handler") and "input values" in text:
        return text.splitlines()[0]  # "... didn't receive enough input values (needed: 5, got: 1)."
    return SERVER_ERROR


def plain_error_payload(error: BaseException | None, show_error: bool) -> dict[str, Any]:
    """Gradio's ``error_payload`` with plain text: ``gr.Error`` messages as they are, everything else a sentence."""
    payload = _gradio_error_payload(error, show_error)
    message = payload.get("error")
    if not isinstance(message, str):  # show_error=False and not a gr.Error: Gradio sends no text at all
        return payload
    if isinstance(error, AppError):
        if match := _CHOICES.match(message):  # Gradio's own check of a CheckboxGroup/Radio/Dropdown value
            payload["error"] = f"{match[1]} is not one of the choices offered: {match[2]}."
        return payload
    payload["error"] = plain_message(error)
    return payload


def install() -> None:
    """Route Gradio's error payloads through :func:`plain_error_payload` (idempotent).

    ``gradio.queueing`` imported the function by name, ``gradio.routes`` looks it up on ``gradio.utils``:
    both are replaced.
    """
    plain_error_payload.gradio_original = _gradio_error_payload  # type: ignore[attr-defined]
    queueing.error_payload = plain_error_payload
    gradio_utils.error_payload = plain_error_payload
