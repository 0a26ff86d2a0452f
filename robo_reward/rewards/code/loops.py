"""The reward-writing loops: Text2Reward generate/refine, Auto MC-Reward, and ICPL.

All three share one step, :func:`design`: ask the LLM (the *designer*), pull the code out
of the answer, let the :mod:`critic <robo_reward.rewards.code.critic>` check it, and —
while it is rejected — send the critic's findings back in the same conversation (at
most ``max_fixes`` times). Every answer becomes a version in the
:class:`~robo_reward.rewards.code.library.RewardLibrary`, the rejected ones included; a
fix is the child of the version it fixes.

* :func:`generate` — Text2Reward (Xie et al. 2023): zero-shot, or few-shot with examples
  for similar tasks retrieved by BM25 (:mod:`~robo_reward.rewards.code.fewshot`).
* :func:`refine` — Text2Reward's human-in-the-loop step: a person's free-text feedback on
  the trained behaviour yields a revised version (child of the one it revises).
* :func:`auto_mc_reward` — Auto MC-Reward (Li et al. 2023): designer → critic → training
  → trajectory analyser (:func:`~robo_reward.rewards.code.analyser.analyse`) → designer
  revises, until the success rate reaches a threshold or the iterations run out.
* :func:`icpl` — ICPL (Yu et al. 2024): each round the LLM writes ``samples`` rewards, a
  policy is trained on each, a :class:`Selector` ranks the behaviours (by success rate,
  by a synthetic oracle, or by a person shown the videos), and the most and least
  preferred go back to the LLM with their reward traces.

Training is injectable: a loop takes any :class:`~robo_reward.rewards.code.analyser.Trainer`
(default: :func:`~robo_reward.rewards.code.analyser.train_candidate`, a short
Stable-Baselines3 run in ``<version>/run``).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ...core.errors import ConfigError, RoboRewardError
from .analyser import Analysis, TrainResult, analyse, train_candidate
from .critic import CriticReport, Finding, critique
from .library import RewardLibrary, RewardVersion
from .prompts import (
    Message,
    ask,
    designer_messages,
    fix_messages,
    format_metrics,
    icpl_messages,
    refine_messages,
    revise_messages,
)


# ---------------------------------------------------------------------------------- shared


@dataclass
class Candidate:
    """A reward version with what is known about it: critic report, training result, analysis."""

    version: RewardVersion
    report: CriticReport | None = None
    result: TrainResult | None = None
    analysis: Analysis | None = None

    @property
    def ok(self) -> bool:
        """The critic accepted it."""
        return self.report is not None and self.report.ok

    @property
    def metrics(self) -> dict[str, Any]:
        """The analysis metrics (empty before training)."""
        return self.analysis.metrics if self.analysis is not None else {}


@dataclass
class LoopResult:
    """What a loop returns.

    Attributes:
        best: the version the loop settles on (``None`` when nothing passed the critic).
        candidates: every candidate made, in order (rejected fixes are in the library's lineage).
        rounds: per round (or iteration), the ids of the versions made and, for ICPL, the ranking.
        library: the library they are stored in.
        usage: the LLM client's request, token and cost totals after the loop (when it counts them).
    """

    best: RewardVersion | None
    candidates: list[Candidate] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    library: RewardLibrary | None = None
    usage: dict[str, Any] | None = None


def _model_name(llm: Any) -> str:
    for attr in ("model", "name"):
        v = getattr(llm, attr, None)
        if isinstance(v, str) and v:
            return v
    return type(llm).__name__


def _tokens(llm: Any) -> dict[str, float] | None:
    """The LLM client's running totals (requests, tokens, cost), when it keeps a :class:`~robo_reward.llm.Usage`."""
    u = getattr(llm, "usage", None)
    if u is None or not hasattr(u, "prompt_tokens"):
        return None
    return {"requests": u.requests, "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
            "cost_usd": u.cost}


def _usage_total(llm: Any) -> dict[str, Any] | None:
    usage = getattr(llm, "usage", None)
    fn = getattr(usage, "to_dict", None)
    return fn() if callable(fn) else None


def _ask_counted(llm: Any, messages: Sequence[Message], n: int = 1) -> tuple[list[str], dict[str, Any] | None]:
    """:func:`ask`, plus the requests, tokens and cost it took (``None`` when the client does not count)."""
    before = _tokens(llm)
    texts = ask(llm, messages, n=n)
    after = _tokens(llm)
    if before is None or after is None:
        return texts, None
    delta: dict[str, Any] = {k: after[k] - before[k] for k in after}
    delta["cost_usd"] = round(delta["cost_usd"], 8)
    if n > 1:
        delta["shared_by_samples"] = n
    return texts, delta


def _extract(response: str) -> str:
    from .extract import extract_reward_code

    return extract_reward_code(response)


@dataclass
class Designer:
    """The designer–critic step shared by the loops (see the module docstring).

    Attributes:
        task: the task card.
        llm: the chat client (:func:`~robo_reward.rewards.code.prompts.ask` says what fits).
        library: where versions are stored.
        abstraction: the task's environment abstraction.
        max_fixes: how many times rejected code goes back with the critic's findings.
        critic_llm: also ask the LLM to review accepted code (Auto MC-Reward's semantic critic).
        n_states: dry-run states of the critic.
        seed: seed of the critic's rollouts.
        sandbox_options: passed to the critic's sandbox.
        log: progress messages.
    """

    task: Any
    llm: Any
    library: RewardLibrary
    abstraction: Any
    max_fixes: int = 2
    critic_llm: bool = False
    n_states: int = 256
    seed: int = 0
    sandbox_options: Mapping[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] = lambda msg: None

    def check(self, code: str) -> CriticReport:
        """Run the critic on ``code``."""
        return critique(
            code, self.task, n_states=self.n_states, seed=self.seed, abstraction=self.abstraction,
            llm=self.llm if self.critic_llm else None, sandbox_options=self.sandbox_options,
        )

    def run(
        self,
        messages: Sequence[Message],
        *,
        method: str,
        parent: str | None = None,
        samples: int = 1,
        **info: Any,
    ) -> list[Candidate]:
        """Ask for ``samples`` answers to ``messages``; put each through the critic and its fixes.

        Returns one :class:`Candidate` per sample: the accepted version, or the last
        rejected one when ``max_fixes`` fixes did not make it pass.
        """
        responses, usage = _ask_counted(self.llm, messages, n=samples)
        usages = [usage] * len(responses)
        while len(responses) < samples:  # a server that ignores n: ask again
            more, usage = _ask_counted(self.llm, messages, n=samples - len(responses))
            responses += more
            usages += [usage] * len(more)
        return [
            self._until_accepted(list(messages), resp, usages[i], method=method, parent=parent, sample=i, **info)
            for i, resp in enumerate(responses[:samples])
        ]

    def _until_accepted(
        self, messages: list[Message], response: str, usage: dict[str, Any] | None, *,
        method: str, parent: str | None, sample: int, **info: Any,
    ) -> Candidate:
        model = _model_name(self.llm)
        fix = 0
        while True:
            try:
                code = _extract(response)
            except RoboRewardError as exc:
                code = ""
                report = CriticReport(False, [Finding("error", "extract", str(exc))])
            else:
                report = self.check(code)
            version = self.library.add(
                task=self.abstraction.task,
                code=code,
                prompt=messages,
                response=response,
                parent=parent,
                method=method,
                written_by=f"{model} ({method})",
                status="accepted" if report.ok else "rejected",
                critic=report.to_dict(),
                model=model,
                sample=sample,
                fix=fix,
                usage=usage,
                **info,
            )
            verdict = "accepted" if report.ok else f"rejected ({len(report.errors)} error(s))"
            self.log(f"{version.id}: {verdict}" + (f", fix {fix} of {version.parent}" if fix else ""))
            if report.ok or fix >= self.max_fixes:
                return Candidate(version, report)
            messages = fix_messages(messages, response, report.feedback())
            texts, usage = _ask_counted(self.llm, messages)
            response = texts[0]
            parent = version.id
            fix += 1


def _setup(
    task: Any, library: RewardLibrary | str | Path, action_space: bool = True
) -> tuple[Any, RewardLibrary, Any]:
    from ...envs import load_card, make_env
    from .abstraction import build_abstraction

    card = task if hasattr(task, "observation") else load_card(task)
    lib = library if isinstance(library, RewardLibrary) else RewardLibrary(library)
    space = None
    if action_space:
        env = make_env(card)
        try:
            space = env.action_space
        finally:
            env.close()
    return card, lib, build_abstraction(card, space)


def _retrieve(card: Any, few_shot: int, examples_dir: str | Path | None) -> list[Any]:
    if few_shot <= 0:
        return []
    from .fewshot import load_examples, retrieve

    return [ex for ex, _ in retrieve(card, few_shot, examples=load_examples(examples_dir), exclude_task=card.name)]


def _train(
    trainer: Callable[..., TrainResult], cand: Candidate, card: Any, abstraction: Any, library: RewardLibrary,
    *, steps: int, seed: int, analyser_llm: Any, log: Callable[[str], None], **info: Any,
) -> Candidate:
    v = cand.version
    log(f"{v.id}: training {steps} steps")
    try:
        result = trainer(v.spec, card, run_dir=v.path / "run", steps=steps, seed=seed)
    except RoboRewardError as exc:
        # e.g. the code fails on a state the dry run never saw: the designer hears about it
        cand.report = CriticReport(False, [Finding("error", "training", str(exc), line=getattr(exc, "line", None))])
        library.update(v, status="rejected", critic=cand.report.to_dict(), **info)
        log(f"{v.id}: training failed: {exc}")
        return cand
    analysis = analyse(result, abstraction, code=v.body(), llm=analyser_llm)
    cand.result, cand.analysis = result, analysis
    cand.version = library.update(v, status="trained", metrics=analysis.to_dict(), **info)
    log(f"{v.id}: success rate {analysis.metrics.get('success_rate')}, task return {analysis.metrics.get('env_return')}")
    return cand


def default_trainer(
    *, agent: str = "ppo", n_envs: int = 4, agent_overrides: Mapping[str, Any] | None = None,
    eval_episodes: int = 5, video: bool = False, progress: bool = False, device: str = "auto",
) -> Callable[..., TrainResult]:
    """:func:`~robo_reward.rewards.code.analyser.train_candidate` with these settings, as a loop's trainer."""
    return functools.partial(
        train_candidate, agent=agent, n_envs=n_envs, agent_overrides=dict(agent_overrides or {}),
        eval_episodes=eval_episodes, video=video, progress=progress, device=device,
    )


# ---------------------------------------------------------------------------------- Text2Reward


def generate(
    task: Any,
    llm: Any,
    library: RewardLibrary | str | Path,
    *,
    few_shot: int = 0,
    examples_dir: str | Path | None = None,
    instruction: str | None = None,
    max_fixes: int = 2,
    critic_llm: bool = False,
    n_states: int = 256,
    seed: int = 0,
    log: Callable[[str], None] = lambda msg: None,
) -> LoopResult:
    """Text2Reward generation: write a reward for ``task``, zero-shot or with ``few_shot`` retrieved examples.

    Args:
        task: task card name, path or card.
        llm: the chat client.
        library: the reward library (folder or :class:`RewardLibrary`).
        few_shot: how many examples of other tasks to retrieve (0 = zero-shot).
        examples_dir: the example pool (default: the shipped ``assets/rewards``).
        instruction: an extra instruction for the designer.
        max_fixes: rounds of critic feedback for rejected code.
        critic_llm: let the LLM review accepted code too.
        n_states: dry-run states of the critic.
        seed: seed of the critic's rollouts.
        log: progress messages.

    Returns:
        :class:`LoopResult`; ``best`` is the accepted version (``None`` if every fix failed).
    """
    card, lib, abstraction = _setup(task, library)
    examples = _retrieve(card, few_shot, examples_dir)
    designer = Designer(card, llm, lib, abstraction, max_fixes=max_fixes, critic_llm=critic_llm,
                        n_states=n_states, seed=seed, log=log)
    messages = designer_messages(abstraction, examples=examples, instruction=instruction)
    method = "text2reward-few-shot" if examples else "text2reward-zero-shot"
    cand = designer.run(messages, method=method, examples=[e.name for e in examples])[0]
    return LoopResult(cand.version if cand.ok else None, [cand], [{"versions": [cand.version.id]}], lib,
                      _usage_total(llm))


def refine(
    version: RewardVersion | str | Path,
    feedback: str,
    llm: Any,
    library: RewardLibrary | str | Path,
    *,
    max_fixes: int = 2,
    critic_llm: bool = False,
    n_states: int = 256,
    seed: int = 0,
    log: Callable[[str], None] = lambda msg: None,
) -> LoopResult:
    """Text2Reward refinement: revise ``version`` according to a person's free-text ``feedback``.

    The prompt holds the task, the version's code, its training results (when it was
    trained) and the feedback; the new version's parent is ``version``.

    Raises:
        ConfigError: empty feedback or an unknown version.
    """
    if not feedback or not feedback.strip():
        raise ConfigError("refine needs feedback: say in words what the trained policy should do differently")
    lib = library if isinstance(library, RewardLibrary) else RewardLibrary(library, create=False)
    base = lib.get(version)
    card, lib, abstraction = _setup(base.task, lib)
    designer = Designer(card, llm, lib, abstraction, max_fixes=max_fixes, critic_llm=critic_llm,
                        n_states=n_states, seed=seed, log=log)
    metrics = base.metrics() or {}
    messages = refine_messages(abstraction, base.body(), feedback, metrics_text=format_metrics(metrics))
    cand = designer.run(messages, method="refine", parent=base.id, feedback=feedback.strip())[0]
    return LoopResult(cand.version if cand.ok else None, [cand], [{"versions": [cand.version.id]}], lib,
                      _usage_total(llm))


# ---------------------------------------------------------------------------------- Auto MC-Reward


def auto_mc_reward(
    task: Any,
    llm: Any,
    library: RewardLibrary | str | Path,
    *,
    iterations: int = 3,
    steps: int = 20_000,
    seed: int = 0,
    success_threshold: float = 0.8,
    trainer: Callable[..., TrainResult] | None = None,
    start: RewardVersion | str | None = None,
    few_shot: int = 0,
    examples_dir: str | Path | None = None,
    max_fixes: int = 2,
    critic_llm: bool = True,
    analyser_llm: bool = False,
    n_states: int = 256,
    log: Callable[[str], None] = lambda msg: None,
) -> LoopResult:
    """Auto MC-Reward: designer → critic → train → trajectory analyser → designer revises.

    Args:
        task: task card name, path or card.
        llm: the chat client (designer, and critic/analyser when enabled).
        library: the reward library.
        iterations: training rounds at most.
        steps: training steps per round.
        seed: seed of training and of the critic's rollouts.
        success_threshold: stop once the final policy's success rate reaches this.
        trainer: the trainer (default :func:`default_trainer`).
        start: continue from this library version instead of writing a first draft.
        few_shot: examples for the first draft.
        examples_dir: the example pool.
        max_fixes: critic feedback rounds per draft.
        critic_llm: the LLM reviews code the automatic checks accept (the paper's Reward Critic).
        analyser_llm: the LLM also summarises the failure causes (the paper's Trajectory Analyzer).
        n_states: dry-run states.
        log: progress messages.

    Returns:
        :class:`LoopResult` with the best trained version (by success rate, then ground-truth return).
    """
    card, lib, abstraction = _setup(task, library)
    trainer = trainer or default_trainer()
    designer = Designer(card, llm, lib, abstraction, max_fixes=max_fixes, critic_llm=critic_llm,
                        n_states=n_states, seed=seed, log=log)
    out = LoopResult(None, [], [], lib)
    if start is not None:
        v = lib.get(start)
        cand = Candidate(v, designer.check(v.body()))
    else:
        examples = _retrieve(card, few_shot, examples_dir)
        cand = designer.run(designer_messages(abstraction, examples=examples), method="auto-mc", iteration=0)[0]
    trained: list[Candidate] = []
    for it in range(iterations):
        out.candidates.append(cand)
        out.rounds.append({"iteration": it, "versions": [cand.version.id]})
        if not cand.ok:
            log(f"iteration {it}: no code passed the critic; stopping")
            break
        cand = _train(trainer, cand, card, abstraction, lib, steps=steps, seed=seed,
                      analyser_llm=llm if analyser_llm else None, log=log, iteration=it)
        if cand.analysis is not None:
            trained.append(cand)
            if (cand.metrics.get("success_rate") or 0.0) >= success_threshold:
                log(f"{cand.version.id}: success rate reached {success_threshold}; done")
                break
            feedback = cand.analysis.text
        else:
            feedback = "Training stopped with an error:\n" + (cand.report.feedback() if cand.report else "")
        if it + 1 == iterations:
            break
        messages = revise_messages(abstraction, cand.version.body(), feedback)
        cand = designer.run(messages, method="auto-mc", parent=cand.version.id, iteration=it + 1)[0]
    if trained:
        out.best = max(trained, key=_success_key).version
    out.usage = _usage_total(llm)
    return out


# ---------------------------------------------------------------------------------- ICPL


def _success_key(c: Candidate) -> tuple[float, float, float]:
    m = c.metrics
    return (
        float(m.get("success_rate") or 0.0),
        float(m.get("final_success_rate") or 0.0),
        float(m.get("env_return") if m.get("env_return") is not None else float("-inf")),
    )


class Selector:
    """Ranks trained candidates, best first (ICPL's preference step). Subclasses implement :meth:`rank`."""

    #: Whether the selector needs videos of the policies (the default trainer then records them).
    needs_video: bool = False
    #: Name stored in the library.
    name: str = "selector"

    def rank(self, candidates: Sequence[Candidate]) -> list[int]:
        """Indices into ``candidates``, most preferred first (every index once)."""
        raise NotImplementedError


class SuccessRateSelector(Selector):
    """Prefer the higher success rate of the final policy; ties by success at the last step, then ground-truth return."""

    name = "success-rate"

    def rank(self, candidates: Sequence[Candidate]) -> list[int]:
        """Sort by success rate, then final success rate, then ground-truth return."""
        return sorted(range(len(candidates)), key=lambda i: _success_key(candidates[i]), reverse=True)


class OracleSelector(Selector):
    """A synthetic human: prefers the higher ground-truth (env) return of the final policy.

    ICPL (Yu et al. 2024) evaluates its loop with such proxy preferences computed from the
    task's ground-truth metric before running it with people. ``noise`` is the
    probability of swapping each adjacent pair of the ranking (a fallible rater).
    """

    name = "oracle"

    def __init__(self, noise: float = 0.0, seed: int = 0, key: str = "env_return"):
        if not 0.0 <= noise <= 1.0:
            raise ConfigError(f"oracle noise must be in [0, 1], got {noise}")
        self.noise = float(noise)
        self.key = key
        self.rng = random.Random(seed)

    def rank(self, candidates: Sequence[Candidate]) -> list[int]:
        """Sort by the ground-truth return (then success rate), then swap neighbours with probability ``noise``."""

        def key(i: int) -> tuple[float, float]:
            m = candidates[i].metrics
            v = m.get(self.key)
            return (float(v) if v is not None else float("-inf"), float(m.get("success_rate") or 0.0))

        order = sorted(range(len(candidates)), key=key, reverse=True)
        for j in range(len(order) - 1):
            if self.noise and self.rng.random() < self.noise:
                order[j], order[j + 1] = order[j + 1], order[j]
        return order


def make_gif(video: str | Path, gif: str | Path, *, every: int = 2, max_frames: int = 150, fps: int = 15) -> Path:
    """Turn an evaluation video into a small GIF (every ``every``-th frame, at most ``max_frames``)."""
    try:
        import imageio.v2 as imageio
    except ImportError as exc:
        from ...core.errors import MissingDependencyError

        raise MissingDependencyError("imageio", "video", "GIFs for preference ranking") from exc
    frames = []
    reader = imageio.get_reader(str(video))
    try:
        for i, frame in enumerate(reader):
            if i % every == 0:
                frames.append(frame)
            if len(frames) >= max_frames:
                break
    finally:
        reader.close()
    gif = Path(gif)
    imageio.mimsave(gif, frames, duration=1000.0 / fps, loop=0)
    return gif


class HumanSelector(Selector):
    """Ask a person in the terminal to rank the behaviours, after showing where their videos are.

    For each candidate the person sees its number, its video (and a GIF next to it, when
    ``gifs`` is true) and, with ``show_metrics``, the success rate — ICPL's human raters
    judge the videos alone, so it is off by default. They answer with the numbers best
    first (``2 1 3``); one number names only the best (the rest keep their order).

    Args:
        input_fn: reads the answer (default :func:`input`); tests pass a scripted one.
        output_fn: shows text (default :func:`print`).
        gifs: also write a GIF next to every video.
        show_metrics: show success rates next to the videos.
        max_tries: invalid answers allowed before giving up.
    """

    name = "human"
    needs_video = True

    def __init__(
        self,
        input_fn: Callable[[str], str] = input,
        output_fn: Callable[[str], None] = print,
        *,
        gifs: bool = True,
        show_metrics: bool = False,
        max_tries: int = 5,
    ):
        self.input_fn = input_fn
        self.output_fn = output_fn
        self.gifs = gifs
        self.show_metrics = show_metrics
        self.max_tries = max_tries

    def _media(self, cand: Candidate) -> str:
        video = cand.result.video if cand.result is not None else None
        if video is None or not Path(video).is_file():
            return "(no video recorded)"
        if self.gifs:
            gif = Path(video).with_suffix(".gif")
            try:
                if not gif.is_file():
                    make_gif(video, gif)
                return f"{video}  (GIF: {gif})"
            except Exception as exc:  # a failed conversion must not lose the round
                return f"{video}  (no GIF: {type(exc).__name__})"
        return str(video)

    def rank(self, candidates: Sequence[Candidate]) -> list[int]:
        """Show the candidates and read a ranking; re-ask on a malformed answer.

        Raises:
            ConfigError: ``max_tries`` malformed answers in a row.
        """
        k = len(candidates)
        self.output_fn(f"Watch the {k} trained behaviours and rank them:")
        for i, c in enumerate(candidates, 1):
            extra = ""
            if self.show_metrics and c.metrics:
                extra = f"  success rate {c.metrics.get('success_rate')}"
            self.output_fn(f"  [{i}] {c.version.id}: {self._media(c)}{extra}")
        prompt = f"Rank them best first, e.g. '{' '.join(str(i) for i in range(k, 0, -1))}' (one number: just the best): "
        for _ in range(self.max_tries):
            answer = self.input_fn(prompt)
            try:
                nums = [int(t) for t in answer.replace(",", " ").split()]
            except ValueError:
                self.output_fn("Please answer with candidate numbers separated by spaces.")
                continue
            if not nums or any(n < 1 or n > k for n in nums) or len(set(nums)) != len(nums):
                self.output_fn(f"Please give distinct numbers between 1 and {k}.")
                continue
            if len(nums) not in (1, k):
                self.output_fn(f"Please rank all {k} candidates, or name only the best one.")
                continue
            first = [n - 1 for n in nums]
            return first + [i for i in range(k) if i not in first]
        raise ConfigError(f"no valid ranking after {self.max_tries} answers")


def make_selector(name: str, *, input_fn: Callable[[str], str] = input, output_fn: Callable[[str], None] = print,
                  noise: float = 0.0, seed: int = 0) -> Selector:
    """A selector by name: ``success`` (success rate), ``oracle`` (synthetic preferences) or ``human``."""
    if name in ("success", "success-rate"):
        return SuccessRateSelector()
    if name == "oracle":
        return OracleSelector(noise=noise, seed=seed)
    if name == "human":
        return HumanSelector(input_fn, output_fn)
    raise ConfigError(f"unknown selection {name!r}; use success, oracle or human")


def icpl(
    task: Any,
    llm: Any,
    library: RewardLibrary | str | Path,
    *,
    rounds: int = 3,
    samples: int = 4,
    steps: int = 20_000,
    seed: int = 0,
    selector: Selector | None = None,
    trainer: Callable[..., TrainResult] | None = None,
    few_shot: int = 0,
    examples_dir: str | Path | None = None,
    max_fixes: int = 1,
    critic_llm: bool = False,
    n_states: int = 256,
    log: Callable[[str], None] = lambda msg: None,
) -> LoopResult:
    """ICPL: ``rounds`` rounds of ``samples`` rewards each, ranked by preference, best and worst fed back.

    Each round: the LLM writes ``samples`` rewards (one request with ``n = samples``);
    each goes through the critic (with up to ``max_fixes`` fixes); a policy is trained on
    each accepted one (same seed for all, so they are comparable); the ``selector`` ranks
    them; the ranking is stored on each version (``round``, ``rank``); and the next round's
    prompt shows the most and least preferred reward with their training reports plus a
    short history of earlier rounds. New samples are children of the last round's preferred version.

    Returns:
        :class:`LoopResult`: ``best`` is the last round's preferred version (with the
        success-rate selector, the best over all rounds); ``rounds`` holds each round's
        version ids and ranking.
    """
    if samples < 1 or rounds < 1:
        raise ConfigError("icpl needs rounds >= 1 and samples >= 1")
    selector = selector or SuccessRateSelector()
    card, lib, abstraction = _setup(task, library)
    trainer = trainer or default_trainer(video=selector.needs_video)
    designer = Designer(card, llm, lib, abstraction, max_fixes=max_fixes, critic_llm=critic_llm,
                        n_states=n_states, seed=seed, log=log)
    examples = _retrieve(card, few_shot, examples_dir)
    messages = designer_messages(abstraction, examples=examples)
    out = LoopResult(None, [], [], lib)
    parent: str | None = None
    history: list[str] = []
    preferred: list[Candidate] = []
    for r in range(rounds):
        log(f"round {r}: asking for {samples} reward functions")
        cands = designer.run(messages, method="icpl", parent=parent, samples=samples, round=r)
        out.candidates.extend(cands)
        trained = []
        for c in cands:
            if c.ok:
                c = _train(trainer, c, card, abstraction, lib, steps=steps, seed=seed, analyser_llm=None, log=log, round=r)
                if c.analysis is not None:
                    trained.append(c)
        info: dict[str, Any] = {"round": r, "versions": [c.version.id for c in cands], "trained": [c.version.id for c in trained]}
        if not trained:
            log(f"round {r}: no reward could be trained; asking again")
            out.rounds.append(info)
            continue
        order = selector.rank(trained) if len(trained) > 1 else [0]
        ranked = [trained[i] for i in order]
        for rank, c in enumerate(ranked):
            c.version = lib.update(c.version, rank=rank, ranked_among=len(ranked), selector=selector.name)
        best, worst = ranked[0], (ranked[-1] if len(ranked) > 1 else None)
        info["ranking"] = [c.version.id for c in ranked]
        out.rounds.append(info)
        m = best.metrics
        note = (f"round {r}: preferred {best.version.id} (success rate {m.get('success_rate')}, "
                f"task return {m.get('env_return')})")
        if preferred:
            prev = preferred[-1].metrics
            note += (f"; the previous preferred reward had success rate {prev.get('success_rate')}, "
                     f"task return {prev.get('env_return')}")
        history.append(note)
        preferred.append(best)
        parent = best.version.id
        log(note)
        messages = icpl_messages(
            abstraction,
            (best.version.body(), best.analysis.text if best.analysis else ""),
            (worst.version.body(), worst.analysis.text if worst.analysis else "") if worst else None,
            history=history[:-1],
            examples=examples,
        )
    if preferred:
        out.best = (max(preferred, key=_success_key) if isinstance(selector, SuccessRateSelector) else preferred[-1]).version
    out.usage = _usage_total(llm)
    return out


def search(
    task: Any,
    llm: Any,
    library: RewardLibrary | str | Path,
    *,
    method: str = "icpl",
    **kwargs: Any,
) -> LoopResult:
    """Run :func:`auto_mc_reward` (``method="auto-mc"``) or :func:`icpl` (``method="icpl"``)."""
    if method in ("auto-mc", "auto-mc-reward", "automc"):
        return auto_mc_reward(task, llm, library, **kwargs)
    if method == "icpl":
        return icpl(task, llm, library, **kwargs)
    raise ConfigError(f"unknown search method {method!r}; use auto-mc or icpl")


__all__ = [
    "Candidate",
    "Designer",
    "HumanSelector",
    "LoopResult",
    "OracleSelector",
    "Selector",
    "SuccessRateSelector",
    "auto_mc_reward",
    "default_trainer",
    "generate",
    "icpl",
    "make_gif",
    "make_selector",
    "refine",
    "search",
]
