"""A scripted OpenAI-compatible HTTP server on 127.0.0.1, for tests (ours and yours).

::

    from robo_reward.llm import OpenAIBackend
    from robo_reward.llm.testing import FakeOpenAIServer, Reply

    with FakeOpenAIServer([Reply.error(500), Reply.rate_limited(0.05), "```python\\ndef compute_reward(...): ...```"]) as srv:
        llm = OpenAIBackend("fake-model", base_url=srv.base_url, api_key_env=None, backoff_s=0.01)
        text = llm.chat("write a reward").text      # third reply, after two retries
        srv.requests[0].json["messages"]             # what the client sent

The script is a list of replies, used in order (each item a :class:`Reply` or a plain
string, the completion text), or a callable ``(request_json, index) -> Reply | str``.
When a list runs out the server answers 400 with a message saying so (not retried by
clients). Replies can simulate HTTP errors, 429 with ``Retry-After``, slow answers
(for client timeouts), malformed JSON, and dropped connections.

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``) and
``GET /v1/models``. Token counts are whitespace-separated words (deterministic).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Sequence


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        text: the completion text (a list gives one choice per entry).
        status: HTTP status (200 for a completion).
        headers: extra response headers (e.g. ``Retry-After``).
        delay_s: seconds to wait before answering (to trigger client timeouts).
        body: a raw body to send instead of a completion (bytes, str, or a JSON-able object).
        finish_reason: the choices' ``finish_reason``.
        usage: the ``usage`` object; ``None`` computes word counts, ``False`` omits it.
        disconnect: close the connection without answering.
        model: the model name to report (default: the request's).
    """

    text: str | Sequence[str] = ""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes | str | Any = None
    finish_reason: str = "stop"
    usage: Mapping[str, int] | None | bool = None
    disconnect: bool = False
    model: str | None = None

    @classmethod
    def error(cls, status: int = 500, message: str = "internal server error", headers: Mapping[str, str] | None = None) -> "Reply":
        """An HTTP error with an OpenAI-style error body."""
        return cls(status=status, headers=dict(headers or {}),
                   body={"error": {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error"}})

    @classmethod
    def rate_limited(cls, retry_after: float | None = 0.1, *, header: str = "Retry-After") -> "Reply":
        """429 with a ``Retry-After`` header in seconds (or ``retry-after-ms`` in milliseconds)."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers[header] = str(int(retry_after * 1000)) if header.lower() == "retry-after-ms" else f"{retry_after:g}"
        return cls.error(429, "rate limit reached", headers)

    @classmethod
    def slow(cls, delay_s: float, text: str = "") -> "Reply":
        """A completion that arrives after ``delay_s`` seconds."""
        return cls(text=text, delay_s=delay_s)

    @classmethod
    def malformed(cls, body: bytes | str = b'{"choices": [{"message": ') -> "Reply":
        """A 200 whose body is not valid JSON (or any body you give)."""
        return cls(body=body if isinstance(body, (bytes, str)) else json.dumps(body))

    @classmethod
    def disconnected(cls) -> "Reply":
        """Drop the connection without an answer."""
        return cls(disconnect=True)


@dataclass
class ReceivedRequest:
    """A request the server got: method, path, headers, parsed JSON body (or ``None``), arrival time."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    time: float


def _words(x: Any) -> int:
    if isinstance(x, str):
        return len(x.split())
    if isinstance(x, list):
        return sum(_words(p.get("text", "")) + (1 if p.get("type") == "image_url" else 0) for p in x if isinstance(p, Mapping))
    return 0


class FakeOpenAIServer:
    """An OpenAI-compatible chat server on ``127.0.0.1`` answering from a script, in a background thread.

    Args:
        script: replies in order (:class:`Reply` or ``str``), or a callable
            ``(request_json, index) -> Reply | str``.
        model: the model listed by ``/v1/models``.
        repeat_last: when a list runs out, keep answering with its last reply.
        port: 0 picks a free port.

    Attributes:
        requests: every :class:`ReceivedRequest`, in arrival order (chat and other).
    """

    def __init__(
        self,
        script: Iterable[Reply | str] | Callable[[Any, int], Reply | str] = (),
        *,
        model: str = "fake-model",
        repeat_last: bool = False,
        port: int = 0,
    ):
        self._callable = script if callable(script) else None
        self._script: list[Reply | str] = [] if callable(script) else list(script)
        self.model = model
        self.repeat_last = repeat_last
        self.requests: list[ReceivedRequest] = []
        self._chat_count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port it listens on (after :meth:`start`)."""
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what to give a client as its base URL."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[ReceivedRequest]:
        """Only the chat-completion requests."""
        return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    def add(self, *replies: Reply | str) -> None:
        """Append replies to the script."""
        with self._lock:
            self._script.extend(replies)

    def start(self) -> "FakeOpenAIServer":
        """Start listening (done by ``with``)."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                pass

            def _record(self, body: Any) -> None:
                with server._lock:
                    server.requests.append(ReceivedRequest(self.command, self.path, dict(self.headers.items()), body, time.monotonic()))

            def _send(self, status: int, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802
                self._record(None)
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model, "object": "model"}]}).encode())
                else:
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                self._record(body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())
                    return
                if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
                    self._send(400, json.dumps({"error": {"message": "the body must be JSON with a 'messages' list"}}).encode())
                    return
                reply = server._next(body)
                if reply is None:
                    self._send(400, json.dumps({"error": {"message": (
                        f"FakeOpenAIServer: the script has no reply left ({server._chat_count - 1} served)")}}).encode())
                    return
                if reply.delay_s:
                    server._stop.wait(reply.delay_s)
                if reply.disconnect:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(2)
                    except OSError:
                        pass
                    return
                self._send(reply.status, server._body(reply, body), reply.headers)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="FakeOpenAIServer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; slow replies in progress are cut short."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> "FakeOpenAIServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- replies ---------------------------------------------------------------------------------
    def _next(self, request: Any) -> Reply | None:
        with self._lock:
            index = self._chat_count
            self._chat_count += 1
            if self._callable is None:
                if index < len(self._script):
                    item = self._script[index]
                elif self.repeat_last and self._script:
                    item = self._script[-1]
                else:
                    return None
        if self._callable is not None:
            item = self._callable(request, index)
        return Reply(text=item) if isinstance(item, str) else item

    def _body(self, reply: Reply, request: Mapping[str, Any]) -> bytes:
        if reply.body is not None:
            if isinstance(reply.body, bytes):
                return reply.body
            if isinstance(reply.body, str):
                return reply.body.encode()
            return json.dumps(reply.body).encode()
        texts = [reply.text] if isinstance(reply.text, str) else list(reply.text)
        n = int(request.get("n") or 1)
        if isinstance(reply.text, str) and n > 1:
            texts = texts * n
        data: dict[str, Any] = {
            "id": f"chatcmpl-fake-{self._chat_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or request.get("model") or self.model,
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": reply.finish_reason}
                for i, t in enumerate(texts)
            ],
        }
        if reply.usage is None:
            prompt = sum(_words(m.get("content")) for m in request.get("messages", []) if isinstance(m, Mapping))
            completion = sum(_words(t) for t in texts)
            data["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        elif reply.usage is not False:
            data["usage"] = dict(reply.usage)  # type: ignore[arg-type]
        return json.dumps(data).encode()


__all__ = ["FakeOpenAIServer", "ReceivedRequest", "Reply"]
