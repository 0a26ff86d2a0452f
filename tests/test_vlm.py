"""VLM-RM (``robo_reward.rewards.vlm``): projection algebra, batching, envs, SB3, weights, evaluation, CLI.

Models are open_clip architectures with random weights (``pretrained=None``): no network.
One ViT-S-32-alt is built and shared by every test through the encoder cache; torch
runs on one thread here (on a busy 2-core machine two threads are several times slower).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pickle
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open_clip")

import robo_reward as rr
import robo_reward.rewards.vlm  # noqa: F401  (registers "vlm-rm" until the registry imports it itself)
from robo_reward.core.errors import ConfigError, RewardComputationError
from robo_reward.rewards.vlm import (
    MissingWeightsError,
    VLMRewardModel,
    VLMRMReward,
    baseline_goal_position,
    combine_prompt_embeddings,
    goal_baseline_reward,
    goal_baseline_reward_matrix,
    projection_matrix,
)
from robo_reward.rewards.vlm import model as vlm_model

MODEL = "ViT-S-32-alt"
SMALL = {"model": MODEL, "pretrained": None}
PENDULUM = "mujoco-inverted-pendulum-v5"


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _spy(plugin):
    """Record what the wrappers hand the plugin (frames, env ids) and what it returns."""
    calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    compute = plugin.compute

    def spy(batch):
        out = compute(batch)
        calls.append((np.array(batch.frames), np.array(batch.env_ids), np.array(out.reward)))
        return out

    plugin.compute = spy
    return calls


@pytest.fixture(scope="module")
def encoder():
    return vlm_model.get_encoder(MODEL, None, device="cpu")


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Six smooth 224x224 frames (different content, as rendered frames would be)."""
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    out = []
    for k in range(6):
        img = np.stack(
            [128 + 100 * np.sin(xx / (9.0 + k)), 128 + 100 * np.cos(yy / (7.0 + 2 * k)), (xx + yy + 30 * k) % 200], -1
        )
        out.append(img.astype(np.uint8))
    return np.stack(out)


# ----------------------------------------------------------------------------- projection algebra


def _random_setup(seed: int = 0, d: int = 32, n: int = 50):
    rng = np.random.default_rng(seed)
    g, b = _unit(rng.normal(size=d)), _unit(rng.normal(size=d))
    x = _unit(rng.normal(size=(n, d)))
    return x, g, b


