"""Reading an answer's body under ``max_response_bytes`` with memory bounded by the cap.

httpx decodes a compressed answer one network chunk at a time, and one chunk of a few KiB can
inflate to gigabytes (a compression bomb) before any cap is checked. So the remote backend
reads the RAW bytes and inflates them here, asking zlib for at most the room left under the
cap: memory stays within the cap plus one raw chunk, whatever the server sends. Requests
advertise only ``gzip`` and ``deflate`` (``settings.ACCEPT_ENCODING``); an answer in any other
encoding (``br``, ``zstd``, stacked encodings) is refused, since its size cannot be bounded
before it is decoded. Shared by the sync and async loops; no I/O.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from rerank_integrations.errors import RemoteResponseError

__all__ = ["BodyReader"]

_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class BodyReader:
    """Collects one answer's decoded body; :meth:`feed` is False once it passes ``cap``."""

    __slots__ = ("_body", "_cap", "_encoding", "_inflate", "_started")

    def __init__(self, headers: Mapping[str, str], cap: int) -> None:
        raw = headers.get("content-encoding", "")
        names = [n.strip().lower() for n in raw.split(",")]
        names = [n for n in names if n not in ("", "identity")]
        if len(names) > 1 or (names and names[0] not in _WBITS):
            raise RemoteResponseError(
                "the answer uses a Content-Encoding that was not asked for (only gzip and "
                "deflate are accepted: their size is bounded while decoding)"
            )
        self._encoding = names[0] if names else None
        self._inflate = zlib.decompressobj(_WBITS[self._encoding]) if self._encoding else None
        self._cap = cap
        self._body = bytearray()
        self._started = False

    def feed(self, data: bytes) -> bool:
        """Add raw bytes; False when the decoded body is now over the cap (stop reading)."""
        if self._inflate is None:
            self._body += data
            return len(self._body) <= self._cap
        while data:
            room = self._cap - len(self._body) + 1  # one byte more than fits tells "over"
            try:
                out = self._inflate.decompress(data, room)
            except zlib.error:
                if self._encoding == "deflate" and not self._started:  # raw deflate, no header
                    self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
                    self._started = True
                    continue
                raise RemoteResponseError(
                    f"the answer's {self._encoding} stream is corrupt"
                ) from None
            self._started = True
            self._body += out
            if len(self._body) > self._cap:
                return False
            data = self._inflate.unconsumed_tail
            if self._inflate.eof:
                break
        return True

    def finish(self) -> bytes | None:
        """The whole decoded body, or ``None`` when it is over the cap."""
        if self._inflate is not None and not self._inflate.eof:  # output zlib still holds
            self._body += self._inflate.decompress(b"", self._cap - len(self._body) + 1)
        return bytes(self._body) if len(self._body) <= self._cap else None
