"""LLM-written reward code, part 2: abstraction, few-shot retrieval, critic, analyser, library, loops and CLI.

Every loop runs end to end against the scripted OpenAI-compatible server on 127.0.0.1
(:mod:`robo_reward.llm.testing`). Most training is a stand-in trainer that reads a
``QUALITY`` constant from the reward code; one test (and the CLI search) trains for real
for a few hundred steps.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("mujoco")
pytest.importorskip("httpx")

from robo_reward.core.errors import ConfigError  # noqa: E402
from robo_reward.envs import card_from_dict, list_cards, load_card  # noqa: E402
from robo_reward.llm import OpenAIBackend, ReplayBackend  # noqa: E402
from robo_reward.llm.testing import FakeOpenAIServer, Reply  # noqa: E402
from robo_reward.rewards.code import loops  # noqa: E402
from robo_reward.rewards.code.abstraction import build_abstraction, fields_used  # noqa: E402
from robo_reward.rewards.code.analyser import EpisodeRecord, TrainResult, analyse, trajectory_notes  # noqa: E402
from robo_reward.rewards.code.critic import critique, random_rollouts  # noqa: E402
from robo_reward.rewards.code.fewshot import BM25, load_examples, parse_header, retrieve, tokenize  # noqa: E402
from robo_reward.rewards.code.library import RewardLibrary  # noqa: E402
from robo_reward.rewards.code.prompts import designer_messages  # noqa: E402
from robo_reward.rewards.code.sandbox import run_reward_code  # noqa: E402
from robo_reward.rewards.code.validate import validate_reward_code  # noqa: E402

TASK = "mujoco-reacher-v5"


def reward_code(quality: float = 0.5, scale: float = 0.1, extra: str = "") -> str:
    """A valid Reacher reward; the stand-in trainer reads QUALITY to decide how well it 'trains'."""
    return (
        f"QUALITY = {quality}\n\n"
        f"def compute_reward(obs, action, next_obs, scale={scale}):\n"
        "    d = np.sqrt(np.sum(next_obs[:, 8:10] ** 2, axis=1))\n"
        f"{extra}"
        '    return {"reach": 1.0 - np.tanh(d / scale), "control": -0.1 * np.sum(action ** 2, axis=1)}\n'
    )


def answer(code: str, prose: str = "Here is the reward function.") -> str:
    return f"{prose}\n\n```python\n{code}```\n"


NAN_CODE = (
    "def compute_reward(obs, action, next_obs):\n"
    "    d = next_obs[:, 8]\n"
    '    return {"reach": np.log(d)}\n'
)
HOSTILE_CODE = (
    "def compute_reward(obs, action, next_obs):\n"
    "    import os\n"
    "    leak = ().__class__.__bases__[0].__subclasses__()\n"
    '    return {"reach": next_obs[:, 0]}\n'
)


def fake_trainer(calls: list):
    """A trainer that returns made-up results at once: success rate = the code's QUALITY constant."""

    def trainer(spec, task, *, run_dir, steps, seed):
        code = (Path(spec["path"]) / "reward.py").read_text()
        m = re.search(r"^QUALITY = ([0-9.]+)", code, re.MULTILINE)
        q = float(m.group(1)) if m else 0.0
        calls.append({"spec": spec, "steps": steps, "seed": seed, "quality": q})
        Path(run_dir).mkdir(parents=True)
        n = 4
        k = int(round(q * n))
        obs = np.zeros((51, 10))
        obs[0, 8:10] = [0.2, 0.0]
        obs[-1, 8:10] = [0.2 * (1 - q), 0.0]
        episodes = [
            EpisodeRecord(obs.copy(), i < k, i < k, 50, False, -20.0 + 15 * q, 10.0 * q, {"reach": 10.0 * q, "control": -1.0})
            for i in range(n)
        ]
        trace = {
            "timesteps": [100, 200, 300],
            "episodes": [2, 2, 2],
            "success_rate": [0.0, q / 2, q],
            "env_return": [-20.0, -20 + 7 * q, -20 + 15 * q],
            "learned_return": [1.0, 1 + 4 * q, 1 + 9 * q],
            "ep_length": [50.0, 50.0, 50.0],
            "terms": {"reach": [1.0, 1 + 4 * q, 1 + 9 * q], "control": [-1.0, -1.0, -1.0]},
        }
        pairs = np.stack([np.linspace(0, 1, 50), np.linspace(-1, 0, 50)], axis=1)
        return TrainResult(steps, trace, episodes, pairs, Path(run_dir), None, {}, 50)

    return trainer