def test_alpha_zero_is_cosine_similarity_and_affine_for_unnormalised_means():
    x, g, b = _random_setup()
    np.testing.assert_allclose(goal_baseline_reward(x, g, b, 0.0), x @ g, atol=1e-12)
    # several prompts averaged without renormalising: an affine map of the cosine similarity
    rng = np.random.default_rng(1)
    prompts = rng.normal(size=(3, x.shape[1]))
    g_mean = combine_prompt_embeddings(prompts, normalize_mean=False)
    assert np.linalg.norm(g_mean) < 1.0
    r = goal_baseline_reward(x, g_mean, None, 0.0)
    cos = x @ _unit(g_mean)
    gn = np.linalg.norm(g_mean)
    np.testing.assert_allclose(r, 1 - 0.5 * (1 + gn**2) + gn * cos, atol=1e-12)
    slope, intercept = np.polyfit(cos, r, 1)
    assert slope > 0 and np.allclose(slope * cos + intercept, r, atol=1e-10)
    # renormalised (the default): exactly the cosine similarity
    g_unit = combine_prompt_embeddings(prompts, normalize_mean=True)
    np.testing.assert_allclose(goal_baseline_reward(x, g_unit, None, 0.0), x @ g_unit, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_line_form_equals_matrix_form(alpha):
    x, g, b = _random_setup(seed=2)
    line = goal_baseline_reward(x, g, b, alpha)
    mat = goal_baseline_reward_matrix(x, g, b, alpha)
    np.testing.assert_allclose(line, mat, atol=1e-12)
    # written out as in the issue: M = alpha * d d^T / |d|^2 + (1 - alpha) I
    d = g - b
    m = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * np.eye(len(g))
    np.testing.assert_allclose(projection_matrix(g, b, alpha), m, atol=1e-12)
    np.testing.assert_allclose(line, 1 - 0.5 * np.sum(((x - g) @ m) ** 2, axis=1), atol=1e-12)
    # torch gives the same numbers
    t = goal_baseline_reward(torch.from_numpy(x), torch.from_numpy(g), torch.from_numpy(b), alpha)
    np.testing.assert_allclose(t.numpy(), line, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_maximum_is_at_the_goal(alpha):
    x, g, b = _random_setup(seed=3, n=2000)
    r_goal = goal_baseline_reward(g[None], g, b, alpha)[0]
    assert r_goal == pytest.approx(1.0)
    assert np.all(goal_baseline_reward(x, g, b, alpha) <= r_goal + 1e-12)
    # moving away from the goal along the baseline direction lowers the reward for every alpha
    toward_b = _unit(g + 0.3 * (b - g))
    assert goal_baseline_reward(toward_b[None], g, b, alpha)[0] < r_goal
    assert baseline_goal_position(np.stack([b, g]), g, b) == pytest.approx([0.0, 1.0])


def test_alpha_one_only_sees_the_goal_baseline_direction():
    x, g, b = _random_setup(seed=4, n=5)
    d = _unit(g - b)
    perp = _unit(np.random.default_rng(5).normal(size=g.shape))
    perp = _unit(perp - (perp @ d) * d)
    moved = x + 0.7 * perp  # same position along d
    np.testing.assert_allclose(goal_baseline_reward(moved, g, b, 1.0), goal_baseline_reward(x, g, b, 1.0), atol=1e-12)


def test_bad_alpha_and_degenerate_prompts_raise():
    x, g, b = _random_setup()
    with pytest.raises(ConfigError, match="alpha"):
        goal_baseline_reward(x, g, b, 1.5)
    with pytest.raises(ConfigError, match="baseline"):
        goal_baseline_reward(x, g, None, 0.5)
    with pytest.raises(ConfigError, match="same embedding"):
        goal_baseline_reward(x, g, g.copy(), 0.5)


# ----------------------------------------------------------------------------- model, preprocessing, batching


def test_tensor_preprocessing_matches_open_clip_transform(encoder):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    yy, xx = np.mgrid[0:180, 0:300].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 17), 128 + 100 * np.cos(yy / 11), 100 + 50 * np.sin((xx + yy) / 23)], -1)
    img = img.astype(np.uint8)
    cfg = dict(encoder.model.visual.preprocess_cfg)
    for mode in ("shortest", "squash", "longest"):
        c = {**cfg, "resize_mode": mode}
        ref = image_transform_v2(PreprocessCfg(**c), is_train=False)(Image.fromarray(img)).numpy()
        ours = vlm_model.preprocess_frames(torch.from_numpy(img[None]), vlm_model.PreprocessSpec.from_open_clip(c))[0]
        assert ours.shape == ref.shape
        diff = np.abs(ours.numpy() - ref)
        assert diff.mean() < 0.01 and np.quantile(diff, 0.99) < 0.05, mode


