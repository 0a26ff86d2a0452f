"""LLM backends: OpenAI-compatible chat completions over HTTP, and replay of recorded runs.

:class:`OpenAIBackend` speaks the ``/chat/completions`` protocol that OpenAI, vLLM,
Ollama, llama.cpp's server and LM Studio share::

    from robo_reward.llm import OpenAIBackend, user_message

    llm = OpenAIBackend("qwen2.5-coder", base_url="http://127.0.0.1:8000/v1", api_key_env="VLLM_API_KEY",
                        record="runs/llm.jsonl")
    reply = llm.chat([user_message("Write a reward for Reacher.")], temperature=0.7, max_tokens=800)
    reply.text, reply.prompt_tokens, llm.usage.summary()

* The API key is read from the environment variable named by ``api_key_env`` (never
  passed as a value, never recorded); without it no ``Authorization`` header is sent,
  which local servers accept.
* Retries with exponential backoff (``backoff_s * 2**attempt``, capped, with jitter) on
  429, 408, 5xx, connection errors and timeouts; ``Retry-After`` / ``retry-after-ms``
  headers are honoured (capped at ``max_backoff_s``). Other 4xx fail at once.
* Errors are :class:`LLMError` subclasses; a reply that is not the expected JSON is an
  :class:`LLMResponseError` saying what was wrong.
* Images go in messages as OpenAI content parts (:func:`image_part`), for VLM labelling.
* ``record=path`` appends every request/response pair, with token counts, to a JSONL
  file; :class:`ReplayBackend` answers from such a file without a server, keyed by a
  hash of the request (model, messages, sampling parameters). Identical requests
  recorded several times (``K`` samples at temperature 1) are replayed in order.
* :class:`Usage` accumulates requests, tokens and cost (from a price table you give,
  USD per million tokens; default 0) per run; several backends may share one.
"""

from __future__ import annotations

import abc
import base64
import email.utils
import hashlib
import json
import os
import random
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..core.errors import ConfigError, RoboRewardError, require

Message = dict[str, Any]

# ------------------------------------------------------------------------------------ errors


class LLMError(RoboRewardError):
    """Base class of errors from LLM backends."""


class LLMHTTPError(LLMError):
    """The server answered with an HTTP error status.

    Attributes:
        status: the HTTP status code.
        body: the start of the response body.
    """

    def __init__(self, message: str, status: int, body: str = ""):
        super().__init__(message)
        self.status = status
        self.body = body


class LLMAuthError(LLMHTTPError):
    """401/403: the API key is missing or wrong."""


class LLMRateLimitError(LLMHTTPError):
    """429 after all retries."""


class LLMServerError(LLMHTTPError):
    """5xx after all retries."""


class LLMTimeoutError(LLMError):
    """The server did not answer in time, after all retries."""


class LLMConnectionError(LLMError):
    """The server could not be reached, after all retries."""


class LLMResponseError(LLMError):
    """The server's reply is not a well-formed chat completion (bad JSON, missing fields, no text)."""


class ReplayMissError(LLMError):
    """A replayed run asked for a request that the recording does not hold (or holds fewer times)."""


# ---------------------------------------------------------------------------- message helpers


def text_part(text: str) -> dict[str, Any]:
    """A text content part: ``{"type": "text", "text": text}``."""
    return {"type": "text", "text": str(text)}