def backend(srv: FakeOpenAIServer) -> OpenAIBackend:
    return OpenAIBackend("fake-model", base_url=srv.base_url, api_key_env=None, backoff_s=0.01, max_backoff_s=0.05)


def user_text(request) -> str:
    return request.json["messages"][-1]["content"]


# ----------------------------------------------------------------------------- abstraction


@pytest.mark.parametrize("card", list_cards(), ids=lambda c: c.name)
def test_abstraction_stubs_contain_every_field_with_units(card):
    stubs = build_abstraction(card).to_python()
    for f in card.observation:
        line = next(ln for ln in stubs.splitlines() if ln.strip().startswith(f"{f.name}:"))
        assert f"obs[:, {f.start}:{f.stop}]" in line
        assert f"[n, {f.stop - f.start}]" in line
        units = "dimensionless" if f.units.strip() in ("-", "") else f.units
        assert f"units: {units}" in line
    assert card.name in stubs and "class Env:" in stubs
    compile(stubs, "<stubs>", "exec")  # the stubs are valid Python


def test_abstraction_groups_fields_and_maps_slices():
    import gymnasium as gym

    card = load_card(TASK)
    abstraction = build_abstraction(card, gym.spaces.Box(-1.0, 1.0, (2,)))
    entities = {e.name: [a.name for a in e.attributes] for e in abstraction.entities}
    assert entities["relations"] == ["fingertip_to_target"]
    assert entities["goal"] == ["target_position"]
    assert "joint_velocities" in entities["robot"]
    assert "action: np.ndarray  # float array [n, 2], each entry in [-1, 1]" in abstraction.to_python()
    obs = np.arange(30, dtype=float).reshape(3, 10)
    views = abstraction.views(obs)
    np.testing.assert_array_equal(views["fingertip_to_target"], obs[:, 8:10])
    assert fields_used("x = next_obs[:, 8:10]", abstraction) == ["fingertip_to_target"]

    drawer = build_abstraction(load_card("metaworld-drawer-open-v3"))
    groups = {a.name: a.entity for a in drawer.attributes}
    assert groups["previous_object_position"] == "object" and groups["previous_hand_position"] == "robot"
    assert groups["goal_position"] == "goal" and groups["second_object_position"] == "second_object"


def test_abstraction_needs_observation_fields():
    card = card_from_dict({"name": "bare-v0", "family": "other", "env_id": "CartPole-v1", "max_episode_steps": 10,
                           "success": {"info_key": "success"}})
    with pytest.raises(ConfigError, match="observation"):
        build_abstraction(card)


# ----------------------------------------------------------------------------- few-shot


def test_bm25_scores_shared_rare_words_higher():
    docs = [tokenize("robot arm pushes a puck to a goal"), tokenize("legged robot runs forward fast"),
            tokenize("robot arm opens a drawer by its handle")]
    scores = BM25(docs).scores(tokenize("push the puck with the arm"))
    assert scores[0] > scores[2] > scores[1] == 0.0
    assert tokenize("metaworld-pick-place-v3 Positions") == ["metaworld", "pick", "place", "v3", "position"]


