"""Shared loopback HTTP plumbing for the fake provider servers.

Why a real socket server rather than an in-process mock: the provider clients
open their own HTTP clients (fal-client builds separate ones for uploads), retry
on their own, follow server-supplied URLs and time out on their own. Only a real
server on ``127.0.0.1`` exercises all of that. Stdlib ``ThreadingHTTPServer``
keeps the package free of extra dependencies.

This module owns the provider-neutral server loop: binding to an ephemeral
port, routing, the thread-safe request log, fault application, and a clean
shutdown that also unblocks idle keep-alive connections and sleeping faults.
Request/response primitives (lazy bodies, redacting headers, ranged file
replies) live in ``_wire``.
"""

from __future__ import annotations

import re
import socket
import struct
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from ._faults import PRE_HANDLER_KINDS, Fault
from ._storage import FileStore
from ._wire import CHUNK, Headers, HTTPError, Request, RequestRecord, Response, Route

_S = TypeVar("_S", bound="FakeServer")


class _Server(ThreadingHTTPServer):
    """The socket server. It knows its fake only as the two calls its handlers make, set by the fake."""

    daemon_threads = True
    allow_reuse_address = True
    #: called as each connection opens (True) and closes (False), so closing can unblock idle keep-alives
    track: Callable[[socket.socket, bool], None]
    #: answers one request
    dispatch: Callable[[_Handler], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the stdlib access log; the fake keeps its own structured log."""

    def do_GET(self) -> None:
        self.server.dispatch(self)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def close_connection_after_accept(self) -> None:
        """Drop the connection without replying (what a lost reply looks like to a client)."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def reset_connection(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), as a crashing proxy would mid-upload."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


class FakeServer:
    """Base class: a started loopback server with a request log, fault queues and routes.

    The server starts in ``__init__`` (so ``url`` is valid at once) and stops in
    :meth:`close`, or on leaving a ``with`` block. With ``strict=True`` (the
    default) leaving the block raises ``AssertionError`` if any request hit an
    unknown path or crashed the fake, so a misrouted client fails loudly instead
    of being retried into a one-minute hang.
    """

    provider = "fake"

    def __init__(
        self,
        *,
        strict: bool = True,
        storage_dir: str | Path | None = None,
        log_body_limit: int = 64 * 1024,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.strict = strict
        self.log_body_limit = log_body_limit
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._records: list[RequestRecord] = []
        self._unexpected: list[RequestRecord] = []
        self._server_errors: list[str] = []
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._tmp = (
            tempfile.TemporaryDirectory(prefix=f"latentsync-fake-{self.provider}-") if storage_dir is None else None
        )
        self.storage_dir = Path(self._tmp.name if self._tmp is not None else str(storage_dir))
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.store = FileStore(self.storage_dir, self._lock)
        self._routes = self._build_routes()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.track = self._track
        self._httpd.dispatch = self._dispatch
        self.host, self.port = str(self._httpd.server_address[0]), int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._closed = False
        self._thread.start()

    # ----- to be provided by providers -------------------------------------------------
    def _build_routes(self) -> Sequence[Route]:
        raise NotImplementedError

    def _fault_queue(self, endpoint: str) -> list[Fault] | None:
        """The fault queue of ``endpoint``: the list of that name on ``self.faults``, if the fake has one."""
        queue: list[Fault] | None = getattr(getattr(self, "faults", None), endpoint, None)
        return queue

    def _check_auth(self, request: Request, route: Route) -> Response | None:
        return None

    def _error(self, status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
        return Response.json(status, {"detail": detail}, headers)

    def _decorate(self, request: Request, response: Response) -> None:
        """Hook to add provider headers (e.g. ``x-fal-request-id``) to every reply."""

    # ----- public API ------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of every request received, in arrival order."""
        with self._lock:
            return list(self._records)

    def requests_for(self, *endpoints: str) -> list[RequestRecord]:
        """Requests routed to the named endpoints (e.g. ``"submit"``), including faulted attempts."""
        with self._lock:
            return [r for r in self._records if r.endpoint in endpoints]

    @property
    def unexpected_requests(self) -> list[RequestRecord]:
        """Requests to paths the fake does not serve (answered 404 with a loud body)."""
        with self._lock:
            return list(self._unexpected)

    @property
    def server_errors(self) -> list[str]:
        """Tracebacks of crashes inside the fake itself (answered 500)."""
        with self._lock:
            return list(self._server_errors)

    def clear_requests(self) -> None:
        with self._lock:
            self._records.clear()
            self._unexpected.clear()

    def assert_no_unexpected_requests(self) -> None:
        problems = [repr(r) for r in self.unexpected_requests] + self.server_errors
        if problems:
            raise AssertionError(f"{type(self).__name__} saw unexpected traffic:\n" + "\n".join(problems))

    def close(self) -> None:
        """Stop serving, unblock sleeping faults and idle keep-alive connections, remove temp files."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = dict(self._connections)
        for sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for thread in conns.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc_type is None and self.strict:
            self.assert_no_unexpected_requests()

    # ----- internals -------------------------------------------------------------------
    def _sleep(self, seconds: float) -> bool:
        """Interruptible sleep; False if the server is closing."""
        return not self._stopping.wait(seconds)

    def _track(self, sock: socket.socket, opened: bool) -> None:
        with self._lock:
            if opened:
                self._connections[sock] = threading.current_thread()
            else:
                self._connections.pop(sock, None)

    def _match(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        wanted = "GET" if method == "HEAD" else method
        for candidate in self._routes:
            if candidate.method == wanted and (found := candidate.pattern.match(path)):
                return candidate, found
        return None

    def _pop_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            queue = self._fault_queue(endpoint)
            return queue.pop(0) if queue else None

    def _dispatch(self, handler: _Handler) -> None:
        parts = urlsplit(handler.path)
        path = unquote(parts.path)
        found = self._match(handler.command, path)
        with self._lock:
            record = RequestRecord(
                seq=len(self._records) + 1,
                method=handler.command,
                path=path,
                query_string=parts.query,
                headers=Headers(handler.headers.items()),
                endpoint=found[0].endpoint if found else None,
                started_at=time.time(),
            )
            self._records.append(record)
            if found is None:
                self._unexpected.append(record)
        request = Request(handler.rfile, record, self.log_body_limit)
        try:
            self._serve(handler, request, found)
        except OSError:
            handler.close_connection = True

    def _serve(self, handler: _Handler, request: Request, found: tuple[Route, re.Match[str]] | None) -> None:
        record = request.record
        if found is None:
            detail = (
                f"{type(self).__name__}: no such endpoint {request.method} {request.path} "
                f"- the client is misrouted or the fake lacks this route"
            )
            self._send(handler, request, self._error(404, detail))
            return
        route_, match = found
        fault = self._pop_fault(route_.endpoint)
        if fault is not None:
            record.fault = fault.describe()
        while fault is not None and fault.kind == "delay":
            if not self._sleep(fault.seconds):
                handler.close_connection_after_accept()
                return
            fault = fault.then
        if fault is not None and fault.kind in PRE_HANDLER_KINDS:
            self._apply_pre_fault(handler, request, fault)
            return
        response = self._check_auth(request, route_) if route_.auth else None
        if response is None:
            try:
                response = route_.handler(request, match)
            except HTTPError as exc:
                response = exc.response
            except (ConnectionError, TimeoutError):
                raise
            except Exception:  # noqa: BLE001 - a bug in the fake must surface, not kill the thread
                trace = traceback.format_exc()
                with self._lock:
                    self._server_errors.append(f"{request.method} {request.path}:\n{trace}")
                response = self._error(500, f"{type(self).__name__} crashed:\n{trace}")
        self._decorate(request, response)
        if fault is not None and fault.kind == "drop_after_accept":
            request.drain()
            handler.close_connection_after_accept()
            return
        if fault is not None and fault.kind == "hold_reply" and not self._sleep(fault.seconds):
            handler.close_connection_after_accept()
            return
        if fault is not None and fault.kind == "gateway_after_accept":
            self._send(handler, request, _gateway_page(fault.status_code or 502))
            return
        truncate = fault.nbytes if fault is not None and fault.kind == "truncate" else None
        stall = fault if fault is not None and fault.kind == "stall" else None
        self._send(handler, request, response, truncate=truncate, stall=stall)

    def _apply_pre_fault(self, handler: _Handler, request: Request, fault: Fault) -> None:
        if fault.kind == "drop":
            handler.close_connection_after_accept()
        elif fault.kind == "reset_during_upload":
            declared = request.content_length or 0
            budget = fault.nbytes if fault.nbytes is not None else min(declared // 2, 64 * 1024)
            while budget > 0 and (chunk := request.read(min(budget, CHUNK))):
                budget -= len(chunk)
            handler.reset_connection()
        elif fault.kind == "nginx":
            self._send(handler, request, _gateway_page(fault.status_code or 503))
        else:
            response = self._fault_response(request, fault)
            self._send(handler, request, response)

    def _fault_response(self, request: Request, fault: Fault) -> Response:
        code = fault.status_code or 500
        if fault.body is not None:
            response = Response(code, fault.body, list(fault.headers), fault.content_type or "text/plain")
        elif fault.json_body is not None:
            response = Response.json(code, fault.json_body, fault.headers)
            response.content_type = fault.content_type or self._error(code, "").content_type
        else:
            response = self._error(code, self._default_detail(code), fault.headers)
        self._decorate(request, response)
        return response

    def _default_detail(self, code: int) -> str:
        return "Too many requests" if code == 429 else f"Injected fault: HTTP {code}"

    def _send(
        self,
        handler: _Handler,
        request: Request,
        response: Response,
        truncate: int | None = None,
        stall: Fault | None = None,
    ) -> None:
        if not request.fully_read and not request.drain():
            handler.close_connection = True
        start, end = response.file_range or (0, response.file.stat().st_size if response.file else 0)
        length = end - start if response.file is not None else len(response.body)
        handler.send_response(response.status)
        names = {key.lower() for key, _ in response.headers}
        if response.content_type and "content-type" not in names:
            handler.send_header("Content-Type", response.content_type)
        for key, value in response.headers:
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(length))
        if truncate is not None or handler.close_connection:
            handler.send_header("Connection", "close")
        handler.end_headers()
        request.record.status = response.status
        budget = length if truncate is None else min(truncate, length)
        if request.method != "HEAD" and not self._write_body(
            handler, self._body_chunks(response, start, budget), stall
        ):
            handler.close_connection_after_accept()
            return
        handler.wfile.flush()
        if truncate is not None:
            handler.close_connection_after_accept()

    def _write_body(self, handler: _Handler, chunks: Iterator[bytes], stall: Fault | None) -> bool:
        """Write the body, stopping once for ``stall`` part-way; False if the server closed meanwhile."""
        sent, stop_at = 0, (stall.nbytes or 0) if stall is not None else None
        for chunk in chunks:
            if stall is not None and stop_at is not None and sent + len(chunk) > stop_at:
                cut = max(0, stop_at - sent)
                handler.wfile.write(chunk[:cut])
                handler.wfile.flush()
                if not self._sleep(stall.seconds):
                    return False
                chunk, sent, stall = chunk[cut:], sent + cut, None
            handler.wfile.write(chunk)
            sent += len(chunk)
        return True

    @staticmethod
    def _body_chunks(response: Response, start: int, budget: int) -> Iterator[bytes]:
        if response.file is None:
            yield response.body[:budget]
            return
        with response.file.open("rb") as src:
            src.seek(start)
            while budget > 0 and (chunk := src.read(min(CHUNK, budget))):
                budget -= len(chunk)
                yield chunk


def _gateway_page(code: int) -> Response:
    """An ingress proxy's error page: HTML naming nginx, no provider headers."""
    page = (
        f"<html>\r\n<head><title>{code} Service Temporarily Unavailable</title></head>\r\n"
        f"<body>\r\n<center><h1>{code} Service Temporarily Unavailable</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(code, page.encode(), [], "text/html")