def encode_png(image: Any) -> bytes:
    """Encode a ``uint8`` array (``[H, W]``, ``[H, W, 3]`` or ``[H, W, 4]``) as PNG, with the standard library only."""
    import numpy as np

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ConfigError(f"images must be uint8 arrays, got dtype {arr.dtype}")
    if arr.ndim == 2:
        color = 0
        arr = arr[:, :, None]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        color = 2 if arr.shape[2] == 3 else 6
    else:
        raise ConfigError(f"images must be [H, W], [H, W, 3] or [H, W, 4], got shape {arr.shape}")
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def image_part(image: Any, *, detail: str | None = None, mime: str | None = None) -> dict[str, Any]:
    """An image content part (``{"type": "image_url", "image_url": {"url": "data:..."}}``).

    Args:
        image: a ``uint8`` array (encoded as PNG), encoded image bytes, a file path, or an
            ``http(s)://`` / ``data:`` URL (passed through).
        detail: OpenAI's ``"low"``, ``"high"`` or ``"auto"`` (omitted when ``None``).
        mime: the type of ``bytes``/file input (guessed from the magic bytes otherwise).
    """
    if isinstance(image, str) and image.startswith(("http://", "https://", "data:")):
        url = image
    else:
        if isinstance(image, (str, Path)):
            data = Path(image).read_bytes()
        elif isinstance(image, (bytes, bytearray)):
            data = bytes(image)
        else:
            data, mime = encode_png(image), "image/png"
        if mime is None:
            if data.startswith(b"\x89PNG"):
                mime = "image/png"
            elif data.startswith(b"\xff\xd8"):
                mime = "image/jpeg"
            elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
                mime = "image/webp"
            elif data[:6] in (b"GIF87a", b"GIF89a"):
                mime = "image/gif"
            else:
                raise ConfigError("cannot tell the image type from its bytes; pass mime='image/...'")
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    inner: dict[str, Any] = {"url": url}
    if detail is not None:
        inner["detail"] = detail
    return {"type": "image_url", "image_url": inner}


def system_message(text: str) -> Message:
    """``{"role": "system", "content": text}``."""
    return {"role": "system", "content": str(text)}


def assistant_message(text: str) -> Message:
    """``{"role": "assistant", "content": text}`` (for few-shot turns and multi-turn refinement)."""
    return {"role": "assistant", "content": str(text)}


def user_message(text: str, images: Iterable[Any] = (), *, detail: str | None = None) -> Message:
    """A user message; with ``images`` its content is a list of parts (text first, then each image)."""
    images = list(images)
    if not images:
        return {"role": "user", "content": str(text)}
    return {"role": "user", "content": [text_part(text), *(image_part(im, detail=detail) for im in images)]}


def _check_messages(messages: Any) -> list[Message]:
    if isinstance(messages, str):
        return [user_message(messages)]
    if isinstance(messages, Mapping):
        messages = [messages]
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or "role" not in m or "content" not in m:
            raise ConfigError(f"message {i} must be a dict with 'role' and 'content', got {m!r:.200}")
        if m["role"] not in ("system", "user", "assistant", "developer", "tool"):
            raise ConfigError(f"message {i} has unknown role {m['role']!r}")
        content = m["content"]
        if isinstance(content, list):
            for part in content:
                if not isinstance(part, Mapping) or part.get("type") not in ("text", "image_url", "input_audio"):
                    raise ConfigError(f"message {i} has a content part that is not text or image_url: {part!r:.200}")
        elif not isinstance(content, str):
            raise ConfigError(f"message {i} content must be a string or a list of parts, got {type(content).__name__}")
        out.append(dict(m))
    if not out:
        raise ConfigError("a chat request needs at least one message")
    return out


# ------------------------------------------------------------------------------ requests/replies

_SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "n", "stop", "seed", "presence_penalty",
                  "frequency_penalty", "response_format", "max_completion_tokens", "logit_bias", "top_k")