def test_fewshot_retrieval_returns_the_most_similar_examples():
    examples = load_examples()
    # the shipped files: every one says who wrote it, names a shipped task, and passes the validator
    assert {e.task for e in examples} >= {"mujoco-reacher-v5", "metaworld-reach-v3", "metaworld-pick-place-v3"}
    for e in examples:
        assert e.written_by and load_card(e.task).name == e.task
        validate_reward_code(e.code, filename=str(e.path))

    def names(task, k=2):
        return [e.name for e, _ in retrieve(load_card(task), k, examples=examples, exclude_task=task)]

    assert names("mujoco-walker2d-v5")[0] == "mujoco-hopper-v5"  # the other hopping/walking robot
    assert names("mujoco-reacher-v5")[0] == "mujoco-pusher-v5"  # the other arm with a target
    assert names("metaworld-drawer-close-v3")[0] == "metaworld-drawer-open-v3"
    assert all(n.startswith("metaworld-") for n in names("metaworld-window-open-v3", 3))
    assert "mujoco-reacher-v5" not in names("mujoco-reacher-v5", 10)  # own task excluded
    assert names("mujoco-reacher-v5", 10) == names("mujoco-reacher-v5", 10)  # deterministic
    top = retrieve("a robot arm pushes a puck across the table to a goal", 1, examples=examples)
    assert top[0][0].name == "metaworld-push-v3"
    assert retrieve(load_card(TASK), 0, examples=examples) == []


def test_fewshot_examples_from_a_user_folder(tmp_path):
    (tmp_path / "mine.py").write_text(
        "# task: mujoco-hopper-v5\n# written-by: a tester\n# summary: jump high\n\n" + reward_code()
    )
    ex = load_examples(tmp_path)
    assert ex[0].written_by == "a tester" and ex[0].body.startswith("QUALITY")
    assert parse_header(ex[0].code) == {"task": "mujoco-hopper-v5", "written-by": "a tester", "summary": "jump high"}
    (tmp_path / "bad.py").write_text("def compute_reward(obs):\n    return obs[:, 0]\n")
    with pytest.raises(ConfigError, match="written-by"):
        load_examples(tmp_path)


@pytest.mark.parametrize("example", load_examples(), ids=lambda e: e.name)
def test_shipped_reward_programs_run_in_the_sandbox(example):
    card = load_card(example.task)
    if card.family == "mujoco":
        data = random_rollouts(card, 64, seed=0).arrays()
    else:  # building MetaWorld envs is slow; numbers of the right shape are enough to run the code
        rng = np.random.default_rng(0)
        data = {"obs": rng.uniform(-1, 1, (64, card.obs_dim)), "action": rng.uniform(-1, 1, (64, 4)),
                "next_obs": rng.uniform(-1, 1, (64, card.obs_dim))}
    out = run_reward_code(example.code, data, isolation="none")
    assert out.reward.shape == (64,) and np.isfinite(out.reward).all() and len(out.terms) >= 2


# ----------------------------------------------------------------------------- library


def test_library_versions_record_parent_links(tmp_path):
    lib = RewardLibrary(tmp_path / "lib")
    a = lib.add(task=TASK, code=reward_code(), prompt=[{"role": "user", "content": "hi"}], response="r",
                method="text2reward-zero-shot", written_by="m")
    b = lib.add(task=TASK, code=reward_code(0.9), parent=a.id, method="refine", status="accepted", feedback="slower")
    c = lib.add(task=TASK, code=reward_code(0.2), parent=b.id, method="refine")
    assert [v.id for v in lib.versions()] == ["v0001", "v0002", "v0003"]
    assert [v.id for v in lib.lineage(c)] == ["v0001", "v0002", "v0003"]
    assert [v.id for v in lib.children(a.id)] == ["v0002"]
    assert a.code().startswith("# task: mujoco-reacher-v5\n# written-by: m")
    assert a.prompt() == [{"role": "user", "content": "hi"}] and a.response() == "r"
    assert lib.get(b.path).meta["feedback"] == "slower" and lib.get(b.code_path).id == "v0002"
    lib.update(b, status="trained", metrics={"success_rate": 0.7, "env_return": -5.0})
    lib.update(c, status="trained", metrics={"success_rate": 0.7, "env_return": -3.0}, critic={"ok": True})
    assert lib.best(TASK).id == "v0003" and lib.get("v0003").critic() == {"ok": True}
    assert lib.get("v0002").status == "trained"
    with pytest.raises(ConfigError, match="parent"):
        lib.add(task=TASK, code="x", parent="v0999")
    with pytest.raises(ConfigError, match="v0001, v0002, v0003"):
        lib.get("v0042")
    (tmp_path / "lib" / "v0004").mkdir()  # a half-written version (no version.json) is skipped, its number too
    assert lib.add(task=TASK, code="y").id == "v0005" and len(lib) == 4
    # the code plugin trains on a version by its folder
    from robo_reward.core.registry import make_reward

    plugin = make_reward(a.spec, task=load_card(TASK))
    try:
        assert plugin.source == a.code()
    finally:
        plugin.sandbox.close()


