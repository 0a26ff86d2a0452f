"""RL-VLM-F: two-stage VLM labels over a local OpenAI-compatible server, label cache, replays,
CLIP labeller, Bradley–Terry image reward, the ``rl-vlm-f`` plugin, relabelling and the CLI.

The synthetic task: a frame's brightness is its progress. The scripted server decodes the
two PNG images of each analysis query, describes their brightness, and answers the
labelling query from that description alone (so the labels reach the model only through
the two-stage exchange); pairs whose brightness differs by less than ``TIE`` are unsure.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import zlib
from base64 import b64decode

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("httpx")

from robo_reward.core.errors import ConfigError, RewardComputationError  # noqa: E402
from robo_reward.core.registry import make_reward  # noqa: E402
from robo_reward.core.types import TransitionBatch  # noqa: E402
from robo_reward.llm import OpenAIBackend, ReplayBackend, ReplayMissError  # noqa: E402
from robo_reward.llm.testing import FakeOpenAIServer, Reply  # noqa: E402
from robo_reward.offline.dataset import OfflineDataset, load_dataset  # noqa: E402
from robo_reward.rewards.rlvlmf import (  # noqa: E402
    DEFAULT_PROMPTS,
    ClipLabeller,
    EncoderSpec,
    ImageRewardModel,
    LabelCache,
    LLMLabeller,
    RLVLMFReward,
    ScoreLabeller,
    analysis_messages,
    fit_rlvlmf,
    frame_hash,
    label_messages,
    pair_accuracy,
    parse_label,
    preferences_from_labels,
    relabel_dataset,
    sample_pairs,
)

pytestmark = pytest.mark.timeout(300)

TIE = 8.0  # brightness differences below this are "can't tell"
GOAL = "to make the image as bright as possible"


# ----------------------------------------------------------------------------- synthetic frames and server


def make_frames(n: int, seed: int, size: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Frames whose mean brightness (the progress) is uniform in [30, 220], with texture on top."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(30, 220, n)
    texture = rng.integers(-25, 26, size=(n, size, size, 3))
    frames = np.clip(level[:, None, None, None] + texture, 0, 255).astype(np.uint8)
    return frames, frames.reshape(n, -1).mean(1)


def decode_png(data: bytes) -> np.ndarray:
    """Decode the 8-bit RGB, filter-0 PNGs that ``encode_png`` writes."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + 3 * w)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(h, w, 3)


def image_brightness(part: dict) -> float:
    """Mean brightness of one ``image_url`` content part (a base64 PNG)."""
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    return float(decode_png(b64decode(url.split(",", 1)[1])).mean())


class BrightnessVLM:
    """Scripted two-stage answers; records what it saw."""

    def __init__(self) -> None:
        self.analyses = 0
        self.labels = 0

    def __call__(self, request: dict, index: int) -> Reply | str:
        msgs = request["messages"]
        content = msgs[-1]["content"]
        if isinstance(content, list):  # the analysis query: both images
            self.analyses += 1
            images = [p for p in content if p["type"] == "image_url"]
            b1, b2 = (image_brightness(p) for p in images)
            return (f"1. Image 1 shows a textured grey square of brightness {b1:.1f}.\n"
                    f"2. Image 2 shows a textured grey square of brightness {b2:.1f}.\n"
                    "3. They differ in brightness.")
        self.labels += 1  # the labelling query: text only, reads the analysis
        b1, b2 = (float(x) for x in re.findall(r"brightness (\d+\.\d)", content))
        if abs(b1 - b2) < TIE:
            return "-1"
        return "0" if b1 > b2 else "1"