@dataclass(frozen=True)
class ChatRequest:
    """One chat-completion request.

    Attributes:
        model: model name as the server knows it.
        messages: OpenAI-format messages (content a string or a list of parts).
        params: sampling parameters (``temperature``, ``max_tokens``, ``n``, ``seed``,
            ``stop``, ...), only those set.
    """

    model: str
    messages: tuple[Message, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON body sent to ``/chat/completions``."""
        return {"model": self.model, "messages": list(self.messages), **dict(self.params)}

    def key(self) -> str:
        """SHA-256 of the canonical JSON of :meth:`payload` (what replay files are keyed by)."""
        canon = json.dumps(self.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


@dataclass
class ChatResponse:
    """A parsed chat completion.

    Attributes:
        texts: the text of each choice (``n`` of them).
        finish_reasons: each choice's ``finish_reason`` (``"stop"``, ``"length"``, ...).
        model: the model that answered (as the server reports it).
        prompt_tokens, completion_tokens: the server's token counts (``None`` when it sent none).
        raw: the response JSON as received.
        latency_s: seconds the request took (including retries); as recorded, for replays.
        replayed: whether it came from a recording.
        request_key: :meth:`ChatRequest.key` of the request.
    """

    texts: list[str]
    finish_reasons: list[str | None]
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    raw: dict[str, Any]
    latency_s: float = 0.0
    replayed: bool = False
    request_key: str = ""

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.texts[0]

    @property
    def truncated(self) -> bool:
        """Whether the first choice stopped at the token limit (``finish_reason == "length"``)."""
        return self.finish_reasons[0] == "length"


def parse_chat_response(data: Any, request_model: str = "") -> ChatResponse:
    """Parse an OpenAI chat-completion JSON object.

    Raises:
        LLMResponseError: the object lacks ``choices``/``message``/text, or holds an ``error``.
    """
    if not isinstance(data, Mapping):
        raise LLMResponseError(f"the reply is JSON but not an object: {json.dumps(data)[:200]}")
    if "error" in data and "choices" not in data:
        err = data["error"]
        msg = err.get("message") if isinstance(err, Mapping) else err
        raise LLMResponseError(f"the server returned an error object instead of a completion: {str(msg)[:500]}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise LLMResponseError(f"the reply has no 'choices' list (keys: {sorted(data)[:20]})")
    texts: list[str] = []
    reasons: list[str | None] = []
    for i, ch in enumerate(choices):
        msg = ch.get("message") if isinstance(ch, Mapping) else None
        if not isinstance(msg, Mapping):
            raise LLMResponseError(f"choice {i} of the reply has no 'message' object")
        content = msg.get("content")
        if isinstance(content, list):  # some servers return content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") in ("text", "output_text"))
        if not isinstance(content, str):
            if msg.get("refusal"):
                raise LLMResponseError(f"the model refused (choice {i}): {str(msg['refusal'])[:500]}")
            what = "tool calls" if msg.get("tool_calls") else "no text"
            raise LLMResponseError(f"choice {i} of the reply has {what} ('content' is {type(content).__name__})")
        texts.append(content)
        fr = ch.get("finish_reason")
        reasons.append(fr if isinstance(fr, str) else None)
    usage = data.get("usage")
    pt = ct = None
    if isinstance(usage, Mapping):
        pt = usage.get("prompt_tokens")
        ct = usage.get("completion_tokens")
        pt = int(pt) if isinstance(pt, (int, float)) and not isinstance(pt, bool) else None
        ct = int(ct) if isinstance(ct, (int, float)) and not isinstance(ct, bool) else None
    model = data.get("model") if isinstance(data.get("model"), str) else request_model
    return ChatResponse(texts, reasons, model, pt, ct, dict(data))


# ------------------------------------------------------------------------------------- usage


@dataclass(frozen=True)
class Price:
    """USD per million input (prompt) and output (completion) tokens."""

    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Cost of one request."""
        return prompt_tokens * self.input_per_mtok / 1e6 + completion_tokens * self.output_per_mtok / 1e6


def _as_price(value: Any) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping):
        return Price(float(value.get("input", value.get("input_per_mtok", 0.0))),
                     float(value.get("output", value.get("output_per_mtok", 0.0))))
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return Price(float(value[0]), float(value[1]))
    raise ConfigError(f"a price must be Price(input, output), (input, output) or {{'input':..,'output':..}}, got {value!r}")