# ----------------------------------------------------------------------------- critic


def test_critic_accepts_good_code_and_reports_term_scales():
    report = critique(reward_code(), TASK, n_states=128)
    assert report.ok, report.feedback()
    assert set(report.term_stats) == {"reward", "reach", "control"}
    assert report.term_stats["reach"]["min"] >= 0.0 and report.term_stats["control"]["max"] <= 0.0
    assert report.dry_run["states"] == 128 and "Scale of each term" in report.feedback()
    assert json.dumps(report.to_dict())


@pytest.mark.parametrize(
    "code, check, text",
    [
        (HOSTILE_CODE, "static", "line 2"),
        (NAN_CODE, "runtime", "not finite"),
        ("def compute_reward(obs, action, next_obs):\n    return {'a': next_obs[:, 8:10]}\n", "runtime", "shape"),
        ("def compute_reward(next_obs):\n    return next_obs[:, 0] * 0.0 + 1.0\n", "constant", "no signal"),
        ("def compute_reward(next_obs):\n    d = next_obs[:, 8]\n    return d - d.mean()\n", "batch", "other rows"),
        ("def compute_reward(next_obs):\n    while True:\n        pass\n", "static", "never ends"),
    ],
    ids=["hostile", "nan", "shape", "constant", "batch-dependent", "infinite-loop"],
)
def test_critic_rejects_bad_code_with_actionable_feedback(code, check, text):
    report = critique(code, TASK, n_states=64)
    assert not report.ok
    assert report.errors[0].check == check
    assert text in report.feedback()


def test_critic_warns_about_scale_and_unused_fields():
    code = (
        "def compute_reward(obs, action, next_obs):\n"
        "    d = np.sqrt(np.sum((next_obs[:, 0:3] - next_obs[:, 36:39]) ** 2, axis=1))\n"
        "    puck = next_obs[:, 4:7]\n"
        "    return {'reach': 1000.0 * d, 'puck': 0.001 * puck[:, 0], 'bonus': 0.0 * d}\n"
    )
    report = critique(code, "metaworld-reach-v3", n_states=32)
    checks = {f.check for f in report.warnings}
    assert report.ok  # warnings do not reject
    assert {"dominance", "constant-term", "unused-field"} <= checks


def test_critic_llm_review_through_the_server():
    with FakeOpenAIServer(["- the control term ignores the elbow", "OK"]) as srv:
        llm = backend(srv)
        rejected = critique(reward_code(), TASK, n_states=32, llm=llm)
        accepted = critique(reward_code(), TASK, n_states=32, llm=llm)
        review_prompt = user_text(srv.chat_requests[0])
    assert not rejected.ok and "ignores the elbow" in rejected.feedback()
    assert accepted.ok and accepted.llm_critique == "OK"
    assert "Review the reward" in review_prompt and "fingertip_to_target" in review_prompt


# ----------------------------------------------------------------------------- analyser