def test_batched_scores_equal_per_frame_scores(encoder, frames):
    scorer = VLMRewardModel(["a pole balanced upright", "an upright pole"], "a pole", alpha=0.5, encoder=encoder)
    batched = scorer.score(frames)
    single = [scorer.score(f) for f in frames]  # one [H, W, 3] frame per call
    np.testing.assert_allclose(batched.reward, np.concatenate([s.reward for s in single]), atol=1e-5)
    for k in batched.terms:
        np.testing.assert_allclose(batched.terms[k], np.concatenate([s.terms[k] for s in single]), atol=1e-5)
    # chunked forward passes give the same numbers too
    emb = encoder.encode_frames(frames, batch_size=4)
    np.testing.assert_allclose(scorer.score_embeddings(emb).reward, batched.reward, atol=1e-5)
    assert set(batched.terms) == {"cosine_goal", "cosine_baseline", "projection"}
    assert batched.reward.dtype == np.float32 and batched.reward.shape == (len(frames),)
    # alpha = 0 on real embeddings is exactly the cosine term
    plain = VLMRewardModel("a pole balanced upright", encoder=encoder).score(frames)
    np.testing.assert_allclose(plain.reward, plain.terms["cosine_goal"], atol=1e-6)


def test_text_embeddings_are_computed_once_per_prompt_set(encoder, monkeypatch):
    calls = []
    original = encoder.model.encode_text

    def counting(tokens, *a, **k):
        calls.append(tokens.shape[0])
        return original(tokens, *a, **k)

    monkeypatch.setattr(encoder.model, "encode_text", counting)
    prompts = ("a prompt seen once", "and its sibling")
    VLMRewardModel(list(prompts), encoder=encoder)
    VLMRewardModel(list(prompts), encoder=encoder)
    assert calls == [2]


def test_device_and_precision_resolution():
    dev = vlm_model.resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert vlm_model.resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert vlm_model.resolve_precision("auto", torch.device("cuda")) == "fp16"
    with pytest.raises(ConfigError):
        vlm_model.resolve_precision("fp8", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            vlm_model.resolve_device("cuda")


def test_random_weights_are_seeded_and_local_checkpoint_files_load(encoder, frames, tmp_path):
    fresh = vlm_model.ClipEncoder(MODEL, None, device="cpu", seed=0)
    for (k, a), (_, b) in zip(encoder.model.state_dict().items(), fresh.model.state_dict().items()):
        assert torch.equal(a, b), k
    path = tmp_path / "weights.pt"
    torch.save(encoder.model.state_dict(), path)
    loaded = vlm_model.ClipEncoder(MODEL, str(path), device="cpu")
    assert loaded.weights.kind == "file"
    np.testing.assert_allclose(loaded.encode_frames(frames[:2]).numpy(), encoder.encode_frames(frames[:2]).numpy(), atol=1e-6)


def _fake_hub_file(cache: Path, repo: str, filename: str) -> Path:
    """Lay out ``filename`` of ``repo`` as the Hugging Face cache does (refs/main -> snapshots/<hash>/)."""
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text("0" * 40)
    path = root / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"weights")
    return path


