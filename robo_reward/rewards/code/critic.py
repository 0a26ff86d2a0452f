"""The reward critic: static checks, then a dry run on states from random rollouts of the task.

Auto MC-Reward (Li et al. 2023, §3.2) puts a *Reward Critic* between the designer and
training: it reviews the code for syntax and semantic errors, and errors raised when the
code runs go back to the designer too. :func:`critique` does that in two automatic
stages, plus an optional LLM review:

1. **Static** — the sandbox's validator (:func:`~robo_reward.rewards.code.validate.validate_reward_code`):
   anything outside the allowed subset, each problem with its line.
2. **Dry run** — the reward is computed, through the same sandbox that training uses,
   on transitions collected by uniformly random actions in the task's env
   (:func:`random_rollouts`). Errors: it raises, returns the wrong shape or non-finite
   values, is constant over all states (no signal), or gives a row a different value
   when it is computed alone than inside the batch (the reward of one env would depend
   on the others). Warnings: a term that never changes, a term whose scale dwarfs the
   others, rewards far outside the usual per-step range, observation fields the card
   calls unused. The scale of each term (min/mean/max/std) is reported either way.
3. **LLM critique** (optional, Auto MC-Reward's semantic review) — the LLM is shown the
   code, the environment abstraction and the findings and asked to list problems or
   answer ``OK``; with ``llm_blocking`` its objections reject the code too.

The findings become the feedback text that :func:`~robo_reward.rewards.code.prompts.fix_messages`
sends back to the designer. Ground truth (the env's own reward) is never shown to the
designer by the critic; its correlation is kept in the statistics for people.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from ...core.errors import ConfigError, RoboRewardError

#: Severities of a finding; ``error`` rejects the code.
SEVERITIES = ("error", "warning", "info")

#: A term whose typical size is this many times the median of the others' is reported as dominating.
DOMINANCE_RATIO = 100.0
#: Per-step rewards beyond this size are reported as badly scaled.
LARGE_REWARD = 1e3


@dataclass(frozen=True)
class Finding:
    """One thing the critic found.

    Attributes:
        severity: ``error`` (the code is rejected), ``warning`` or ``info``.
        check: which check found it (``static``, ``runtime``, ``constant``, ``batch``,
            ``scale``, ``dominance``, ``unused-field``, ``llm``, ...).
        message: what is wrong and what to do, in words the designer can act on.
        line: the code line, when known.
        term: the reward term concerned, when there is one.
    """

    severity: str
    check: str
    message: str
    line: int | None = None
    term: str | None = None

    def text(self) -> str:
        """``[error] line 3: ...`` — one line of feedback."""
        where = f"line {self.line}: " if self.line else ""
        return f"[{self.severity}] {where}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"severity": self.severity, "check": self.check, "message": self.message, "line": self.line, "term": self.term}


@dataclass
class CriticReport:
    """The critic's verdict on one reward program.

    Attributes:
        ok: no ``error`` findings (the code may be trained on).
        findings: everything found, errors first.
        term_stats: per term (and ``reward``): ``min``, ``mean``, ``max``, ``std`` over the dry-run states.
        dry_run: facts about the dry run (states, task, seconds per batched call, correlation
            with the env's reward — for people, not fed back to the designer).
        llm_critique: the LLM's review, when one was asked for.
    """

    ok: bool
    findings: list[Finding] = field(default_factory=list)
    term_stats: dict[str, dict[str, float]] = field(default_factory=dict)
    dry_run: dict[str, Any] = field(default_factory=dict)
    llm_critique: str | None = None

    @property
    def errors(self) -> list[Finding]:
        """The ``error`` findings."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The ``warning`` findings."""
        return [f for f in self.findings if f.severity == "warning"]

    def feedback(self, include_stats: bool = True) -> str:
        """The findings as text for the designer (errors and warnings, then the term scales)."""
        lines = [f.text() for f in self.findings if f.severity in ("error", "warning")]
        if not lines:
            lines.append("No problems found.")
        if include_stats and self.term_stats:
            n = self.dry_run.get("states")
            lines.append("")
            lines.append(f"Scale of each term on {n} states from random rollouts (min / mean / max / std):")
            for name, st in self.term_stats.items():
                lines.append(
                    f"  {name}: {st['min']:.4g} / {st['mean']:.4g} / {st['max']:.4g} / {st['std']:.4g}"
                )
        if self.llm_critique and self.llm_critique.strip().upper() != "OK":
            lines.append("")
            lines.append("Reviewer's comments:")
            lines.append(self.llm_critique.strip())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored as ``critic.json`` in the reward library)."""
        return {
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
            "term_stats": self.term_stats,
            "dry_run": self.dry_run,
            "llm_critique": self.llm_critique,
            "feedback": self.feedback(),
        }


# ---------------------------------------------------------------------------------- rollouts


@dataclass(frozen=True)
class RolloutData:
    """Transitions from random rollouts of a task (the critic's dry-run states).

    Arrays have one row per transition; ``infos`` is a tuple of the step infos.
    """

    task: str
    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    env_reward: np.ndarray
    success: np.ndarray
    infos: tuple[Mapping[str, Any], ...] = field(repr=False, default=())

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def arrays(self, index: Any = slice(None)) -> dict[str, np.ndarray]:
        """The rows ``index`` as the sandbox's inputs (``obs``, ``action``, ``next_obs``, ``terminated``, ``truncated``)."""
        return {
            "obs": self.obs[index],
            "action": self.action[index],
            "next_obs": self.next_obs[index],
            "terminated": self.terminated[index],
            "truncated": self.truncated[index],
        }


@lru_cache(maxsize=8)
def _rollouts_cached(task: str, n_steps: int, seed: int) -> RolloutData:
    from ...envs import make_env

    env = make_env(task, seed=seed)
    env.action_space.seed(seed)
    obs_l, act_l, next_l, term_l, trunc_l, rew_l, succ_l, info_l = [], [], [], [], [], [], [], []
    try:
        obs, _ = env.reset(seed=seed)
        episode = 0
        while len(obs_l) < n_steps:
            action = env.action_space.sample()
            nxt, reward, terminated, truncated, info = env.step(action)
            obs_l.append(np.asarray(obs, dtype=np.float64))
            act_l.append(np.asarray(action, dtype=np.float64))
            next_l.append(np.asarray(nxt, dtype=np.float64))
            term_l.append(bool(terminated))
            trunc_l.append(bool(truncated))
            rew_l.append(float(reward))
            succ_l.append(bool(info.get("is_success", False)))
            info_l.append({k: v for k, v in info.items() if isinstance(v, (bool, int, float, np.number))})
            obs = nxt
            if terminated or truncated:
                episode += 1
                obs, _ = env.reset(seed=seed + episode)
    finally:
        env.close()
    return RolloutData(
        task=task,
        obs=np.stack(obs_l),
        action=np.stack(act_l).reshape(len(act_l), -1),
        next_obs=np.stack(next_l),
        terminated=np.asarray(term_l),
        truncated=np.asarray(trunc_l),
        env_reward=np.asarray(rew_l),
        success=np.asarray(succ_l),
        infos=tuple(info_l),
    )


def random_rollouts(task: Any, n_steps: int = 256, seed: int = 0) -> RolloutData:
    """Collect ``n_steps`` transitions of uniformly random actions in the task's env (cached per process).

    Episodes are reset with ``seed``, ``seed + 1``, ... as they end, so short-episode
    tasks contribute several episodes. Arrays are read-only views shared by later calls.
    """
    from ...envs import card_names

    name = task if isinstance(task, str) else task.name
    if not isinstance(task, str) and name not in card_names():
        if task.source is None:
            raise ConfigError(f"task card {name!r} is neither shipped nor loaded from a file; save it as YAML first")
        name = str(task.source)  # a user's card file
    data = _rollouts_cached(name, int(n_steps), int(seed))
    for arr in (data.obs, data.action, data.next_obs):
        arr.setflags(write=False)
    return data


# ---------------------------------------------------------------------------------- checks


def static_findings(code: str, filename: str = "<reward>") -> list[Finding]:
    """Run the sandbox's validator; one ``error`` finding per problem (with its line), or none."""
    from .validate import CodeValidationError, validate_reward_code

    try:
        validate_reward_code(code, filename=filename)
    except CodeValidationError as exc:
        return [Finding("error", "static", issue.message if not issue.source_line.strip() else
                        f"`{issue.source_line.strip()}`: {issue.message}", line=issue.line or None)
                for issue in exc.issues]
    return []


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    return {"min": float(x.min()), "mean": float(x.mean()), "max": float(x.max()), "std": float(x.std())}


def pearson(x: Any, y: Any) -> float | None:
    """Pearson correlation of two equally long sequences; ``None`` with fewer than 3 values or a constant one."""
    a, b = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if a.size < 3 or a.std() < 1e-12 or b.std() < 1e-12:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _error_line(exc: BaseException) -> int | None:
    line = getattr(exc, "line", None) or getattr(exc, "lineno", None)
    return int(line) if isinstance(line, int) and line > 0 else None


def open_sandbox(code: str, **options: Any) -> Any:
    """Start the :class:`~robo_reward.rewards.code.sandbox.Sandbox` that training would use for ``code``.

    ``options`` go to the sandbox (``timeout_s``, ``memory_mb``, ``params``, ``isolation``).
    """
    from .sandbox import Sandbox

    return Sandbox(code, **options)


def dry_run_findings(
    sandbox: Any,
    data: RolloutData,
    *,
    abstraction: Any = None,
    code: str = "",
    batch_size: int = 64,
) -> tuple[list[Finding], dict[str, dict[str, float]], dict[str, Any]]:
    """Compute the reward on every dry-run state and check what comes back.

    Args:
        sandbox: the running :class:`~robo_reward.rewards.code.sandbox.Sandbox` (anything
            with ``call(arrays) -> CodeResult``).
        data: the dry-run transitions.
        abstraction: the task's abstraction, to name unused observation fields the code reads.
        code: the source, for the unused-field check.
        batch_size: rows per call (training calls the reward with one row per sub-env).

    Returns:
        ``(findings, term_stats, facts)``.
    """
    findings: list[Finding] = []
    n = len(data)
    rewards, terms_l = [], []
    t0 = time.perf_counter()
    calls = 0
    try:
        for start in range(0, n, batch_size):
            out = sandbox.call(data.arrays(slice(start, min(start + batch_size, n))))
            rewards.append(out.reward)
            terms_l.append(out.terms)
            calls += 1
    except RoboRewardError as exc:
        return [Finding("error", "runtime", str(exc), line=_error_line(exc))], {}, {"states": n}
    seconds_per_call = (time.perf_counter() - t0) / max(calls, 1)
    reward = np.concatenate(rewards).astype(np.float64)
    names = list(terms_l[0]) if terms_l else []
    terms = {k: np.concatenate([t[k] for t in terms_l]).astype(np.float64) for k in names if all(k in t for t in terms_l)}
    stats = {"reward": _stats(reward), **{k: _stats(v) for k, v in terms.items()}}
    facts: dict[str, Any] = {
        "task": data.task,
        "states": n,
        "batch_size": batch_size,
        "seconds_per_call": seconds_per_call,
        "pearson_env_reward": pearson(reward, data.env_reward),
        "success_states": int(data.success.sum()),
    }

    # one row alone must give the same value as inside a batch
    probe = np.unique(np.linspace(0, n - 1, num=min(4, n)).astype(int))
    try:
        alone = np.array([float(sandbox.call(data.arrays(slice(i, i + 1))).reward[0]) for i in probe])
    except RoboRewardError as exc:
        findings.append(Finding("error", "runtime", f"with a batch of one transition (n = 1): {exc}", line=_error_line(exc)))
    else:
        if not np.allclose(alone, reward[probe], rtol=1e-4, atol=1e-5):
            findings.append(Finding(
                "error", "batch",
                "the reward of a transition changes with the other rows of the batch (computed alone it gives "
                f"{alone.round(4).tolist()}, inside the batch {reward[probe].round(4).tolist()}); each row is a "
                "different environment, so compute every row from its own values only (no means, sums or "
                "normalisation over axis 0)",
            ))

    spread = reward.max() - reward.min()
    if spread <= 1e-8 * max(1.0, abs(reward.mean())):
        findings.append(Finding(
            "error", "constant",
            f"the reward is {reward[0]:.6g} in all {n} states from random rollouts: it gives the agent no signal; "
            "make it depend on the observation quantities that measure progress on the task",
        ))
    if np.abs(reward).max() > LARGE_REWARD:
        findings.append(Finding(
            "warning", "scale",
            f"the reward reaches {np.abs(reward).max():.3g} per step; keep per-step rewards within about ±10 "
            "(divide large terms, or bound them with tanh/exp)",
        ))
    if len(terms) >= 2:
        size = {k: float(np.abs(v).mean()) for k, v in terms.items()}
        for k, v in terms.items():
            if np.ptp(v) <= 1e-12:
                findings.append(Finding(
                    "warning", "constant-term",
                    f"term {k!r} is {v[0]:.4g} in every random-rollout state; fine for a bonus that fires only "
                    "near success, but it gives no shaping signal on its way there",
                    term=k,
                ))
        for k, s in size.items():
            others = [size[o] for o in size if o != k and size[o] > 0]
            if others and s > DOMINANCE_RATIO * float(np.median(others)):
                findings.append(Finding(
                    "warning", "dominance",
                    f"term {k!r} (mean |value| {s:.3g}) is over {DOMINANCE_RATIO:g}x larger than the other terms "
                    f"(median {float(np.median(others)):.3g}); they will hardly matter; rescale it",
                    term=k,
                ))
    if abstraction is not None and code:
        from .abstraction import fields_used

        for name in fields_used(code, abstraction):
            meaning = abstraction.attribute(name).meaning.lower()
            if "unused" in meaning or "not part of this task" in meaning:
                findings.append(Finding(
                    "warning", "unused-field",
                    f"the code reads {name!r}, which the task description calls: {abstraction.attribute(name).meaning}",
                ))
    return findings, stats, facts


def critique(
    code: str,
    task: Any,
    *,
    n_states: int = 256,
    seed: int = 0,
    llm: Any = None,
    llm_blocking: bool = True,
    abstraction: Any = None,
    sandbox_options: Mapping[str, Any] | None = None,
) -> CriticReport:
    """Check reward code: static rules, then a dry run on random-rollout states, then (optionally) an LLM review.

    Args:
        code: the reward program (source text).
        task: the task card (or its name).
        n_states: dry-run transitions from random rollouts.
        seed: seed of the rollouts.
        llm: an LLM client (see :func:`~robo_reward.rewards.code.prompts.ask`) for the
            semantic review; ``None`` skips it.
        llm_blocking: an LLM review other than ``OK`` rejects the code (Auto MC-Reward's
            critic passes or fails the code); otherwise it is only passed on as comments.
        abstraction: the task's :class:`~robo_reward.rewards.code.abstraction.EnvAbstraction`
            (built from the card when omitted).
        sandbox_options: arguments of the :class:`~robo_reward.rewards.code.sandbox.Sandbox`
            (``timeout_s``, ``memory_mb``, ``params``).

    Returns:
        the :class:`CriticReport`.
    """
    from ...envs import load_card
    from .abstraction import build_abstraction

    card = task if hasattr(task, "observation") else load_card(task)
    if abstraction is None:
        abstraction = build_abstraction(card)
    findings = static_findings(code)
    if findings:
        return CriticReport(False, findings, dry_run={"skipped": "the static check failed"})
    try:
        sandbox = open_sandbox(code, **dict(sandbox_options or {}))
    except RoboRewardError as exc:
        return CriticReport(False, [Finding("error", "load", str(exc), line=_error_line(exc))])
    try:
        data = random_rollouts(card, n_states, seed)
        dry, stats, facts = dry_run_findings(sandbox, data, abstraction=abstraction, code=code)
    finally:
        sandbox.close()
    facts["seed"] = seed
    findings.extend(dry)
    report = CriticReport(not any(f.severity == "error" for f in findings), findings, stats, facts)
    if llm is not None and report.ok:
        from .prompts import ask, critic_messages

        review = ask(llm, critic_messages(abstraction, code, report.feedback()))[0].strip()
        report.llm_critique = review
        if review.upper().rstrip(".") != "OK":
            sev = "error" if llm_blocking else "info"
            report.findings.append(Finding(sev, "llm", "the reviewer objects (see the reviewer's comments)"))
            report.ok = report.ok and not llm_blocking
    order = {s: i for i, s in enumerate(SEVERITIES)}
    report.findings.sort(key=lambda f: order.get(f.severity, 9))
    return report


__all__ = [
    "CriticReport",
    "DOMINANCE_RATIO",
    "Finding",
    "LARGE_REWARD",
    "RolloutData",
    "SEVERITIES",
    "critique",
    "dry_run_findings",
    "open_sandbox",
    "pearson",
    "random_rollouts",
    "static_findings",
]