def test_analyser_reflection_and_failure_modes():
    abstraction = build_abstraction(load_card("metaworld-push-v3"))
    obs = np.zeros((6, 39))
    obs[:, 0:3] = np.linspace([0, 0.6, 0.2], [0, 0.7, 0.1], 6)  # the hand moves ...
    obs[:, 4:7] = [0.0, 0.7, 0.02]  # ... but the puck never does
    obs[:, 36:39] = [0.1, 0.8, 0.0]
    eps = [EpisodeRecord(obs, False, False, 5, True, -3.0, 40.0, {"reach": 39.9, "bonus": 0.1}) for _ in range(3)]
    trace = {"timesteps": [10, 20, 30], "episodes": [1, 1, 1], "success_rate": [0.0, 0.0, 0.0],
             "env_return": [-1.0, -2.0, -3.0], "learned_return": [1.0, 20.0, 40.0], "ep_length": [5, 5, 5],
             "terms": {"reach": [1.0, 20.0, 39.9], "bonus": [0.1, 0.1, 0.1]}}
    pairs = np.stack([np.arange(20.0), -np.arange(20.0)], axis=1)
    res = TrainResult(30, trace, eps, pairs, None, None, {}, 500)
    a = analyse(res, abstraction)
    text = a.text
    assert "term reach: [1, 20, 39.9]  max 39.9, mean 20.3, min 1" in text  # Eureka-style reflection
    assert a.metrics["success_rate"] == 0.0 and a.metrics["pearson_step"] == pytest.approx(-1.0)
    modes = " ".join(a.failure_modes)
    assert "never succeeded" in modes
    assert "ended early" in modes
    assert "without doing the task" in modes  # reward up, ground truth down
    assert "weakly correlated" in modes
    assert "'bonus' stayed at 0.1" in modes
    assert "'reach' makes up" in modes
    notes = trajectory_notes(eps, abstraction)
    assert any("object_position moved only" in n for n in notes)
    assert any(n.startswith("distance hand_position to object_position") for n in notes)
    assert json.dumps(a.to_dict())


# ----------------------------------------------------------------------------- Text2Reward


def test_generate_zero_shot_prompt_holds_the_abstraction(tmp_path):
    with FakeOpenAIServer([answer(reward_code())]) as srv:
        res = loops.generate(TASK, backend(srv), tmp_path / "lib")
        prompt = user_text(srv.chat_requests[0])
    assert res.best is not None and res.best.status == "accepted" and res.best.method == "text2reward-zero-shot"
    assert "fingertip_to_target: np.ndarray  # shape [n, 2] = obs[:, 8:10]; units: m" in prompt
    assert "def compute_reward(obs, action, next_obs):" in prompt
    assert "experts wrote" not in prompt  # zero-shot: no examples
    assert res.best.meta["usage"]["requests"] == 1 and res.usage["requests"] == 1
    assert res.best.critic()["ok"] and "QUALITY = 0.5" in res.best.code()
    assert res.best.code().startswith("# task: mujoco-reacher-v5\n# written-by: fake-model")


def test_generate_few_shot_prompt_holds_retrieved_examples(tmp_path):
    with FakeOpenAIServer([answer(reward_code())]) as srv:
        res = loops.generate(TASK, backend(srv), tmp_path / "lib", few_shot=2)
        prompt = user_text(srv.chat_requests[0])
    assert res.best.meta["examples"] == ["mujoco-pusher-v5", "mujoco-half-cheetah-v5"]
    assert "Task `mujoco-pusher-v5`" in prompt and "tip_to_object" in prompt
    assert "Task `mujoco-reacher-v5`:" not in prompt.split("experts wrote")[1]  # not its own example
    assert res.best.method == "text2reward-few-shot"


def test_generate_failure_path_bad_code_feedback_then_fixed(tmp_path):
    script = [Reply.error(500), answer(NAN_CODE), answer(HOSTILE_CODE), "no code in this answer", answer(reward_code(0.7))]
    with FakeOpenAIServer(script) as srv:
        res = loops.generate(TASK, backend(srv), tmp_path / "lib", max_fixes=3)
        reqs = srv.chat_requests
    lib = res.library
    assert [v.status for v in lib.versions()] == ["rejected", "rejected", "rejected", "accepted"]
    assert [v.parent for v in lib.versions()] == [None, "v0001", "v0002", "v0003"]  # each fix is a child
    assert res.best.id == "v0004" and [v.id for v in lib.lineage(res.best)] == ["v0001", "v0002", "v0003", "v0004"]
    # the critic's findings go back in the same conversation
    second = reqs[2].json["messages"]
    assert second[-2] == {"role": "assistant", "content": answer(NAN_CODE)}
    assert "not finite" in second[-1]["content"] and "line 3" in second[-1]["content"]
    third = user_text(reqs[3])
    assert "line 2" in third and "import os" in third and "'__subclasses__' is not allowed" in third
    fourth = user_text(reqs[4])
    assert "compute_reward" in fourth and "extract" not in fourth.split("found problems")[0]
    assert lib.get("v0003").critic()["findings"][0]["check"] == "extract"


