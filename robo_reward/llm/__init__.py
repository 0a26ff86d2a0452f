"""LLM backends: OpenAI-compatible chat completions, recorded replays, token and cost accounting.

Importing this package does not import an HTTP client; :class:`OpenAIBackend` loads
``httpx`` when it is built. :mod:`robo_reward.llm.testing` has a scripted
OpenAI-compatible server on 127.0.0.1 for tests.
"""

from __future__ import annotations

from .backends import (
    ChatRequest,
    ChatResponse,
    LLMAuthError,
    LLMBackend,
    LLMConnectionError,
    LLMError,
    LLMHTTPError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    Message,
    OpenAIBackend,
    Price,
    Recorder,
    ReplayBackend,
    ReplayMissError,
    Usage,
    assistant_message,
    encode_png,
    image_part,
    make_backend,
    parse_chat_response,
    system_message,
    text_part,
    user_message,
)

__all__ = [
    "ChatRequest",
    "ChatResponse",
    "LLMAuthError",
    "LLMBackend",
    "LLMConnectionError",
    "LLMError",
    "LLMHTTPError",
    "LLMRateLimitError",
    "LLMResponseError",
    "LLMServerError",
    "LLMTimeoutError",
    "Message",
    "OpenAIBackend",
    "Price",
    "Recorder",
    "ReplayBackend",
    "ReplayMissError",
    "Usage",
    "assistant_message",
    "encode_png",
    "image_part",
    "make_backend",
    "parse_chat_response",
    "system_message",
    "text_part",
    "user_message",
]
