"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 that records every POST it gets (the event
id header, the signature and the body's exact bytes) and answers with what its ``answer`` says (given, too,
the port the request came from, while its connection is still open), and the signature check as
docs/statements.md gives it to customers."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

# Connections waiting to be accepted: well above what two workers send at once (WEBHOOK_DELIVERY_BATCH_MAX
# each), so that none waits on a dropped SYN long enough for the gateway to time out and send it again.
BACKLOG_MAX = 256

R = TypeVar("R", bound="Receiver")


def verify(secret: str, header: str, body: bytes, tolerance_s: int = 300) -> bool:
    """The receiver's check, as docs/statements.md gives it."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - int(fields["t"])) <= tolerance_s


@dataclass
class Receiver:
    """Records each request and accepts it (200); a subclass answers otherwise by overriding ``answer``."""

    url: str = ""
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)  # (event id header, signature, body)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event_id: str, signature: str, body: bytes) -> int:
        """Keep the request; how many there have been, this one included."""
        with self.lock:
            self.requests.append((event_id, signature, body))
            return len(self.requests)

    def answer(self, event_id: str, signature: str, body: bytes, sender_port: int = 0) -> int:
        self.record(event_id, signature, body)
        return 200


class _Server(ThreadingHTTPServer):
    request_queue_size = BACKLOG_MAX


@contextlib.contextmanager
def receiving(state: R) -> Iterator[R]:
    """Serve ``state`` on a free port of 127.0.0.1 (its ``url`` set) while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            event_id, signature = self.headers["suanli-event-id"], self.headers["suanli-signature"]
            status = state.answer(event_id, signature, body, self.client_address[1])
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