def test_generate_gives_up_after_max_fixes(tmp_path):
    with FakeOpenAIServer([answer(NAN_CODE)] * 3) as srv:
        res = loops.generate(TASK, backend(srv), tmp_path / "lib", max_fixes=2)
    assert res.best is None
    assert [v.status for v in res.library.versions()] == ["rejected"] * 3


def test_refine_with_free_text_feedback(tmp_path):
    lib = RewardLibrary(tmp_path / "lib")
    base = lib.add(task=TASK, code=reward_code(0.3), method="text2reward-zero-shot", status="trained",
                   metrics={"success_rate": 0.25, "env_return": -12.5})
    with FakeOpenAIServer([answer(reward_code(0.6, scale=0.05))]) as srv:
        res = loops.refine(base.id, "it overshoots the target; slow down when close", backend(srv), lib)
        prompt = user_text(srv.chat_requests[0])
    assert "it overshoots the target; slow down when close" in prompt
    assert "QUALITY = 0.3" in prompt and "# task:" not in prompt  # the old code, without its header
    assert "success_rate: 0.25" in prompt and "env_return: -12.5" in prompt
    assert res.best.parent == base.id and res.best.method == "refine"
    assert res.best.meta["feedback"] == "it overshoots the target; slow down when close"
    with pytest.raises(ConfigError, match="feedback"):
        loops.refine(base.id, "  ", None, lib)


def test_record_then_replay_gives_the_same_versions(tmp_path):
    rec = tmp_path / "llm.jsonl"
    with FakeOpenAIServer([answer(NAN_CODE), answer(reward_code(0.4))]) as srv:
        llm = OpenAIBackend("fake-model", base_url=srv.base_url, api_key_env=None, record=rec)
        first = loops.generate(TASK, llm, tmp_path / "a")
    replayed = loops.generate(TASK, ReplayBackend(rec), tmp_path / "b")
    assert [v.code() for v in first.library.versions()] == [v.code() for v in replayed.library.versions()]
    assert replayed.usage["replayed"] == 2


# ----------------------------------------------------------------------------- Auto MC-Reward


def test_auto_mc_reward_designer_critic_train_analyse_revise(tmp_path):
    calls: list = []
    script = [
        answer(reward_code(0.0)),  # designer: first draft
        "OK",  # critic (LLM review)
        answer(NAN_CODE),  # designer revises after the analysis ... into broken code
        answer(reward_code(0.9)),  # ... fixed after the automatic critic's findings
        "OK",  # critic
    ]
    with FakeOpenAIServer(script) as srv:
        res = loops.auto_mc_reward(TASK, backend(srv), tmp_path / "lib", iterations=4, steps=300,
                                   trainer=fake_trainer(calls), success_threshold=0.8)
        reqs = srv.chat_requests
    assert [c["quality"] for c in calls] == [0.0, 0.9]  # stopped once the threshold was reached
    assert calls[0]["steps"] == 300 and calls[0]["spec"]["name"] == "code"
    lib = res.library
    assert [(v.id, v.parent, v.status) for v in lib.versions()] == [
        ("v0001", None, "trained"), ("v0002", "v0001", "rejected"), ("v0003", "v0002", "trained")]
    assert res.best.id == "v0003" and res.best.metrics()["success_rate"] == 1.0
    revise = user_text(reqs[2])
    assert "The trajectory analyser reports" in revise
    assert "never succeeded" in revise and "term reach: [1, 1, 1]" in revise
    assert "|fingertip_to_target|: 0.200 m at the start, 0.200 m at the end" in revise
    assert "Review the reward" in user_text(reqs[1])
    assert "not finite" in user_text(reqs[3])
    m = lib.get("v0001").metrics()
    assert m["terms"]["reach"]["values"] == [1.0, 1.0, 1.0] and m["failure_modes"]


# ----------------------------------------------------------------------------- ICPL