def truth_labels(brightness: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The labels the scripted server gives: brighter first → 0, brighter second → 1, within ``TIE`` → -1."""
    d = brightness[pairs[:, 0]] - brightness[pairs[:, 1]]
    return np.where(np.abs(d) < TIE, -1, np.where(d > 0, 0, 1)).astype(np.int8)


def backend(srv: FakeOpenAIServer, **kw) -> OpenAIBackend:
    """A client of the scripted server with quick retries."""
    return OpenAIBackend("fake-vlm", base_url=srv.base_url, api_key_env=None, backoff_s=0.01, jitter=0.0,
                         timeout_s=10.0, **kw)


# ----------------------------------------------------------------------------- prompts


def test_prompt_structure_has_two_images_then_text_only_labelling():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 200, np.uint8)
    (msg,) = analysis_messages(a, b, "to open the drawer")
    kinds = [p["type"] for p in msg["content"]]
    assert msg["role"] == "user" and kinds == ["text", "image_url", "text", "image_url", "text"]
    assert "Image 1" in msg["content"][0]["text"] and "Image 2" in msg["content"][2]["text"]
    assert "The goal is to open the drawer." in msg["content"][4]["text"]
    sys_msg, user = label_messages("Image 2 shows the open drawer.", "to open the drawer")
    assert sys_msg["role"] == "system" and isinstance(user["content"], str)
    assert "Image 2 shows the open drawer." in user["content"] and "-1" in user["content"]
    assert "The goal is to open the drawer." in user["content"]


@pytest.mark.parametrize("text,label", [
    ("0", 0), ("1", 1), ("-1", -1), ("**-1**", -1), ("1.", 1), ("Answer: 0", 0), ("The answer is:\n\n1", 1),
    ("`0`\nbecause image 1 is closer", 0), ("Image 1 is better, so 0", None), ("I cannot tell.", None),
])
def test_parse_label(text, label):
    assert parse_label(text) == label


def test_preferences_from_labels():
    p = preferences_from_labels([0, 1, -1])
    assert p[0] == 1.0 and p[1] == 0.0 and np.isnan(p[2])
    with pytest.raises(ConfigError):
        preferences_from_labels([2])


# ----------------------------------------------------------------------------- cache and pairs


def test_label_cache_roundtrip_and_order(tmp_path):
    path = tmp_path / "labels.jsonl"
    cache = LabelCache(path)
    k12 = LabelCache.key("fp", "h1", "h2")
    assert k12 != LabelCache.key("fp", "h2", "h1") and k12 != LabelCache.key("other", "h1", "h2")
    cache.put(k12, 1, "llm", analysis="text")
    again = LabelCache(path)
    assert len(again) == 1 and again.get(k12)["label"] == 1 and again.get(k12)["analysis"] == "text"
    path.write_text('{"key": "x", "label": 7}\n')
    with pytest.raises(ConfigError):
        LabelCache(path)


def test_frame_hash_depends_on_content_and_shape():
    a = np.zeros((4, 4, 3), np.uint8)
    assert frame_hash(a) == frame_hash(a.copy())
    b = a.copy()
    b[0, 0, 0] = 1
    assert frame_hash(a) != frame_hash(b) and frame_hash(a) != frame_hash(np.zeros((2, 8, 3), np.uint8))


def test_sample_pairs_distinct_and_same_episode():
    p = sample_pairs(10, 500, seed=0)
    assert p.shape == (500, 2) and (p[:, 0] != p[:, 1]).all() and p.min() >= 0 and p.max() < 10
    ep = np.repeat([0, 1, 2], [3, 5, 2])
    q = sample_pairs(10, 300, episode_ids=ep, same_episode=True, seed=1)
    assert (ep[q[:, 0]] == ep[q[:, 1]]).all() and (q[:, 0] != q[:, 1]).all()
    with pytest.raises(ConfigError):
        sample_pairs(1, 3)


# ----------------------------------------------------------------------------- the full loop against a server


def test_full_loop_against_scripted_vlm_server(tmp_path):
    frames, bright = make_frames(160, seed=0)
    train, test = slice(0, 110), slice(110, 160)
    pairs = sample_pairs(110, 160, seed=0)
    script = BrightnessVLM()
    cache_path = tmp_path / "labels.jsonl"
    with FakeOpenAIServer(script) as srv:
        labeller = LLMLabeller(backend(srv), GOAL, cache=cache_path)
        result = fit_rlvlmf(frames[train], labeller, pairs=pairs, encoder=EncoderSpec("pixels", size=8), epochs=40,
                            seed=0)
        reqs = [r.json for r in srv.chat_requests]

        # two requests per distinct pair: analysis (both images) then labelling (text only, with the analysis)
        n_distinct = len({(int(a), int(b)) for a, b in pairs})
        assert len(reqs) == 2 * n_distinct and script.analyses == script.labels == n_distinct
        for first, second in zip(reqs[0::2], reqs[1::2]):
            (msg,) = first["messages"]
            images = [p for p in msg["content"] if p["type"] == "image_url"]
            assert len(images) == 2
            assert first["temperature"] == 0.0
            assert all(isinstance(m["content"], str) for m in second["messages"])
            assert second["messages"][0] == {"role": "system", "content": DEFAULT_PROMPTS.label_system}
            assert "brightness" in second["messages"][-1]["content"]  # the analysis was passed on
            assert GOAL in second["messages"][-1]["content"]
        first_pair_images = [image_brightness(p) for p in reqs[0]["messages"][0]["content"] if p["type"] == "image_url"]
        a, b = pairs[0]
        assert first_pair_images == pytest.approx([frames[a].mean(), frames[b].mean()], abs=1e-6)

        # labels follow the script; unsure answers are dropped before training
        expected = truth_labels(bright[train], pairs)
        np.testing.assert_array_equal(result.labels, expected)
        unsure = int(np.sum(expected == -1))
        assert unsure > 0 and result.kept == len(pairs) - unsure
        assert result.model.meta["kept"] == result.kept
        assert result.summary()["unsure"] == unsure

        # the cache on disk answers a re-run without a single request
        n_before = len(srv.chat_requests)
        again = LLMLabeller(backend(srv), GOAL, cache=cache_path)
        np.testing.assert_array_equal(again.label_pairs(frames[train], pairs), result.labels)
        assert len(srv.chat_requests) == n_before
        assert again.stats.cached == len(pairs) and again.stats.labelled == 0
        # ... but a different prompt goal is a different key
        other = LLMLabeller(backend(srv), "to make the image dark", cache=cache_path)
        other.label_pairs(frames[train], pairs[:2])
        assert len(srv.chat_requests) == n_before + 4

    # the learned reward orders held-out frames like the script does
    test_frames, test_bright = frames[test], bright[test]
    held = sample_pairs(len(test_frames), 400, seed=5)
    acc = pair_accuracy(result.model, test_frames, held, truth_labels(test_bright, held))
    assert acc > 0.8, acc


def test_unreadable_answers_count_as_unsure():
    frames, _ = make_frames(4, seed=1)

    def script(request, index):
        return "some analysis" if isinstance(request["messages"][-1]["content"], list) else "I am not sure which."

    with FakeOpenAIServer(script) as srv:
        lab = LLMLabeller(backend(srv), GOAL)
        out = lab.label_pairs(frames, np.array([[0, 1], [2, 3], [0, 1]]))
        assert len(srv.chat_requests) == 4  # the repeated pair is asked once
    assert out.tolist() == [-1, -1, -1]
    assert lab.stats.unreadable == 2 and lab.stats.labelled == 2 and lab.stats.unsure == 3


def test_concurrent_workers_give_the_same_labels():
    frames, bright = make_frames(40, seed=2)
    pairs = sample_pairs(40, 30, seed=3)
    with FakeOpenAIServer(BrightnessVLM()) as srv:
        out = LLMLabeller(backend(srv), GOAL, workers=4).label_pairs(frames, pairs)
    np.testing.assert_array_equal(out, truth_labels(bright, pairs))


class FirstImageBiasedVLM(BrightnessVLM):
    """Like :class:`BrightnessVLM`, but says "image 1" whenever the two are within ``bias`` of each other."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.bias = bias

    def __call__(self, request: dict, index: int) -> Reply | str:
        content = request["messages"][-1]["content"]
        if isinstance(content, list):
            return super().__call__(request, index)
        self.labels += 1
        b1, b2 = (float(x) for x in re.findall(r"brightness (\d+\.\d)", content))
        if abs(b1 - b2) < self.bias:
            return "0"
        return "0" if b1 > b2 else "1"


def test_both_orders_drops_labels_that_depend_on_the_position():
    frames, bright = make_frames(60, seed=4)
    pairs = sample_pairs(60, 80, seed=6)
    bias = 30.0
    d = bright[pairs[:, 0]] - bright[pairs[:, 1]]
    with FakeOpenAIServer(FirstImageBiasedVLM(bias)) as srv:
        one = LLMLabeller(backend(srv), GOAL).label_pairs(frames, pairs)
        n_one = len(srv.chat_requests)
        lab = LLMLabeller(backend(srv), GOAL, both_orders=True)
        both = lab.label_pairs(frames, pairs)
        n_distinct = len({(int(a), int(b)) for a, b in pairs})
        assert len(srv.chat_requests) - n_one == 2 * n_one == 4 * n_distinct  # two orders x two queries
    close = np.abs(d) < bias
    assert close.any() and (~close).any()
    # one order: every close pair is labelled "first", right or wrong
    assert (one[close] == 0).all()
    # both orders: the biased answers contradict each other and are dropped; clear pairs are kept, correctly
    assert (both[close] == -1).all()
    np.testing.assert_array_equal(both[~close], np.where(d[~close] > 0, 0, 1))
    assert lab.stats.order_disagreements == len({(int(a), int(b)) for a, b in pairs[close]})
    assert json.loads(lab.fingerprint())["both_orders"] is True


def test_server_errors_propagate_and_labels_so_far_stay_cached(tmp_path):
    frames, bright = make_frames(6, seed=4)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    vlm = BrightnessVLM()

    def script(request, index):
        if index >= 4:
            return Reply.error(400, "bad request")
        return vlm(request, index)

    cache = tmp_path / "c.jsonl"
    with FakeOpenAIServer(script) as srv:
        with pytest.raises(Exception, match="400"):
            LLMLabeller(backend(srv, max_retries=0), GOAL, cache=cache).label_pairs(frames, pairs)
    assert len(LabelCache(cache)) == 2  # the first two pairs survive the failure


def test_replayed_run_needs_no_server(tmp_path):
    frames, bright = make_frames(30, seed=6)
    pairs = sample_pairs(30, 12, seed=7)
    rec = tmp_path / "vlm.jsonl"
    with FakeOpenAIServer(BrightnessVLM()) as srv:
        live = LLMLabeller(backend(srv, record=rec), GOAL).label_pairs(frames, pairs)
    replay = ReplayBackend(rec)
    again = LLMLabeller(replay, GOAL).label_pairs(frames, pairs)
    np.testing.assert_array_equal(again, live)
    assert replay.usage.replayed == 2 * len({(int(a), int(b)) for a, b in pairs})
    with pytest.raises(ReplayMissError):
        LLMLabeller(ReplayBackend(rec), GOAL).label_pairs(frames, np.array([[pairs[0, 1], pairs[0, 0]]]))


# ----------------------------------------------------------------------------- CLIP and score labellers


class _FakeScorer:
    def __init__(self, score_fn):
        self.score_fn = score_fn

    def score(self, frames):
        class _S:
            pass

        s = _S()
        s.reward = self.score_fn(np.asarray(frames))
        return s


def test_clip_labeller_prefers_higher_score_and_is_unsure_within_margin():
    frames, bright = make_frames(12, seed=8)
    lab = ClipLabeller(scorer=_FakeScorer(lambda f: f.reshape(len(f), -1).mean(1)), margin=5.0, relative_margin=False)
    pairs = sample_pairs(12, 60, seed=9)
    d = bright[pairs[:, 0]] - bright[pairs[:, 1]]
    out = lab.label_pairs(frames, pairs)
    assert (out[d > 5] == 0).all() and (out[d < -5] == 1).all() and (out[np.abs(d) <= 5] == -1).all()
    rel = ClipLabeller(scorer=_FakeScorer(lambda f: f.reshape(len(f), -1).mean(1)), margin=0.2)
    out = rel.label_pairs(frames, pairs)
    used = np.unique(pairs)
    m = 0.2 * bright[used].std()
    assert (out[np.abs(d) <= m] == -1).all() and (out[d > m] == 0).all()


def test_clip_labeller_with_vlm_rm_random_weights():
    pytest.importorskip("open_clip", reason="needs open_clip (the vlm extra); scripts/setup.sh leaves it out in its CPU-only torch mode")
    frames, _ = make_frames(10, seed=10)
    lab = ClipLabeller(goal="a bright white square", model="ViT-S-32-alt", pretrained=None, device="cpu", margin=0.0)
    pairs = sample_pairs(10, 20, seed=11)
    s = lab.scores(frames)
    out = lab.label_pairs(frames, pairs)
    expect = np.where(s[pairs[:, 0]] > s[pairs[:, 1]], 0, 1)
    tie = s[pairs[:, 0]] == s[pairs[:, 1]]
    np.testing.assert_array_equal(out[~tie], expect[~tie])
    assert "a bright white square" in lab.fingerprint()


def test_score_labeller_and_cnn_encoder_learn_brightness():
    frames, bright = make_frames(120, seed=12, size=32)
    res = fit_rlvlmf(frames[:80], ScoreLabeller(bright[:80], margin=TIE), 150,
                     encoder=EncoderSpec("cnn", size=32), ensemble_size=2, epochs=15, seed=0)
    held = sample_pairs(40, 300, seed=13) + 80
    assert pair_accuracy(res.model, frames, held, truth_labels(bright, held)) > 0.8


def test_all_unsure_is_an_error():
    frames, _ = make_frames(6, seed=14)
    with pytest.raises(ConfigError, match="unsure"):
        fit_rlvlmf(frames, ScoreLabeller(np.zeros(6)), 5, encoder="pixels")


# ----------------------------------------------------------------------------- model files, plugin, relabelling


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A pixels-encoder model trained on brightness labels, and the file it was saved to."""
    frames, bright = make_frames(100, seed=15)
    res = fit_rlvlmf(frames, ScoreLabeller(bright, margin=TIE), 200, encoder=EncoderSpec("pixels", size=8),
                     epochs=30, seed=0)
    path = res.model.save(tmp_path_factory.mktemp("m") / "bright.pt")
    return res.model, path


def test_save_load_and_plugin(trained):
    model, path = trained
    frames, bright = make_frames(20, seed=16)
    loaded = ImageRewardModel.load(path)
    np.testing.assert_allclose(loaded.predict(frames), model.predict(frames), rtol=1e-5, atol=1e-5)
    plugin = make_reward(f"rl-vlm-f:path={path}")
    assert isinstance(plugin, RLVLMFReward) and plugin.requires == frozenset({"frames"})
    n = len(frames)
    batch = TransitionBatch(terminated=np.zeros(n, bool), truncated=np.zeros(n, bool),
                            env_reward=np.zeros(n, np.float32), env_ids=np.arange(n), frames=frames)
    out = plugin(batch)
    np.testing.assert_allclose(out.reward, model.predict(frames), rtol=1e-4, atol=1e-4)
    assert set(out.terms) == {"rlvlmf_std"} and (out.terms["rlvlmf_std"] >= 0).all()
    assert np.corrcoef(out.reward, bright)[0, 1] > 0.8
    with pytest.raises(RewardComputationError):
        plugin(TransitionBatch(terminated=np.zeros(1, bool), truncated=np.zeros(1, bool),
                               env_reward=np.zeros(1, np.float32), env_ids=np.zeros(1, np.int64)))
    with pytest.raises(ConfigError):
        make_reward("rl-vlm-f")
    with pytest.raises(ConfigError):
        ImageRewardModel.load(path.with_name("missing.pt"))


def synthetic_dataset(n_eps: int = 4, length: int = 25, seed: int = 17, task: str | None = None) -> OfflineDataset:
    """Episodes whose frames brighten step by step (progress = brightness)."""
    rng = np.random.default_rng(seed)
    n = n_eps * length
    level = np.concatenate([np.linspace(rng.uniform(30, 60), rng.uniform(180, 220), length) for _ in range(n_eps)])
    frames = np.clip(level[:, None, None, None] + rng.integers(-20, 21, (n, 24, 24, 3)), 0, 255).astype(np.uint8)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    done = np.zeros(n, bool)
    done[length - 1 :: length] = True
    return OfflineDataset(observations=obs, actions=np.zeros((n, 1), np.float32), rewards=np.zeros(n, np.float32),
                          next_observations=obs, terminations=np.zeros(n, bool), truncations=done,
                          episode_ids=np.repeat(np.arange(n_eps), length), env_rewards=level.astype(np.float32),
                          frames=frames, metadata={"task": task, "policy": "synthetic", "seed": seed})


def test_relabel_dataset(trained):
    model, path = trained
    ds = synthetic_dataset()
    out = relabel_dataset(ds, model)
    assert np.corrcoef(out.rewards, ds.env_rewards)[0, 1] > 0.8
    np.testing.assert_array_equal(out.env_rewards, ds.env_rewards)
    assert "term/rlvlmf_std" in out.infos
    from_path = relabel_dataset(ds, path)
    np.testing.assert_allclose(from_path.rewards, out.rewards, rtol=1e-4, atol=1e-4)
    ds.frames = None
    with pytest.raises(ConfigError, match="frames"):
        relabel_dataset(ds, model)


# ----------------------------------------------------------------------------- the command line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robo_reward.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_fit_with_llm_then_rerun_from_cache(tmp_path):
    data = synthetic_dataset().save(tmp_path / "data.npz")
    out = tmp_path / "model.pt"
    args = ["reward", "fit", "rl-vlm-f", str(data), "--labeller", "llm", "--model", "fake-vlm", "--goal", GOAL,
            "--api-key-env", "RR_UNSET_KEY_FOR_TEST", "--encoder", "pixels", "--encoder-size", "8", "--queries", "80",
            "--epochs", "25", "--workers", "2", "--out", str(out), "--relabel-out", str(tmp_path / "relabelled.npz"),
            "--no-progress"]
    with FakeOpenAIServer(BrightnessVLM()) as srv:
        res = _cli(*args, "--base-url", srv.base_url)
        assert res.returncode == 0, res.stdout + res.stderr
        n_first = len(srv.chat_requests)
        assert n_first > 0
        res = _cli(*args, "--base-url", srv.base_url)
        assert res.returncode == 0, res.stdout + res.stderr
        assert len(srv.chat_requests) == n_first  # every label came from the cache
    summary = json.loads((tmp_path / "model.summary.json").read_text())
    assert summary["labeller"]["cached"] == 80 and summary["kept"] + summary["unsure"] == 80
    relabelled = load_dataset(tmp_path / "relabelled.npz")
    assert np.corrcoef(relabelled.rewards, relabelled.env_rewards)[0, 1] > 0.8
    assert RLVLMFReward(path=str(out)).model.spec.kind == "pixels"


def test_cli_fit_with_clip_labeller_random_weights(tmp_path):
    pytest.importorskip("open_clip", reason="needs open_clip (the vlm extra); scripts/setup.sh leaves it out in its CPU-only torch mode")
    data = synthetic_dataset(n_eps=2, length=15).save(tmp_path / "data.npz")
    out = tmp_path / "clip.pt"
    res = _cli("reward", "fit", "rl-vlm-f", str(data), "--clip-goal", "a bright white square", "--clip-model",
               "ViT-S-32-alt", "--clip-pretrained", "none", "--margin", "0", "--encoder", "pixels", "--queries", "40",
               "--epochs", "5", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ImageRewardModel.load(out).trained
    assert (tmp_path / "clip.labels.jsonl").is_file()


def test_cli_errors_are_reported(tmp_path):
    ds = synthetic_dataset(n_eps=1, length=5)
    ds.frames = None
    data = ds.save(tmp_path / "noframes.npz")
    res = _cli("reward", "fit", "rl-vlm-f", str(data), "--labeller", "llm", "--goal", GOAL, "--out",
               str(tmp_path / "m.pt"))
    assert res.returncode == 2 and "frames" in (res.stdout + res.stderr)


def test_cli_dataset_collect_with_frames(tmp_path):
    out = tmp_path / "reach.npz"
    res = _cli("dataset", "collect", "metaworld-reach-v3", "--episodes", "1", "--max-steps", "12", "--size", "32",
               "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    ds = load_dataset(out)
    assert ds.frames.shape == (12, 32, 32, 3) and ds.metadata["task"] == "metaworld-reach-v3"