def test_weights_found_in_the_local_cache_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hit = _fake_hub_file(tmp_path, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors")
    w = vlm_model.resolve_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert w.kind == "file" and Path(w.pretrained) == hit and not w.quick_gelu
    assert w.preprocess["interpolation"] == "bicubic" and len(w.preprocess["mean"]) == 3
    hit = _fake_hub_file(tmp_path, "timm/vit_base_patch32_clip_224.openai", "open_clip_pytorch_model.bin")
    w = vlm_model.resolve_weights("ViT-B-32", "openai", cache_dir=str(tmp_path))
    assert w.kind == "file" and Path(w.pretrained) == hit and w.quick_gelu  # OpenAI weights use QuickGELU
    cfg = _fake_hub_file(tmp_path, "org/my-clip", "open_clip_config.json")
    (cfg.parent / "open_clip_model.safetensors").write_bytes(b"weights")
    w = vlm_model.resolve_weights("hf-hub:org/my-clip", None, cache_dir=str(tmp_path))
    assert w.kind == "local-dir" and w.model_name == f"local-dir:{cfg.parent}"


def test_missing_weights_fail_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError) as err:
        rr.make_reward("vlm-rm:goal=a humanoid robot kneeling,model=ViT-B-32,pretrained=laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 5.0
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "pretrained=/path/to" in msg and "local-dir:" in msg
    assert isinstance(err.value, ConfigError)
    # a checkpoint path that does not exist
    with pytest.raises(MissingWeightsError, match="does not exist"):
        vlm_model.resolve_weights("ViT-B-32", str(tmp_path / "nope.pt"))
    # not marked offline, but the server does not answer: still immediate
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(vlm_model, "hub_offline", lambda: False)
    monkeypatch.setattr(vlm_model, "_hub_endpoint", lambda: "http://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="unreachable"):
        vlm_model.resolve_weights("ViT-B-32", "laion2b_s34b_b79k", cache_dir=str(tmp_path))
    assert time.perf_counter() - t0 < 5.0
    # unknown names are configuration errors listing what exists
    with pytest.raises(ConfigError, match="Tags of ViT-B-32"):
        vlm_model.resolve_weights("ViT-B-32", "no-such-tag")
    with pytest.raises(ConfigError, match="no model named"):
        vlm_model.resolve_weights("ViT-Q-99", None)


# ----------------------------------------------------------------------------- the plugin


def test_plugin_registered_and_built_from_spec_and_card(frames):
    from robo_reward.envs import load_card

    assert "vlm-rm" in rr.list_rewards()
    card = load_card(PENDULUM)
    plugin = rr.make_reward({"name": "vlm-rm", **SMALL, "alpha": 0.5}, task=card)
    assert isinstance(plugin, VLMRMReward)
    assert plugin.scorer.goal_prompts == tuple(card.vlm.goal)
    assert plugin.scorer.baseline_prompts == tuple(card.vlm.baseline)
    spec = rr.make_reward("vlm-rm:goal=a pole balanced upright,baseline=a pole,alpha=0.5,model=ViT-S-32-alt,pretrained=null")
    assert spec.scorer.encoder is plugin.scorer.encoder  # one shared model
    batch = rr.TransitionBatch(
        terminated=np.zeros(3, bool), truncated=np.zeros(3, bool), env_reward=np.zeros(3, np.float32),
        env_ids=np.arange(3), frames=frames[:3],
    )
    out = spec(batch)
    np.testing.assert_allclose(out.reward, spec.score(frames[:3]).reward)
    with pytest.raises(ConfigError, match="goal"):
        rr.make_reward({"name": "vlm-rm", **SMALL})
    with pytest.raises(ConfigError, match="baseline"):
        rr.make_reward({"name": "vlm-rm", "goal": "x", "alpha": 0.5, **SMALL})
    # pickles as its configuration (SB3 saves replay_buffer_kwargs), not as the weights
    blob = pickle.dumps(spec)
    assert len(blob) < 10_000
    again = pickle.loads(blob)
    np.testing.assert_allclose(again.score(frames[:2]).reward, spec.score(frames[:2]).reward)


def test_vector_env_end_to_end_on_rendered_mujoco():
    from robo_reward.envs import load_card, make_vec_env

    card = load_card(PENDULUM)
    venv = make_vec_env(PENDULUM, 3, reward={"name": "vlm-rm", **SMALL, "alpha": 0.5}, seed=0)
    try:
        assert isinstance(venv, rr.VectorRewardWrapper)
        calls = _spy(venv.plugin)
        venv.reset(seed=0)
        for step in range(3):
            _, reward, _, _, info = venv.step(venv.action_space.sample())
            frames, env_ids, out = calls[-1]
            assert len(calls) == step + 1  # one batched call per step for all sub-envs
            # the plugin scored the frames of the card's camera/size, all sub-envs in one batch
            assert frames.shape == (len(env_ids), card.render.height, card.render.width, 3)
            shown = np.stack(venv.render())
            np.testing.assert_array_equal(frames, shown[env_ids])
            np.testing.assert_allclose(reward[env_ids], out)
            assert set(info["reward_terms"]) == {"cosine_goal", "cosine_baseline", "projection"}
            assert np.all(info["env_reward"][env_ids] == 1.0)  # the env's own reward is kept
        np.testing.assert_allclose(venv.plugin.score(frames).reward, out, atol=1e-5)
    finally:
        venv.close()


def _sb3_env(n: int, reward, seed: int = 0):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from robo_reward.envs import load_card, make_env
    from robo_reward.wrappers import FinalFrameWrapper

    card = load_card(PENDULUM)
    fns = [lambda i=i: FinalFrameWrapper(make_env(card, render_mode="rgb_array", seed=seed + i)) for i in range(n)]
    return rr.SB3RewardWrapper(DummyVecEnv(fns), reward, task=card)


def test_sb3_per_step_rewards_use_terminal_frames_and_train():
    from stable_baselines3 import PPO

    venv = _sb3_env(2, {"name": "vlm-rm", **SMALL})
    try:
        calls = _spy(venv.plugin)
        venv.reset()
        seen_done = False
        for _ in range(40):
            venv.step_async(np.full((2, 1), 3.0, np.float32))  # push hard: episodes end quickly
            _, reward, dones, infos = venv.step_wait()
            frames, _, out = calls[-1]
            images = list(venv.venv.get_images())
            for i in np.flatnonzero(dones):
                images[i] = infos[i]["final_frame"]  # the terminal frame, not the reset one
                seen_done = True
            np.testing.assert_array_equal(frames, np.stack(images))
            np.testing.assert_allclose(reward, out)
            if seen_done:
                break
        assert seen_done
        model = PPO("MlpPolicy", venv, n_steps=4, batch_size=8, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=8)
        assert model.num_timesteps >= 8
    finally:
        venv.close()


def test_deferred_mode_relabels_replay_buffer_in_batches():
    from stable_baselines3 import SAC

    from robo_reward.rewards.vlm import VLMRelabelReplayBuffer, relabel_kwargs

    venv = _sb3_env(2, {"name": "vlm-rm", **SMALL, "defer": True})
    try:
        plugin = venv.plugin
        calls = _spy(plugin)
        kwargs = relabel_kwargs(venv, accumulate=3)
        assert kwargs["replay_buffer_class"] is VLMRelabelReplayBuffer
        model = SAC(
            "MlpPolicy", venv, buffer_size=100, learning_starts=8, batch_size=4, train_freq=1, gradient_steps=1,
            seed=0, device="cpu", **kwargs,
        )
        model.learn(total_timesteps=16)  # 8 steps of 2 envs; training from step 5 on
        buf = model.replay_buffer
        assert buf.pos == 8 and buf.encode_calls == 2 and buf.pending_steps == 2  # batches of 3 steps: 3, 6
        assert np.all(buf.rewards[6:8] == 0.0)  # placeholders until their batch is encoded
        assert all(np.all(out == 0.0) for _, _, out in calls)  # what env.step returned
        for _ in range(10):  # pending transitions are never sampled
            assert np.all(buf.sample(16).rewards.numpy() != 0.0)
        buf.flush()
        assert buf.pending_steps == 0 and plugin.unclaimed_steps == 0
        expected = plugin.score(np.concatenate([f for f, _, _ in calls])).reward.reshape(8, 2)
        np.testing.assert_allclose(buf.rewards[:8], expected, atol=1e-5)
    finally:
        venv.close()


def test_deferred_mode_without_a_relabelling_buffer_fails_loudly(frames):
    plugin = VLMRMReward(goal="x", defer=True, **SMALL)
    plugin.max_unclaimed_steps = 2
    batch = rr.TransitionBatch(
        terminated=np.zeros(2, bool), truncated=np.zeros(2, bool), env_reward=np.zeros(2, np.float32),
        env_ids=np.arange(2), frames=frames[:2],
    )
    out = plugin(batch)
    assert np.all(out.reward == 0) and "vlm_ticket" in out.terms
    plugin(batch)
    with pytest.raises(RewardComputationError, match="VLMRelabelReplayBuffer"):
        plugin(batch)


def test_metaworld_rollout():
    pytest.importorskip("metaworld")
    from robo_reward.envs import make_vec_env

    venv = make_vec_env("metaworld-reach-v3", 2, reward={"name": "vlm-rm", **SMALL, "alpha": 0.5}, seed=0)
    try:
        venv.reset(seed=0)
        for _ in range(2):
            _, reward, _, _, info = venv.step(venv.action_space.sample())
            assert reward.shape == (2,) and np.all(np.isfinite(reward))
            assert info["reward_terms"]["projection"].shape == (2,)
        np.testing.assert_allclose(reward, venv.plugin.score(np.stack(venv.render())).reward, atol=1e-5)
    finally:
        venv.close()


# ----------------------------------------------------------------------------- evaluation, recorded frames, CLI


def test_pearson_distance_and_plot(tmp_path):
    from robo_reward.rewards.vlm import evaluate_reward, pearson_distance, plot_reward_vs_ground_truth

    rng = np.random.default_rng(0)
    g = (np.arange(100) > 50).astype(float)
    assert pearson_distance(3 * g + 1, g) == pytest.approx(0.0, abs=1e-7)
    assert pearson_distance(-g, g) == pytest.approx(1.0)
    assert pearson_distance(rng.normal(size=20000), rng.normal(size=20000)) == pytest.approx(np.sqrt(0.5), abs=0.02)
    ev = evaluate_reward(g + 0.1 * rng.normal(size=100), g)
    assert ev.epic_distance < 0.2 and ev.mean_reward_success > ev.mean_reward_failure
    with pytest.raises(ConfigError, match="constant"):
        pearson_distance(np.ones(5), g[:5])
    import matplotlib.pyplot as plt

    out = tmp_path / "plot.png"
    fig = plot_reward_vs_ground_truth(g + 0.1 * rng.normal(size=100), g, out)
    plt.close(fig)
    assert out.stat().st_size > 1000


def test_cli_scores_folder_and_video(frames, tmp_path):
    import imageio.v3 as iio
    from typer.testing import CliRunner

    from robo_reward.cli import app

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 2, 10):  # natural order: 0, 1, 2, 10
        iio.imwrite(folder / f"frame{i}.png", frames[min(i, 5)][:160])
    (tmp_path / "labels.txt").write_text("success\n0\n0\n1\n1\n")
    plot = tmp_path / "out" / "plot.png"
    args = ["--goal", "a pole balanced upright", "--model", MODEL, "--pretrained", "none", "--no-progress"]
    res = CliRunner().invoke(
        app, ["vlm", "score", str(folder), *args, "--baseline", "a pole", "--alpha", "0.5",
              "--labels", str(tmp_path / "labels.txt"), "--out", str(plot)],
    )
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "frame,reward,cosine_goal,cosine_baseline,projection" and len(lines) == 5
    assert "EPIC distance" in res.output and plot.stat().st_size > 1000
    scorer = VLMRewardModel("a pole balanced upright", "a pole", 0.5, **SMALL)
    expected = scorer.score([frames[i][:160] for i in (0, 1, 2, 5)]).reward
    np.testing.assert_allclose([float(ln.split(",")[1]) for ln in lines[1:]], expected, atol=1e-4)

    video = tmp_path / "clip.mp4"
    iio.imwrite(video, frames[:, :64, :64], fps=10)
    res = CliRunner().invoke(app, ["vlm", "score", str(video), *args, "--json"])
    assert res.exit_code == 0, res.output
    import json

    payload = json.loads(res.output)
    assert payload["n_frames"] == 6 and len(payload["terms"]["cosine_goal"]) == 6

    res = CliRunner().invoke(app, ["vlm", "score", str(tmp_path / "missing.mp4"), *args])
    assert res.exit_code == 1 and "does not exist" in res.output