def test_icpl_rounds_rank_and_feed_back_best_and_worst(tmp_path):
    calls: list = []
    round1 = Reply(text=[answer(reward_code(0.2)), answer(reward_code(0.8, scale=0.05)), answer(NAN_CODE)])
    script = [round1, answer(reward_code(0.5)),  # the broken third sample gets one fix
              Reply(text=[answer(reward_code(1.0)), answer(reward_code(0.1)), answer(reward_code(0.6))])]
    with FakeOpenAIServer(script) as srv:
        res = loops.icpl(TASK, backend(srv), tmp_path / "lib", rounds=2, samples=3, steps=200,
                         selector=loops.OracleSelector(), trainer=fake_trainer(calls))
        reqs = srv.chat_requests
    assert reqs[0].json["n"] == 3 and reqs[2].json["n"] == 3
    assert res.rounds[0]["ranking"] == ["v0002", "v0004", "v0001"]  # ground-truth return follows QUALITY
    lib = res.library
    assert lib.get("v0004").parent == "v0003" and lib.get("v0003").status == "rejected"
    assert [lib.get(v).meta["rank"] for v in res.rounds[0]["ranking"]] == [0, 1, 2]
    nxt = user_text(reqs[2])
    best_part, worst_part = nxt.split("The LEAST preferred reward function:")
    assert "QUALITY = 0.8" in best_part.split("The MOST preferred")[1] and "QUALITY = 0.2" in worst_part
    assert "term reach" in best_part  # its reward trace
    assert all(lib.get(v).parent == "v0002" for v in res.rounds[1]["versions"])  # children of round 1's best
    assert res.rounds[1]["ranking"][0] == "v0005" and res.best.id == "v0005"
    assert len(calls) == 6 and {c["seed"] for c in calls} == {0}


def test_icpl_with_a_human_ranking_in_the_terminal(tmp_path):
    answers = iter(["9", "1 1", "2 3 1"])
    shown: list[str] = []
    selector = loops.HumanSelector(input_fn=lambda prompt: next(answers), output_fn=shown.append)
    calls: list = []
    with FakeOpenAIServer([Reply(text=[answer(reward_code(q)) for q in (0.9, 0.1, 0.5)])]) as srv:
        res = loops.icpl(TASK, backend(srv), tmp_path / "lib", rounds=1, samples=3, steps=100,
                         selector=selector, trainer=fake_trainer(calls))
    assert res.rounds[0]["ranking"] == ["v0002", "v0003", "v0001"]  # the person's order, not the success rate
    assert res.best.id == "v0002"
    text = "\n".join(shown)
    assert "[1] v0001: (no video recorded)" in text and "between 1 and 3" in text and "distinct" in text
    assert res.library.get("v0001").meta["selector"] == "human"


def test_selectors():
    from types import SimpleNamespace

    def cand(sr, gt):
        c = loops.Candidate(version=SimpleNamespace(id=f"v{sr}{gt}"))
        c.analysis = type("A", (), {"metrics": {"success_rate": sr, "env_return": gt, "final_success_rate": sr}})()
        return c

    cands = [cand(0.5, -10.0), cand(0.9, -30.0), cand(0.5, -5.0)]
    assert loops.SuccessRateSelector().rank(cands) == [1, 2, 0]
    assert loops.OracleSelector().rank(cands) == [2, 0, 1]
    assert sorted(loops.OracleSelector(noise=1.0).rank(cands)) == [0, 1, 2]
    assert loops.HumanSelector(input_fn=lambda p: "3", output_fn=lambda s: None).rank(cands) == [2, 0, 1]
    with pytest.raises(ConfigError, match="no valid ranking"):
        loops.HumanSelector(input_fn=lambda p: "x", output_fn=lambda s: None, max_tries=2).rank(cands)
    with pytest.raises(ConfigError, match="success, oracle or human"):
        loops.make_selector("vibes")


# ----------------------------------------------------------------------------- real training


