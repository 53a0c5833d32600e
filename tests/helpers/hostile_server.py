"""A misbehaving HTTP server on 127.0.0.1 for the reliability tests (standard library only).

It answers ``POST <anything>`` the way it is told, one :class:`Act` per incoming request
(``server.script``; ``server.default`` when the script is empty):

- ``Act.ok(delay)``: a valid Contextual-style ``{"results": [...]}`` answer, after ``delay``;
- ``Act.scores(values)``: a valid answer with these exact scores (index i -> values[i]);
- ``Act.error(code, body, headers)``: an error status with a JSON body;
- ``Act.raw(text, status)``: any body, as given (``Act.raw_bytes`` for bytes, e.g. gzip);
- ``Act.stall()``: read the request, never answer (until the server stops);
- ``Act.trickle(interval)``: send the status line and headers (a large Content-Length),
  then one body byte every ``interval`` seconds;
- ``Act.trickle_headers(interval)``: send the status line and headers one byte at a time;
- ``Act.reset_mid_body()``: headers, half a body, then a TCP reset;
- ``Act.huge(n, declare)``: a 200 answer of ``n`` bytes (with or without Content-Length),
  written in 64 KiB chunks; ``server.bytes_sent`` counts what actually went out;
- ``Act.echo(status)``: the request's headers sent back as plain text (status 200 or not);
- ``Act.echo_json(field)``: a 200 JSON answer with the Authorization header in ``field``.

``server.route(seen)``, when set, picks the act for a request from what it holds (e.g. its
query) before the script; ``None`` falls back to the script / default.

Every request is recorded (``server.requests``: path, headers, body). Each connection is
served by a daemon thread; ``stop()`` (or leaving the ``with`` block) ends every act that
waits, so a fixture never leaves a thread behind that blocks the next test.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any


@dataclass
class Act:
    kind: str
    delay: float = 0.0
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    interval: float = 0.5
    size: int = 0
    declare: bool = True
    text: str = ""
    values: tuple[float, ...] = ()

    @classmethod
    def ok(cls, delay: float = 0.0) -> Act:
        return cls("ok", delay=delay)

    @classmethod
    def scores(cls, values: Sequence[float]) -> Act:
        return cls("scores", values=tuple(values))

    @classmethod
    def error(cls, status: int, body: Any = None, headers: dict[str, str] | None = None) -> Act:
        body = {"detail": f"injected {status}"} if body is None else body
        return cls("status", status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def raw(cls, text: str, status: int = 200, headers: dict[str, str] | None = None) -> Act:
        return cls("raw", text=text, status=status, headers=dict(headers or {}))

    @classmethod
    def raw_bytes(
        cls, data: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> Act:
        return cls("raw", body=data, status=status, headers=dict(headers or {}))

    @classmethod
    def stall(cls) -> Act:
        return cls("stall")

    @classmethod
    def trickle(cls, interval: float = 0.5) -> Act:
        return cls("trickle", interval=interval)

    @classmethod
    def trickle_headers(cls, interval: float = 0.5) -> Act:
        return cls("trickle_headers", interval=interval)

    @classmethod
    def reset_mid_body(cls) -> Act:
        return cls("reset")

    @classmethod
    def huge(cls, size: int, *, declare: bool = True) -> Act:
        return cls("huge", size=size, declare=declare)

    @classmethod
    def echo(cls, status: int = 200) -> Act:
        return cls("echo", status=status)

    @classmethod
    def echo_json(cls, field_name: str = "index") -> Act:
        return cls("echo_json", text=field_name)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    owner: HostileServer


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.server.owner._serve(self.request)


def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} X\r\n".encode()


class HostileServer:
    def __init__(self) -> None:
        self.script: deque[Act] = deque()
        self.default = Act.ok()
        self.route: Callable[[Seen], Act | None] | None = None
        self.requests: list[Seen] = []
        self.bytes_sent = 0
        self.connections = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle
    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the client
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, root: str = "/v1") -> str:
        return f"http://127.0.0.1:{self.port}{root}"

    def _next_act(self) -> Act:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    # -- one connection
    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.add(sock)
            self.connections += 1
        reader = sock.makefile("rb")
        try:
            while not self.stopping.is_set():
                seen = self._read_request(reader)
                if seen is None:
                    return
                with self._lock:
                    self.requests.append(seen)
                    self.in_flight += 1
                    self.max_in_flight = max(self.max_in_flight, self.in_flight)
                act = self.route(seen) if self.route is not None else None
                try:
                    keep = self._act(sock, act or self._next_act(), seen)
                finally:
                    with self._lock:
                        self.in_flight -= 1
                if not keep:
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self._sockets.discard(sock)

    def _read_request(self, reader: Any) -> Seen | None:
        line = reader.readline()
        if not line:
            return None
        _, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            raw = reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        data = reader.read(length) if length else b""
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        return Seen(path, headers, body)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        sock.sendall(data)
        with self._lock:
            self.bytes_sent += len(data)

    def _answer(
        self, sock: socket.socket, status: int, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        head = _status_line(status)
        head += b"Content-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n".encode()
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n".encode()
        self._send(sock, head + b"\r\n" + body)

    def _results(self, seen: Seen, values: Sequence[float] | None = None) -> bytes:
        documents = (seen.body or {}).get("documents") or (seen.body or {}).get("texts") or []
        scores = list(values) if values else [1.0 / (i + 2) for i in range(len(documents))]
        items = [{"index": i, "relevance_score": scores[i]} for i in range(len(documents))]
        return json.dumps({"results": items}).encode()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False when it stopped."""
        return not self.stopping.wait(seconds)

    def _act(self, sock: socket.socket, act: Act, seen: Seen) -> bool:
        """Play ``act``; True when the connection may serve another request."""
        kind = act.kind
        if kind == "ok":
            if act.delay and not self._wait(act.delay):
                return False
            self._answer(sock, 200, self._results(seen))
            return True
        if kind == "scores":
            self._answer(sock, 200, self._results(seen, act.values))
            return True
        if kind == "status":
            self._answer(sock, act.status, json.dumps(act.body).encode(), act.headers)
            return True
        if kind == "raw":
            data = act.body if isinstance(act.body, bytes) else act.text.encode()
            self._answer(sock, act.status, data, act.headers)
            return True
        if kind == "echo":
            text = "\n".join(f"{k}: {v}" for k, v in seen.headers.items())
            self._answer(sock, act.status, text.encode())
            return True
        if kind == "echo_json":
            echoed = {"results": [{act.text: seen.headers.get("authorization", "")}]}
            self._answer(sock, 200, json.dumps(echoed).encode())
            return True
        if kind == "stall":
            self.stopping.wait()
            return False
        if kind == "trickle":
            self._send(sock, _status_line(200) + b"Content-Length: 100000\r\n\r\n")
            while self._wait(act.interval):
                self._send(sock, b" ")
            return False
        if kind == "trickle_headers":
            for byte in _status_line(200) + b"Content-Length: 2\r\n" + b"X-Slow: " + b"a" * 10_000:
                if not self._wait(act.interval):
                    return False
                self._send(sock, bytes([byte]))
            return False
        if kind == "reset":
            self._send(sock, _status_line(200) + b"Content-Length: 1000\r\n\r\n" + b"{" * 100)
            time.sleep(0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            return False
        if kind == "huge":
            head = _status_line(200) + b"Content-Type: application/json\r\n"
            if act.declare:
                head += f"Content-Length: {act.size}\r\n".encode()
            else:
                head += b"Connection: close\r\n"
            self._send(sock, head + b"\r\n")
            chunk = b" " * 65536
            left = act.size
            while left > 0 and not self.stopping.is_set():
                piece = chunk[: min(left, len(chunk))]
                self._send(sock, piece)
                left -= len(piece)
            return False
        raise AssertionError(f"unknown act {kind!r}")
