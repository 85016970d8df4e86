"""A tiny HTTP server with byte-range requests, on 127.0.0.1, for remote-scene tests.

Python's ``http.server`` ignores ``Range`` headers (it always sends the whole file), which is
not how object stores or COG hosts behave, so this handler answers ``Range: bytes=a-b`` with
``206 Partial Content`` and only those bytes. It records every request (method, path, range,
bytes sent) so tests can check that remote reads are range reads.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Log:
    """Requests served: ``(method, path, range header or '', bytes sent)``."""

    requests: list[tuple[str, str, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *entry: Any) -> None:
        with self.lock:
            self.requests.append(entry)  # type: ignore[arg-type]

    def bytes_for(self, suffix: str) -> int:
        return sum(n for _, p, _, n in self.requests if p.endswith(suffix))

    def whole_file_gets(self, suffix: str) -> list[str]:
        return [p for m, p, r, _ in self.requests if m == "GET" and p.endswith(suffix) and not r]


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with single byte ranges; no directory listings."""

    log: Log

    def __init__(self, *args: Any, log: Log, **kwargs: Any) -> None:
        self.log = log
        super().__init__(*args, **kwargs)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def _serve(self, body: bool) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            self.log.add(self.command, self.path, "", 0)
            return
        size = path.stat().st_size
        header = self.headers.get("Range", "")
        start, end = 0, size - 1
        status = HTTPStatus.OK
        if header:
            m = _RANGE.match(header.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self.send_error(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or end < start:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if body:
            with open(path, "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    chunk = f.read(min(left, 1 << 16))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
                    sent += len(chunk)
        self.log.add(self.command, self.path, header, sent)


@contextmanager
def serve(root: os.PathLike[str] | str) -> Iterator[tuple[str, Log]]:
    """Serve ``root`` on ``http://127.0.0.1:<free port>``; yields ``(base URL, request log)``."""
    log = Log()
    handler = partial(RangeHandler, directory=str(root), log=log)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