class Usage:
    """Requests, tokens and cost accumulated over a run (thread-safe).

    Args:
        prices: ``{model: price}`` in USD per million tokens, each a :class:`Price`,
            an ``(input, output)`` pair or ``{"input": .., "output": ..}``; the key
            ``"*"`` applies to models not listed. Models without a price cost 0.
    """

    def __init__(self, prices: Mapping[str, Any] | None = None):
        self.prices = {str(k): _as_price(v) for k, v in (prices or {}).items()}
        self._lock = threading.Lock()
        self.requests = 0
        self.replayed = 0
        self.unreported = 0
        self.retries = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.by_model: dict[str, dict[str, float]] = {}

    def price_of(self, model: str) -> Price:
        """The price used for ``model`` (exact name, then ``"*"``, then 0)."""
        return self.prices.get(model) or self.prices.get("*") or Price()

    def add(self, model: str, prompt_tokens: int | None, completion_tokens: int | None, *,
            replayed: bool = False, retries: int = 0) -> float:
        """Count one request; returns its cost. ``None`` token counts are counted as unreported."""
        cost = self.price_of(model).cost(prompt_tokens or 0, completion_tokens or 0)
        with self._lock:
            self.requests += 1
            self.replayed += int(replayed)
            self.retries += int(retries)
            if prompt_tokens is None or completion_tokens is None:
                self.unreported += 1
            self.prompt_tokens += prompt_tokens or 0
            self.completion_tokens += completion_tokens or 0
            self.cost += cost
            m = self.by_model.setdefault(model, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0})
            m["requests"] += 1
            m["prompt_tokens"] += prompt_tokens or 0
            m["completion_tokens"] += completion_tokens or 0
            m["cost"] += cost
        return cost

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-ready values."""
        with self._lock:
            return {
                "requests": self.requests, "replayed": self.replayed, "retries": self.retries,
                "unreported_usage": self.unreported, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "total_tokens": self.total_tokens,
                "cost_usd": round(self.cost, 6), "by_model": {k: dict(v) for k, v in self.by_model.items()},
            }

    def summary(self) -> str:
        """One line: requests, tokens, cost."""
        extra = f", {self.replayed} replayed" if self.replayed else ""
        extra += f", {self.unreported} without token counts" if self.unreported else ""
        return (f"{self.requests} LLM requests{extra}: {self.prompt_tokens} prompt + {self.completion_tokens} "
                f"completion tokens, ${self.cost:.4f}")

    def __repr__(self) -> str:
        return f"Usage({self.summary()})"


# ------------------------------------------------------------------------------------ record


class Recorder:
    """Appends request/response pairs to a JSONL file (one JSON object per line, flushed each time).

    Each line: ``{"version": 1, "key", "model", "request", "response", "usage":
    {"prompt_tokens", "completion_tokens"}, "latency_s", "time"}``. The API key and
    headers are never written.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, request: ChatRequest, response: ChatResponse) -> None:
        """Append one pair."""
        line = json.dumps({
            "version": 1,
            "key": request.key(),
            "model": request.model,
            "request": request.payload(),
            "response": response.raw,
            "usage": {"prompt_tokens": response.prompt_tokens, "completion_tokens": response.completion_tokens},
            "latency_s": round(response.latency_s, 4),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()


# ----------------------------------------------------------------------------------- backends


class LLMBackend(abc.ABC):
    """A chat model. Subclasses implement :meth:`complete`.

    Attributes:
        model: the model name requests are made for.
        usage: the :class:`Usage` this backend adds to.
        defaults: sampling parameters applied to every request unless overridden.
    """

    model: str
    usage: Usage
    defaults: dict[str, Any]

    def request(self, messages: Any, **params: Any) -> ChatRequest:
        """Build the :class:`ChatRequest` that :meth:`chat` would send (``None`` values are dropped)."""
        unknown = [k for k in params if k not in _SAMPLING_KEYS and k != "extra"]
        extra = dict(params.pop("extra", None) or {})
        if unknown:
            raise ConfigError(
                f"unknown chat parameter(s) {unknown}; known: {', '.join(_SAMPLING_KEYS)} "
                "(pass anything else in extra={...})"
            )
        merged = {**self.defaults, **{k: v for k, v in params.items() if v is not None}, **extra}
        if merged.get("n", 1) == 1:
            merged.pop("n", None)
        return ChatRequest(self.model, tuple(_check_messages(messages)), merged)

    def chat(
        self,
        messages: Any,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        n: int | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        seed: int | None = None,
        **params: Any,
    ) -> ChatResponse:
        """Send one chat request and return the parsed reply.

        Args:
            messages: OpenAI-format messages (a plain string is one user message).
            temperature, max_tokens, n, top_p, stop, seed: sampling parameters (``None`` =
                the backend's default / the server's).
            **params: other OpenAI parameters (``presence_penalty``, ``response_format``...),
                or ``extra={...}`` for server-specific ones.
        """
        req = self.request(messages, temperature=temperature, max_tokens=max_tokens, n=n, top_p=top_p,
                           stop=stop, seed=seed, **params)
        return self.complete(req)

    @abc.abstractmethod
    def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer a built :class:`ChatRequest`."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release connections."""

    def __enter__(self) -> "LLMBackend":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


def _retry_after(headers: Mapping[str, str]) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, Mapping) else None
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])[:500]
        if isinstance(err, str):
            return err[:500]
    except (ValueError, AttributeError):
        pass
    return body.strip()[:500]


