"""LLM backends against a scripted OpenAI-compatible server on 127.0.0.1, and recorded replays."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import zlib

import numpy as np
import pytest

from robo_reward.core.errors import ConfigError, RoboRewardError
from robo_reward.llm import (
    LLMAuthError,
    LLMConnectionError,
    LLMHTTPError,
    LLMRateLimitError,
    LLMResponseError,
    LLMServerError,
    LLMTimeoutError,
    OpenAIBackend,
    Price,
    ReplayBackend,
    ReplayMissError,
    Usage,
    encode_png,
    image_part,
    make_backend,
    system_message,
    user_message,
)
from robo_reward.llm.testing import FakeOpenAIServer, Reply

pytestmark = pytest.mark.timeout(60)


def _backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    kw = {"api_key_env": None, "backoff_s": 0.01, "jitter": 0.0, "timeout_s": 5.0, "max_retries": 3, **kw}
    return OpenAIBackend("fake-model", base_url=srv.base_url, **kw)


def _gaps(srv: FakeOpenAIServer) -> list[float]:
    t = [r.time for r in srv.chat_requests]
    return [b - a for a, b in zip(t, t[1:])]


# ------------------------------------------------------------------------------ happy path


def test_happy_path_sends_openai_request_and_parses_reply(monkeypatch):
    monkeypatch.setenv("RR_TEST_KEY", "sk-test-123")
    with FakeOpenAIServer(["def compute_reward(obs): return obs"]) as srv:
        with _backend(srv, api_key_env="RR_TEST_KEY") as llm:
            out = llm.chat([system_message("be brief"), user_message("write a reward")], temperature=0.2,
                           max_tokens=100, seed=3)
        req = srv.chat_requests[0]
    assert out.text == "def compute_reward(obs): return obs"
    assert out.finish_reasons == ["stop"] and not out.truncated and not out.replayed
    assert out.prompt_tokens == 5 and out.completion_tokens == 4
    assert req.path == "/v1/chat/completions"
    assert req.headers["Authorization"] == "Bearer sk-test-123"
    assert req.json == {"model": "fake-model", "temperature": 0.2, "max_tokens": 100, "seed": 3,
                        "messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": "write a reward"}]}
    assert "sk-test-123" not in repr(llm)


def test_no_key_no_authorization_header_and_defaults(monkeypatch):
    monkeypatch.delenv("RR_MISSING_KEY", raising=False)
    with FakeOpenAIServer(["a", "b"]) as srv:
        llm = _backend(srv, api_key_env="RR_MISSING_KEY", defaults={"temperature": 0.7, "max_tokens": 50})
        llm.chat("hello")
        llm.chat("hello", temperature=0.1)
        reqs = srv.chat_requests
    assert "Authorization" not in reqs[0].headers
    assert reqs[0].json["temperature"] == 0.7 and reqs[0].json["max_tokens"] == 50
    assert reqs[1].json["temperature"] == 0.1
    assert reqs[0].json["messages"] == [{"role": "user", "content": "hello"}]


def test_several_choices_and_callable_script():
    def script(request, index):
        return Reply(text=[f"{request['messages'][-1]['content']}-{i}" for i in range(request.get("n", 1))])

    with FakeOpenAIServer(script) as srv:
        out = _backend(srv).chat("q", n=3)
    assert out.texts == ["q-0", "q-1", "q-2"]


def test_images_travel_as_openai_content_parts():
    frame = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    with FakeOpenAIServer(["a red arm"]) as srv:
        _backend(srv).chat([user_message("describe", images=[frame], detail="low")])
        content = srv.chat_requests[0].json["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "describe"}
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["detail"] == "low"
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_encode_png_is_a_valid_png():
    img = (np.arange(6 * 7 * 3) % 256).astype(np.uint8).reshape(6, 7, 3)
    png = encode_png(img)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h, depth, color = struct.unpack(">IIBB", png[16:26])
    assert (w, h, depth, color) == (7, 6, 8, 2)
    idat_len = struct.unpack(">I", png[33:37])[0]
    raw = zlib.decompress(png[41:41 + idat_len])
    rows = np.frombuffer(raw, np.uint8).reshape(6, 1 + 7 * 3)
    assert (rows[:, 0] == 0).all() and np.array_equal(rows[:, 1:].reshape(6, 7, 3), img)
    assert image_part("https://example.org/x.png")["image_url"]["url"] == "https://example.org/x.png"
    with pytest.raises(ConfigError):
        encode_png(np.zeros((4, 4, 3), np.float32))


def test_bad_messages_are_config_errors():
    with FakeOpenAIServer([]) as srv:
        llm = _backend(srv)
        with pytest.raises(ConfigError, match="role"):
            llm.chat([{"content": "x"}])
        with pytest.raises(ConfigError, match="unknown chat parameter"):
            llm.chat("x", temprature=0.5)
        assert srv.chat_requests == []


# --------------------------------------------------------------------------------- retries


def test_retries_on_500_then_succeeds():
    with FakeOpenAIServer([Reply.error(500), Reply.error(503), "ok"]) as srv:
        llm = _backend(srv)
        assert llm.chat("x").text == "ok"
        assert len(srv.chat_requests) == 3
    assert llm.usage.retries == 2 and llm.usage.requests == 1


def test_exponential_backoff_is_bounded_and_gives_up():
    with FakeOpenAIServer([Reply.error(500)] * 10) as srv:
        llm = _backend(srv, backoff_s=0.05, max_backoff_s=0.12, max_retries=3)
        t0 = time.monotonic()
        with pytest.raises(LLMServerError) as info:
            llm.chat("x")
        elapsed = time.monotonic() - t0
        gaps = _gaps(srv)
    assert len(srv.chat_requests) == 4 and info.value.status == 500
    assert "internal server error" in str(info.value)
    # 0.05, 0.1, then capped at 0.12
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.12
    assert elapsed < 3.0


def test_429_honours_retry_after_seconds_and_ms():
    with FakeOpenAIServer([Reply.rate_limited(0.3), Reply.rate_limited(0.2, header="retry-after-ms"), "done"]) as srv:
        llm = _backend(srv, backoff_s=0.001)
        assert llm.chat("x").text == "done"
        gaps = _gaps(srv)
    assert gaps[0] >= 0.3 and gaps[1] >= 0.2
    assert gaps[0] < 2.0 and gaps[1] < 2.0


def test_retry_after_is_capped_by_max_backoff():
    with FakeOpenAIServer([Reply.rate_limited(30), "ok"]) as srv:
        llm = _backend(srv, max_backoff_s=0.1)
        t0 = time.monotonic()
        assert llm.chat("x").text == "ok"
    assert time.monotonic() - t0 < 2.0


def test_429_gives_up_with_rate_limit_error():
    with FakeOpenAIServer([Reply.rate_limited(0.01)] * 5) as srv:
        with pytest.raises(LLMRateLimitError, match="429"):
            _backend(srv, max_retries=2).chat("x")
        assert len(srv.chat_requests) == 3


def test_other_4xx_fail_at_once_with_the_server_message(monkeypatch):
    monkeypatch.delenv("RR_NOPE", raising=False)
    with FakeOpenAIServer([Reply.error(400, "model 'x' not found"), Reply.error(401, "bad key")]) as srv:
        llm = _backend(srv, api_key_env="RR_NOPE")
        with pytest.raises(LLMHTTPError, match="model 'x' not found") as info:
            llm.chat("x")
        assert info.value.status == 400
        with pytest.raises(LLMAuthError, match="RR_NOPE"):
            llm.chat("x")
        assert len(srv.chat_requests) == 2


def test_timeout_is_retried_then_raised():
    with FakeOpenAIServer([Reply.slow(3.0, "late"), Reply.slow(3.0, "late")]) as srv:
        llm = _backend(srv, timeout_s=0.2, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(LLMTimeoutError, match="0.2 s"):
            llm.chat("x")
        elapsed = time.monotonic() - t0
        assert len(srv.chat_requests) == 2
    assert elapsed < 2.5


def test_slow_but_in_time_reply_is_fine():
    with FakeOpenAIServer([Reply.slow(0.2, "slow ok")]) as srv:
        assert _backend(srv, timeout_s=3.0).chat("x").text == "slow ok"


def test_dropped_connection_is_retried():
    with FakeOpenAIServer([Reply.disconnected(), "after reconnect"]) as srv:
        assert _backend(srv).chat("x").text == "after reconnect"


def test_unreachable_server_is_a_connection_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    llm = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None, max_retries=1,
                        backoff_s=0.01, connect_timeout_s=1.0)
    with pytest.raises(LLMConnectionError, match="is the server running"):
        llm.chat("x")


# ------------------------------------------------------------------------- malformed replies


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply.malformed(), "not JSON"),
        (Reply.malformed({"id": "x", "object": "chat.completion"}), "no 'choices'"),
        (Reply.malformed({"choices": []}), "no 'choices'"),
        (Reply.malformed({"choices": [{"index": 0}]}), "no 'message'"),
        (Reply.malformed({"choices": [{"message": {"role": "assistant", "content": None}}]}), "no text"),
        (Reply.malformed({"choices": [{"message": {"content": None, "refusal": "I can't"}}]}), "refused"),
        (Reply.malformed({"error": {"message": "context length exceeded"}}), "context length exceeded"),
        (Reply.malformed([1, 2, 3]), "not an object"),
    ],
)
def test_malformed_responses_raise_clear_errors_without_retrying(reply, match):
    with FakeOpenAIServer([reply, "never reached"]) as srv:
        llm = _backend(srv)
        with pytest.raises(LLMResponseError, match=match):
            llm.chat("x")
        assert len(srv.chat_requests) == 1
    assert isinstance(LLMResponseError("x"), RoboRewardError)


def test_content_parts_in_the_reply_are_joined():
    body = {"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                         "finish_reason": "length"}]}
    with FakeOpenAIServer([Reply.malformed(body)]) as srv:
        out = _backend(srv).chat("x")
    assert out.text == "ab" and out.truncated and out.prompt_tokens is None


# ---------------------------------------------------------------------------- record/replay


def test_record_then_replay_without_a_server(tmp_path):
    rec = tmp_path / "llm.jsonl"
    script = ["first sample", "second sample", Reply(text="other prompt", usage={"prompt_tokens": 11, "completion_tokens": 7})]
    with FakeOpenAIServer(script) as srv:
        llm = _backend(srv, record=rec, prices={"fake-model": (2.0, 8.0)})
        live = [llm.chat("write a reward", temperature=1.0), llm.chat("write a reward", temperature=1.0),
                llm.chat([user_message("look", images=[np.zeros((2, 2, 3), np.uint8)])], temperature=1.0)]
    lines = [json.loads(x) for x in rec.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["key"] == lines[1]["key"] != lines[2]["key"]
    assert lines[2]["usage"] == {"prompt_tokens": 11, "completion_tokens": 7}
    assert "Authorization" not in rec.read_text()

    replay = ReplayBackend(rec, prices={"fake-model": (2.0, 8.0)})  # the server is gone
    again = [replay.chat("write a reward", temperature=1.0), replay.chat("write a reward", temperature=1.0),
             replay.chat([user_message("look", images=[np.zeros((2, 2, 3), np.uint8)])], temperature=1.0)]
    for a, b in zip(live, again):
        assert (a.texts, a.finish_reasons, a.prompt_tokens, a.completion_tokens, a.raw, a.request_key) == (
            b.texts, b.finish_reasons, b.prompt_tokens, b.completion_tokens, b.raw, b.request_key)
        assert b.replayed
    assert replay.usage.cost == pytest.approx(llm.usage.cost) and replay.usage.replayed == 3
    assert replay.usage.total_tokens == llm.usage.total_tokens

    with pytest.raises(ReplayMissError, match="all were used"):
        replay.chat("write a reward", temperature=1.0)
    with pytest.raises(ReplayMissError, match="no response for this request"):
        replay.chat("write a reward", temperature=0.5)  # sampling parameters are part of the key
    cyc = ReplayBackend(rec, cycle=True)
    assert [cyc.chat("write a reward", temperature=1.0).text for _ in range(3)] == [
        "first sample", "second sample", "first sample"]


def test_replay_falls_back_to_a_live_backend(tmp_path):
    rec = tmp_path / "r.jsonl"
    with FakeOpenAIServer(["recorded", "live"]) as srv:
        _backend(srv, record=rec).chat("a")
        live = _backend(srv, record=rec)
        replay = ReplayBackend(rec, fallback=live)
        assert replay.chat("a").text == "recorded"
        assert replay.chat("b").text == "live"
    assert len(rec.read_text().splitlines()) == 2


def test_replay_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ReplayBackend(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"key": "k"}\n')
    with pytest.raises(ConfigError, match="line 1"):
        ReplayBackend(bad)


# ------------------------------------------------------------------------------------ usage


def test_usage_accounting_with_prices_shared_across_backends():
    usage = Usage({"fake-model": Price(1.0, 2.0), "*": {"input": 10.0, "output": 20.0}})
    script = [Reply(text="x", usage={"prompt_tokens": 1000, "completion_tokens": 500}),
              Reply(text="y", usage={"prompt_tokens": 100, "completion_tokens": 10}),
              Reply(text="z", usage=False)]
    with FakeOpenAIServer(script) as srv:
        a = _backend(srv, usage=usage)
        b = OpenAIBackend("other", base_url=srv.base_url, api_key_env=None, usage=usage)
        a.chat("1")
        b.chat("2")
        a.chat("3")
    assert usage.requests == 3 and usage.unreported == 1
    assert usage.prompt_tokens == 1100 and usage.completion_tokens == 510
    assert usage.cost == pytest.approx(1000 * 1e-6 + 500 * 2e-6 + 100 * 10e-6 + 10 * 20e-6)
    d = usage.to_dict()
    assert d["by_model"]["fake-model"]["requests"] == 2 and d["by_model"]["other"]["prompt_tokens"] == 100
    assert "3 LLM requests" in usage.summary()
    assert Usage().price_of("anything").cost(10**6, 10**6) == 0.0


def test_usage_counts_concurrent_requests():
    with FakeOpenAIServer(["w1 w2"], repeat_last=True) as srv:
        llm = _backend(srv)
        threads = [threading.Thread(target=lambda: [llm.chat("a b c") for _ in range(5)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert llm.usage.requests == 20
    assert llm.usage.prompt_tokens == 60 and llm.usage.completion_tokens == 40


# ---------------------------------------------------------------------------------- factory


def test_make_backend_from_specs(tmp_path):
    with FakeOpenAIServer(["hi"]) as srv:
        llm = make_backend(f"openai:model=tiny,base_url={srv.base_url},api_key_env=NOPE_KEY,max_retries=0")
        assert isinstance(llm, OpenAIBackend) and llm.model == "tiny" and llm.max_retries == 0
        assert llm.chat("x").text == "hi"
        assert llm.list_models() == ["fake-model"]
    assert make_backend(llm) is llm
    with pytest.raises(ConfigError, match="unknown LLM backend"):
        make_backend("gpt:model=x")
    with pytest.raises(ConfigError, match="bad arguments"):
        make_backend({"name": "openai", "model": "m", "colour": "red"})
