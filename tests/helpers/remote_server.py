"""A real HTTP rerank server on 127.0.0.1 for the remote backend's tests.

It speaks every wire format under its own path prefix (see :meth:`RerankTestServer.base_url`),
scores documents deterministically, records every request, counts the requests in flight
(``max_in_flight``), and plays a script of faults, one per incoming request, in order:

    server.script.extend([Fault.status(429, headers={"Retry-After": "3"}), Fault.ok()])

Limits (``max_documents``, ``max_tokens``, ``max_tokens_per_document``) answer 422 with a
"too many / too long" message when exceeded, like the real APIs. The "too many documents"
wording is ``documents_message`` (a template with ``{count}`` and ``{limit}``; see
:data:`DOCUMENT_LIMIT_MESSAGES` for real servers' wordings and one that states no number); TEI
always answers with its own wording. ``latency`` delays every
answer. Standard library only (ThreadingHTTPServer in a daemon thread), any free port.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

FORMAT_ROOTS = {
    "contextual": "/contextual/v1",
    "jina": "/jina/v1",
    "vllm": "/vllm/v1",
    "infinity": "/infinity",
    "cohere": "/cohere/v2",
    "tei": "/tei",
}


DOCUMENT_LIMIT_MESSAGES = {
    # TEI (router/src/http/server.rs validation; also served by SiliconFlow-style gateways)
    "tei": "batch size {count} > maximum allowed batch size {limit}",
    "count": "too many documents: {count} > {limit}",
    "at_most": "at most {limit} documents are allowed per request, got {count}",
    "maximum_of": "the number of documents ({count}) exceeds the maximum of {limit} documents",
    "max_arg": "request has {count} documents; max_client_batch_size is {limit}",
    "no_number": "too many documents in one request",
}


@dataclass
class Fault:
    """One scripted answer. ``kind``: ok, status, hang, drop, raw, mutate."""

    kind: str
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    text: str = ""
    mutate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def error(cls, status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
        body = {"detail": f"injected {status}"} if body is None else body
        return cls("status", status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")

    @classmethod
    def raw(cls, text: str, status: int = 200) -> Fault:
        return cls("raw", status=status, text=text)

    @classmethod
    def results(cls, mutate: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> Fault:
        return cls("mutate", mutate=mutate)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


def default_score(query: str, document: str) -> float:
    """A deterministic pseudo-random score in [0, 1) per (query, document), 8 decimals."""
    digest = hashlib.sha256(f"{query}\x00{document}".encode()).hexdigest()
    return round(int(digest[:8], 16) / 2**32, 8)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    owner: RerankTestServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: avoid 40 ms ACK stalls
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    def do_POST(self) -> None:
        self.server.owner._handle(self)


class RerankTestServer:
    def __init__(self) -> None:
        self.script: deque[Fault] = deque()
        self.latency = 0.0
        self.max_documents: int | None = None
        self.max_tokens: int | None = None
        self.max_tokens_per_document: int | None = None
        # vLLM's 400 "maximum context length is N tokens" (any document over N "tokens") and
        # Infinity's pydantic 422 "String should have at most N characters" (any document).
        self.context_length: int | None = None
        self.max_chars: int | None = None
        self.documents_message = DOCUMENT_LIMIT_MESSAGES["at_most"]
        self.token_count: Callable[[str], int] = len  # "tokens" = characters by default
        self.scores: dict[str, float] = {}
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._count = 0
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # -- lifecycle
    def __enter__(self) -> RerankTestServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def base_url(self, api_format: str) -> str:
        return f"http://127.0.0.1:{self.port}{FORMAT_ROOTS[api_format]}"

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.body for r in self.requests]

    def score(self, query: str, document: str) -> float:
        return self.scores.get(document, default_score(query, document))

    # -- request handling
    def _handle(self, h: _Handler) -> None:
        length = int(h.headers.get("Content-Length", "0"))
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            self._count += 1
            number = self._count
            self.requests.append(Recorded(h.path, dict(h.headers.items()), body))
            fault = self.script.popleft() if self.script else Fault.ok()
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            self._answer(h, fault, body, number)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                self.in_flight -= 1

    def _send(
        self,
        h: _Handler,
        status: int,
        payload: bytes,
        number: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.send_header("x-request-id", f"req-{number}")
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(payload)
        h.wfile.flush()

    def _json(
        self, h: _Handler, status: int, obj: Any, number: int, headers: dict[str, str] | None = None
    ) -> None:
        self._send(h, status, json.dumps(obj).encode(), number, headers)

    def _answer(self, h: _Handler, fault: Fault, body: Any, number: int) -> None:
        if fault.kind == "drop":
            h.close_connection = True
            return
        if fault.kind == "hang":
            time.sleep(fault.seconds)
            h.close_connection = True
            return
        if fault.kind == "status":
            self._json(h, fault.status, fault.body, number, fault.headers)
            return
        if fault.kind == "raw":
            self._send(h, fault.status, fault.text.encode(), number)
            return
        api_format = next(
            (f for f, root in FORMAT_ROOTS.items() if h.path == root + "/rerank"), None
        )
        if api_format is None:
            self._json(h, 404, {"detail": f"no route {h.path}"}, number)
            return
        if not isinstance(body, dict):
            self._json(h, 400, {"detail": "body is not a JSON object"}, number)
            return
        docs_key = "texts" if api_format == "tei" else "documents"
        query, documents = body.get("query"), body.get(docs_key)
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            self._json(h, 422, {"detail": f"query and {docs_key} are required"}, number)
            return
        per_document = self._check_per_document(query, documents, body)
        if per_document is not None:
            self._json(h, per_document[0], per_document[1], number)
            return
        limit_error = self._check_limits(api_format, query, documents, body)
        if limit_error is not None:
            self._json(h, 422, limit_error, number)
            return
        scored = sorted(
            ((i, self.score(query, d)) for i, d in enumerate(documents)),
            key=lambda p: (-p[1], p[0]),
        )
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            scored = scored[:top_n]
        score_key = "score" if api_format == "tei" else "relevance_score"
        items: list[dict[str, Any]] = [{"index": i, score_key: s} for i, s in scored]
        if fault.kind == "mutate" and fault.mutate is not None:
            items = fault.mutate(items)
        payload: Any
        if api_format == "tei":
            payload = items
        elif api_format == "contextual":
            payload = {"results": items}
        elif api_format == "cohere":
            payload = {"id": f"req-{number}", "results": items, "meta": {"billed_units": {}}}
        else:  # jina / vllm
            for item in items:
                item["document"] = {"text": documents[item["index"]]}
            payload = {"id": f"req-{number}", "model": body.get("model"), "results": items}
        self._json(h, 200, payload, number)

    def _check_per_document(
        self, query: str, documents: list[Any], body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]] | None:
        """vLLM's and Infinity's own answers for one document over their limit."""
        if self.max_chars is not None:
            for i, d in enumerate(documents):
                if len(str(d)) > self.max_chars:
                    item = {
                        "type": "string_too_long",
                        "loc": ["body", "documents", i],
                        "msg": f"String should have at most {self.max_chars} characters",
                        "input": "...",
                        "ctx": {"max_length": self.max_chars},
                    }
                    return 422, {"detail": [item]}
        if self.context_length is not None:
            instruction = body.get("instruction") or ""
            for d in documents:
                cost = self.token_count(query + instruction + str(d))
                if cost > self.context_length:
                    message = (
                        f"This model's maximum context length is {self.context_length} tokens. "
                        f"However, your prompt contains at least {self.context_length + 1} "
                        "input tokens, which exceeds this limit even without any output "
                        "tokens. Please reduce the length of the input prompt. "
                        f"(parameter=input_tokens, value={self.context_length + 1})"
                    )
                    error = {"message": message, "type": "BadRequestError", "code": 400}
                    return 400, {"error": {**error, "param": "input_tokens"}}
        return None

    def _check_limits(
        self, api_format: str, query: str, documents: list[Any], body: dict[str, Any]
    ) -> dict[str, str] | None:
        if self.max_documents is not None and len(documents) > self.max_documents:
            if api_format == "tei":
                message = DOCUMENT_LIMIT_MESSAGES["tei"]
                return {
                    "error": message.format(count=len(documents), limit=self.max_documents),
                    "error_type": "Validation",
                }
            message = self.documents_message
            return {"detail": message.format(count=len(documents), limit=self.max_documents)}
        metadata = body.get("metadata") or [""] * len(documents)
        instruction = body.get("instruction") or ""
        costs = [
            self.token_count(query + instruction + str(d) + str(m))
            for d, m in zip(documents, metadata, strict=False)
        ]
        if self.max_tokens_per_document is not None and max(costs) > self.max_tokens_per_document:
            return {
                "detail": f"document too long: {max(costs)} tokens exceeds the maximum of "
                f"{self.max_tokens_per_document}"
            }
        if self.max_tokens is not None and sum(costs) > self.max_tokens:
            return {
                "detail": f"request too long: {sum(costs)} tokens exceeds the maximum of "
                f"{self.max_tokens}"
            }
        return None
