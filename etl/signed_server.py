"""A local HTTP server in a thread that accepts only signed requests: the base of the simulated
department API and of the exchanges' reference receivers (STANDARDS.md: X-Client-Id,
X-Timestamp, X-Nonce, X-Signature). A nonce is accepted once within the signature's validity."""

from __future__ import annotations

import sys
import threading
import time
from http.server import ThreadingHTTPServer

from etl.signing import VALID_FOR_MS, verify


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that gave up (timeouts in tests) is not an error worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class SignedServer:
    """Lifecycle (start/stop, context manager, port) and request authentication; subclasses
    give the request handler class and their routes."""

    thread_name = "signed-server"

    def __init__(self, handler, clients: dict[str, str], host: str = "127.0.0.1", port: int = 0):
        self.clients = clients
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._httpd = QuietServer((host, port), handler)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    # How often serve_forever looks for a shutdown: stop() waits for the next look, up to
    # half a second at socketserver's default, a quarter of a night that brought nothing new.
    POLL_SECONDS = 0.02

    def start(self):
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": self.POLL_SECONDS},
            daemon=True,
            name=f"{self.thread_name}-{self.port}",
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever()
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self):
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def authenticate(self, headers: dict[str, str]) -> str | None:
        """Why the request is refused (bad signature, expired, replayed nonce), or None."""
        reason = verify(headers, self.clients)
        if reason:
            return reason
        nonce, now = headers.get("X-Nonce", ""), time.time()
        with self._lock:
            for old in [n for n, t in self._nonces.items() if now - t > VALID_FOR_MS / 1000]:
                del self._nonces[old]
            if nonce in self._nonces:
                return "nonce already used (replay)"
            self._nonces[nonce] = now
        return None