class OpenAIBackend(LLMBackend):
    """Chat completions from any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio).

    Args:
        model: the model name the server knows.
        base_url: the API root, e.g. ``https://api.openai.com/v1``,
            ``http://127.0.0.1:8000/v1`` (vLLM), ``http://127.0.0.1:11434/v1`` (Ollama).
        api_key_env: name of the environment variable holding the API key (``None``: never
            send one). Read once, here; if unset no ``Authorization`` header is sent.
        timeout_s: seconds to wait for a reply (read timeout per attempt).
        connect_timeout_s: seconds to wait for a connection.
        max_retries: retries after the first attempt on 429/408/5xx, connection errors and timeouts.
        backoff_s: first backoff; doubled each retry, capped at ``max_backoff_s``.
        max_backoff_s: longest wait between attempts (also caps ``Retry-After``).
        jitter: relative random spread of the backoff (0 = none).
        prices: price table for :class:`Usage` (ignored if ``usage`` is given).
        usage: an existing :class:`Usage` to add to (shared across backends of a run).
        record: JSONL file to append every request/response pair to (see :class:`Recorder`).
        defaults: sampling parameters for every request (e.g. ``{"temperature": 0.7}``).
        headers: extra HTTP headers.
        transport: an ``httpx`` transport (tests).
    """

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        *,
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        max_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        jitter: float = 0.1,
        prices: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
        record: str | Path | None = None,
        defaults: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        transport: Any = None,
    ):
        httpx = require("httpx", extra="llm", feature="LLM backends")
        if not model:
            raise ConfigError("an LLM backend needs a model name")
        if not str(base_url).startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0 or backoff_s < 0 or max_backoff_s < 0 or timeout_s <= 0:
            raise ConfigError("max_retries, backoff_s and max_backoff_s must be >= 0 and timeout_s > 0")
        self.model = str(model)
        self.base_url = str(base_url).rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) if api_key_env else None
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.jitter = float(jitter)
        self.usage = usage if usage is not None else Usage(prices)
        self.recorder = Recorder(record) if record is not None else None
        self.defaults = {k: v for k, v in dict(defaults or {}).items() if v is not None}
        hdrs = {"Content-Type": "application/json", "Accept": "application/json", **dict(headers or {})}
        if self._api_key:
            hdrs["Authorization"] = f"Bearer {self._api_key}"
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=hdrs,
            timeout=httpx.Timeout(self.timeout_s, connect=float(connect_timeout_s)),
            transport=transport,
            follow_redirects=False,
        )
        self._rng = random.Random()

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_s)
        base = min(self.backoff_s * (2 ** attempt), self.max_backoff_s)
        if self.jitter:
            base *= 1.0 + self.jitter * self._rng.uniform(-1.0, 1.0)
        return max(0.0, min(base, self.max_backoff_s))

    def complete(self, request: ChatRequest) -> ChatResponse:
        """POST the request to ``{base_url}/chat/completions``, retrying as configured."""
        httpx = self._httpx
        body = json.dumps(request.payload(), ensure_ascii=False).encode("utf-8")
        url = f"{self.base_url}/chat/completions"
        t0 = time.monotonic()
        last: LLMError | None = None
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                resp = self._client.post("/chat/completions", content=body)
            except httpx.TimeoutException as exc:
                last = LLMTimeoutError(
                    f"{url} did not answer within {self.timeout_s:g} s ({type(exc).__name__}) "
                    f"after {attempt + 1} attempt(s); raise timeout_s or check the server"
                )
            except httpx.TransportError as exc:
                last = LLMConnectionError(
                    f"cannot reach {url}: {type(exc).__name__}: {exc} (after {attempt + 1} attempt(s)); "
                    "is the server running and the base_url right?"
                )
            else:
                status = resp.status_code
                if status == 200:
                    try:
                        data = resp.json()
                    except ValueError:
                        raise LLMResponseError(
                            f"{url} answered 200 but the body is not JSON: {resp.text[:300]!r}"
                        ) from None
                    out = parse_chat_response(data, request.model)
                    out.latency_s = time.monotonic() - t0
                    out.request_key = request.key()
                    self.usage.add(request.model, out.prompt_tokens, out.completion_tokens, retries=attempt)
                    if self.recorder is not None:
                        self.recorder.write(request, out)
                    return out
                text = resp.text[:2000]
                detail = _error_text(text)
                if status in (401, 403):
                    hint = (f"set the environment variable {self.api_key_env}" if self.api_key_env and not self._api_key
                            else "check the API key")
                    raise LLMAuthError(f"{url} refused the request ({status}): {detail}; {hint}", status, text)
                if status not in _RETRY_STATUSES and status < 500:
                    raise LLMHTTPError(f"{url} rejected the request ({status}): {detail}", status, text)
                retry_after = _retry_after({k.lower(): v for k, v in resp.headers.items()})
                cls = LLMRateLimitError if status == 429 else LLMServerError if status >= 500 else LLMHTTPError
                last = cls(f"{url} answered {status} after {attempt + 1} attempt(s): {detail}", status, text)
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, retry_after))
        assert last is not None
        raise last

    def list_models(self) -> list[str]:
        """The model ids the server lists at ``GET {base_url}/models``."""
        try:
            resp = self._client.get("/models")
        except self._httpx.HTTPError as exc:
            raise LLMConnectionError(f"cannot reach {self.base_url}/models: {exc}") from exc
        if resp.status_code != 200:
            raise LLMHTTPError(f"{self.base_url}/models answered {resp.status_code}: {_error_text(resp.text)}",
                               resp.status_code, resp.text[:2000])
        try:
            return [str(m["id"]) for m in resp.json()["data"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMResponseError(f"{self.base_url}/models did not return a model list: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP connections."""
        self._client.close()

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"


class ReplayBackend(LLMBackend):
    """Answers from a JSONL recording (see :class:`Recorder`) without any server.

    Requests are matched by :meth:`ChatRequest.key` (model, messages, sampling
    parameters). A request recorded ``k`` times is answered with the ``k`` recorded
    responses in order; asking once more raises :class:`ReplayMissError` (or, with
    ``cycle=True``, starts again from the first).

    Args:
        path: the recording (several files may be given as a list).
        model: the model name requests are made for (default: the recording's, if it
            holds a single model).
        fallback: a backend to ask on a miss (e.g. an :class:`OpenAIBackend` with
            ``record=`` set, to extend the recording); without one a miss is an error.
        cycle: start again from the first response when the recorded ones run out.
        prices, usage: as for :class:`OpenAIBackend`; replayed tokens are counted too.
        defaults: sampling parameters for every request.
    """

    def __init__(
        self,
        path: str | Path | Sequence[str | Path],
        model: str | None = None,
        *,
        fallback: LLMBackend | None = None,
        cycle: bool = False,
        prices: Mapping[str, Any] | None = None,
        usage: Usage | None = None,
        defaults: Mapping[str, Any] | None = None,
    ):
        paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
        self.paths = paths
        self._records: dict[str, list[dict[str, Any]]] = {}
        models: list[str] = []
        for p in paths:
            if not p.is_file():
                raise ConfigError(f"replay file {p} does not exist")
            with open(p, encoding="utf-8") as fh:
                for lineno, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        key = rec["key"]
                        rec["response"]  # noqa: B018 - must exist
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ConfigError(f"{p} line {lineno} is not a recorded LLM exchange: {exc}") from exc
                    self._records.setdefault(key, []).append(rec)
                    if rec.get("model") and rec["model"] not in models:
                        models.append(rec["model"])
        if model is None:
            if len(models) != 1:
                raise ConfigError(
                    f"the replay files hold {len(models)} models ({', '.join(models) or 'none'}); pass model=..."
                )
            model = models[0]
        self.model = str(model)
        self.fallback = fallback
        self.cycle = bool(cycle)
        self.usage = usage if usage is not None else Usage(prices)
        self.defaults = {k: v for k, v in dict(defaults or {}).items() if v is not None}
        self._cursor: dict[str, int] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())

    def complete(self, request: ChatRequest) -> ChatResponse:
        """Return the next recorded response for this request."""
        key = request.key()
        with self._lock:
            recs = self._records.get(key, [])
            i = self._cursor.get(key, 0)
            if i >= len(recs) and self.cycle and recs:
                i = 0
            rec = recs[i] if i < len(recs) else None
            if rec is not None:
                self._cursor[key] = i + 1
        if rec is None:
            if self.fallback is not None:
                return self.fallback.complete(request)
            where = ", ".join(map(str, self.paths))
            if recs:
                raise ReplayMissError(
                    f"{where} recorded this request {len(recs)} time(s) and all were used; "
                    "record more samples or pass cycle=True"
                )
            raise ReplayMissError(
                f"{where} holds no response for this request (model {request.model!r}, "
                f"{len(request.messages)} messages, params {dict(request.params)}, key {key[:12]}...). "
                "The prompt or sampling parameters differ from the recorded run; record again "
                "(OpenAIBackend(record=...)) or give ReplayBackend a fallback backend"
            )
        out = parse_chat_response(rec["response"], request.model)
        out.latency_s = float(rec.get("latency_s") or 0.0)
        out.replayed = True
        out.request_key = key
        self.usage.add(request.model, out.prompt_tokens, out.completion_tokens, replayed=True)
        return out

    def __repr__(self) -> str:
        return f"ReplayBackend({', '.join(map(str, self.paths))}, model={self.model!r}, {len(self)} responses)"


# ------------------------------------------------------------------------------------- factory

_BACKENDS: dict[str, Callable[..., LLMBackend]] = {
    "openai": OpenAIBackend,
    "replay": ReplayBackend,
}


def make_backend(spec: Any, **overrides: Any) -> LLMBackend:
    """Make a backend from a spec string, a mapping or an instance.

    Examples::

        make_backend("openai:model=gpt-4o-mini")
        make_backend("openai:model=qwen2.5-coder,base_url=http://127.0.0.1:8000/v1,api_key_env=VLLM_KEY")
        make_backend("replay:path=assets/llm/reacher.jsonl")
        make_backend({"name": "openai", "model": "llama3.1", "base_url": "http://127.0.0.1:11434/v1"})

    Raises:
        ConfigError: unknown backend name or arguments.
    """
    if isinstance(spec, LLMBackend):
        if overrides:
            raise ConfigError("keyword arguments cannot be applied to an already-built LLM backend")
        return spec
    if isinstance(spec, str):
        from ..core.registry import parse_spec

        name, kwargs = parse_spec(spec)
    elif isinstance(spec, Mapping):
        kwargs = dict(spec)
        if "name" not in kwargs:
            raise ConfigError(f"an LLM backend mapping needs a 'name' key ({', '.join(_BACKENDS)})")
        name = kwargs.pop("name")
    else:
        raise ConfigError(f"cannot make an LLM backend from {type(spec).__name__}")
    kwargs.update(overrides)
    factory = _BACKENDS.get(name)
    if factory is None:
        raise ConfigError(f"unknown LLM backend {name!r}; known: {', '.join(_BACKENDS)}")
    for k in ("model", "base_url", "api_key_env"):
        if k in kwargs and kwargs[k] is not None:
            kwargs[k] = str(kwargs[k])
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for LLM backend {name!r}: {exc}") from exc


__all__ = [
    "ChatRequest", "ChatResponse", "LLMAuthError", "LLMBackend", "LLMConnectionError", "LLMError",
    "LLMHTTPError", "LLMRateLimitError", "LLMResponseError", "LLMServerError", "LLMTimeoutError", "Message",
    "OpenAIBackend", "Price", "Recorder", "ReplayBackend", "ReplayMissError", "Usage", "assistant_message",
    "encode_png", "image_part", "make_backend", "parse_chat_response", "system_message", "text_part",
    "user_message",
]