def test_auto_mc_reward_with_a_real_short_training_run(tmp_path):
    trainer = loops.default_trainer(n_envs=2, agent_overrides={"n_steps": 64, "batch_size": 64, "n_epochs": 1},
                                    eval_episodes=2, device="cpu")
    with FakeOpenAIServer([answer(reward_code(0.5))]) as srv:
        res = loops.auto_mc_reward(TASK, backend(srv), tmp_path / "lib", iterations=1, steps=256, trainer=trainer,
                                   critic_llm=False)
    v = res.best
    assert v is not None and v.status == "trained"
    m = v.metrics()
    assert m["timesteps"] >= 256 and m["episodes"] == 2 and 0.0 <= m["success_rate"] <= 1.0
    assert set(m["terms"]) == {"reach", "control"} and len(m["terms"]["reach"]["values"]) >= 2
    assert m["pearson_step"] is not None and "Failure modes" in m["report"] or "No failure modes" in m["report"]
    run = v.path / "run"
    assert (run / "summary.json").is_file() and (run / "config.yaml").is_file()
    assert json.loads((run / "summary.json").read_text())["reward"] == v.spec


# ----------------------------------------------------------------------------- CLI


def test_cli_generate_refine_and_search(tmp_path):
    from typer.testing import CliRunner

    from robo_reward.cli import app

    runner = CliRunner()
    lib = tmp_path / "lib"
    script = [answer(NAN_CODE), answer(reward_code(0.5)),  # generate: broken, then fixed
              answer(reward_code(0.6, scale=0.05)),  # refine
              Reply(text=[answer(reward_code(0.1)), answer(reward_code(0.2))])]  # search: one ICPL round of 2
    with FakeOpenAIServer(script) as srv:
        llm = ["--model", "fake-model", "--base-url", srv.base_url, "--api-key-env", "NO_SUCH_KEY_VAR"]
        out = runner.invoke(app, ["reward", "generate", "--task", TASK, "--library", str(lib), "--few-shot", "1",
                                  "--json", *llm])
        assert out.exit_code == 0, out.output
        gen = json.loads(out.stdout)
        assert gen["best"] == "v0002" and gen["spec"] == f"code:path={lib / 'v0002'}"
        assert gen["usage"]["requests"] == 2
        out = runner.invoke(app, ["reward", "refine", str(lib / "v0002"), "--feedback", "be gentler", *llm])
        assert out.exit_code == 0, out.output
        assert "v0003" in out.stdout and "robo-reward train --task mujoco-reacher-v5 --reward code:path=" in out.stdout
        out = runner.invoke(app, ["reward", "search", "--task", TASK, "--library", str(lib), "--method", "icpl",
                                  "--rounds", "1", "--samples", "2", "--steps", "128", "--n-envs", "1",
                                  "--hp", "n_steps=64", "--hp", "batch_size=32", "--hp", "n_epochs=1",
                                  "--eval-episodes", "1", "--select", "oracle", "--device", "cpu", "--json", *llm])
        assert out.exit_code == 0, out.output
        found = json.loads(out.stdout)
        assert found["rounds"][0]["trained"] == ["v0004", "v0005"] and found["best"] in ("v0004", "v0005")
        out = runner.invoke(app, ["reward", "generate", "--task", TASK, "--library", str(lib)])
        assert out.exit_code == 1 and "--model NAME" in out.output
    assert RewardLibrary(lib).get("v0003").parent == "v0002"


def test_human_selector_shows_videos_as_gifs(tmp_path):
    imageio = pytest.importorskip("imageio.v2")
    from types import SimpleNamespace

    cands = []
    for i in range(2):
        video = tmp_path / f"c{i}" / "videos" / "eval.mp4"
        video.parent.mkdir(parents=True)
        frames = [np.full((32, 32, 3), 20 * k + 100 * i, dtype=np.uint8) for k in range(6)]
        imageio.mimsave(video, frames, fps=10, macro_block_size=1)
        c = loops.Candidate(version=SimpleNamespace(id=f"v000{i + 1}"))
        c.result = TrainResult(10, video=video)
        cands.append(c)
    shown: list[str] = []
    order = loops.HumanSelector(input_fn=lambda p: "2 1", output_fn=shown.append).rank(cands)
    assert order == [1, 0]
    for i in range(2):
        gif = tmp_path / f"c{i}" / "videos" / "eval.gif"
        assert gif.is_file() and f"(GIF: {gif})" in "\n".join(shown)
        assert len(imageio.mimread(gif)) == 3  # every second frame
