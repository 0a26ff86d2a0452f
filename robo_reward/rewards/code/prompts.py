"""Prompts of the reward-writing loops: designer, fixer, refiner, critic, analyser and ICPL rounds.

Every builder returns a list of chat messages (``{"role": ..., "content": ...}``) for an
OpenAI-compatible chat endpoint. The wording follows the published methods, paraphrased:

* **Text2Reward** (Xie et al. 2023): the environment as Python class stubs
  (:mod:`~robo_reward.rewards.code.abstraction`), optional few-shot examples of other
  tasks' rewards (:mod:`~robo_reward.rewards.code.fewshot`), and a user's free-text
  feedback on the trained behaviour for refinement.
* **Auto MC-Reward** (Li et al. 2023): a Reward Designer, a Reward Critic that reviews
  the code for syntax and semantic errors (and whose findings, with runtime errors, go
  back to the designer), and a Trajectory Analyzer whose summary of why the trained agent
  fails drives the next revision.
* **Eureka** reward reflection (Ma et al. 2023): each reward term's values over training
  (with their min/mean/max) and the task metrics go back into the prompt.
* **ICPL** (Yu et al. 2024): the LLM writes K rewards per round; the most and least
  preferred, with their reward traces, go back to it for the next round.

The contract the code must follow (function name, arguments, return value, allowed
subset of Python) is the :class:`CodeContract`; :func:`default_contract` takes the
function name and inputs from the validator that enforces them
(:mod:`robo_reward.rewards.code.validate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

Message = dict[str, str]


@dataclass(frozen=True)
class CodeContract:
    """What a reward program must look like, as told to the LLM.

    Attributes:
        function_name: the function the sandbox calls.
        signature: its ``def`` line.
        arguments: what each argument holds.
        returns: what it must return.
        rules: the allowed subset (what is rejected before the code runs).
    """

    function_name: str = "compute_reward"
    signature: str = "def compute_reward(obs, action, next_obs):"
    arguments: str = (
        "obs: float64 array [n, obs_dim], the observations the actions were taken in;\n"
        "action: float64 array [n, action_dim], the actions;\n"
        "next_obs: float64 array [n, obs_dim], the observations that followed (judge the outcome on these);\n"
        "terminated, truncated (optional: list them as parameters only if you need them): bool arrays [n].\n"
        "Rows are independent transitions of several parallel environments (n >= 1); the arrays are read-only."
    )
    returns: str = (
        "a dict mapping term names (short identifiers) to float arrays of shape [n]; "
        "the reward is the sum of the terms, and each term is logged separately"
    )
    rules: str = (
        "- `np` (numpy) and `math` are already available; do not import anything else.\n"
        "- Tunable constants may be parameters with literal defaults, e.g. `scale=0.1`.\n"
        "- No file, network or process access, no classes, try/except, with, raise or global; no names or "
        "attributes that start with an underscore; no eval/exec/open/getattr/type; no np.random.\n"
        "- Work on whole arrays (vectorised numpy, no Python loops over rows); every value must be finite "
        "and have shape [n].\n"
        "- Helper functions defined in the same code block are fine."
    )

    def text(self) -> str:
        """The contract as one block of prompt text."""
        return (
            f"Write the reward as one Python function:\n\n    {self.signature}\n\n"
            f"Arguments:\n{self.arguments}\n\nReturn {self.returns}.\n\nRules:\n{self.rules}\n\n"
            "Answer with the code in a single ```python block."
        )


def default_contract() -> CodeContract:
    """The contract the installed validator enforces (function name and inputs from :mod:`.validate`)."""
    try:
        from .validate import DEFAULT_FUNCTION, INPUT_NAMES
    except ImportError:  # pragma: no cover - the validator ships with this package
        return CodeContract()
    base = CodeContract()
    required = [k for k in ("obs", "action", "next_obs") if k in INPUT_NAMES]
    optional = [k for k in INPUT_NAMES if k not in required]
    arguments = "\n".join(f"{k}: {INPUT_NAMES[k]};" for k in required)
    if optional:
        arguments += "\n" + "\n".join(
            f"{k} (optional: list it as a parameter only if you need it): {INPUT_NAMES[k]};" for k in optional
        )
    arguments += "\nRows are independent transitions of several parallel environments (n >= 1); the arrays are read-only."
    return CodeContract(
        function_name=DEFAULT_FUNCTION,
        signature=f"def {DEFAULT_FUNCTION}({', '.join(required)}):",
        arguments=arguments,
        returns=base.returns,
        rules=base.rules,
    )


DESIGNER_SYSTEM = (
    "You are an expert in reinforcement learning and robotics who writes dense reward functions. "
    "A good dense reward guides the agent step by step towards the goal: it rewards progress "
    "(e.g. decreasing distances), gives a bonus when the goal is reached, penalises wasteful or "
    "unsafe behaviour lightly, and keeps every term on a sensible scale (roughly -10 to 10 per step). "
    "Use the environment description exactly as given: read every quantity from the observation "
    "slices it names, and respect the units."
)

CRITIC_SYSTEM = (
    "You are the reward critic of a reward-design team. You review reward code written by the "
    "designer before it is used for training: check that it follows the rules, that it reads the "
    "right observation slices with the right meaning, that every term pushes the agent towards the "
    "task's success condition, and that no term dominates or can be exploited. Be concise and concrete."
)

ANALYSER_SYSTEM = (
    "You are the trajectory analyser of a reward-design team. Given statistics of a policy trained "
    "on a reward function, explain in a few sentences why the agent fails the task and what the "
    "reward should change."
)


def _fence(code: str) -> str:
    return f"```python\n{code.strip()}\n```"


def task_block(abstraction: Any) -> str:
    """The environment abstraction (class stubs) and the task, as the designer sees them."""
    return (
        f"Task `{abstraction.task}`: {abstraction.description}\n\n"
        f"Success: {abstraction.success}\n\n"
        "The environment is described by these Python class stubs (the attribute comments "
        "say which slice of the flat observation array holds each quantity):\n\n"
        f"{_fence(abstraction.to_python())}"
    )


def fewshot_block(examples: Sequence[Any]) -> str:
    """Few-shot examples: reward code written by experts for other, similar tasks."""
    if not examples:
        return ""
    parts = ["Here are reward functions that experts wrote for other, similar tasks (their observation "
             "layouts differ from this task's; use them for style and shaping ideas only):"]
    for ex in examples:
        parts.append(f"Task `{ex.task}`:\n{_fence(ex.body)}")
    return "\n\n".join(parts)


def designer_messages(
    abstraction: Any,
    *,
    examples: Sequence[Any] = (),
    contract: CodeContract | None = None,
    instruction: str | None = None,
) -> list[Message]:
    """Text2Reward generation: zero-shot (no ``examples``) or few-shot.

    Args:
        abstraction: the task's :class:`~robo_reward.rewards.code.abstraction.EnvAbstraction`.
        examples: few-shot examples (:class:`~robo_reward.rewards.code.fewshot.FewShotExample`).
        contract: the code contract (default: :func:`default_contract`).
        instruction: an extra instruction from the user (e.g. "move slowly").
    """
    contract = contract or default_contract()
    user = [task_block(abstraction)]
    if examples:
        user.append(fewshot_block(examples))
    if instruction:
        user.append(f"Additional instruction from the user: {instruction}")
    user.append("Write a dense reward function for this task.\n\n" + contract.text())
    return [{"role": "system", "content": DESIGNER_SYSTEM}, {"role": "user", "content": "\n\n".join(user)}]


def fix_messages(previous: Sequence[Message], response: str, feedback: str, contract: CodeContract | None = None) -> list[Message]:
    """Continue a conversation after the critic rejected the answer: its findings go back to the designer.

    Auto MC-Reward's designer receives the critic's review and any runtime error and
    rewrites the code; here the critic's feedback text (:class:`~robo_reward.rewards.code.critic.CriticReport`)
    is appended to the same conversation.
    """
    contract = contract or default_contract()
    return [
        *previous,
        {"role": "assistant", "content": response},
        {
            "role": "user",
            "content": (
                "The reward critic checked this reward function and found problems:\n\n"
                f"{feedback.strip()}\n\n"
                "Fix every problem and write the whole corrected function again.\n\n" + contract.text()
            ),
        },
    ]


def refine_messages(
    abstraction: Any,
    code: str,
    feedback: str,
    *,
    metrics_text: str = "",
    contract: CodeContract | None = None,
) -> list[Message]:
    """Text2Reward refinement: a person watched the trained policy and says what to change."""
    contract = contract or default_contract()
    user = [
        task_block(abstraction),
        f"This reward function was used to train a policy:\n\n{_fence(code)}",
    ]
    if metrics_text:
        user.append(f"Training results:\n{metrics_text.strip()}")
    user.append(f"A person watched the trained policy and gives this feedback:\n\n\"{feedback.strip()}\"")
    user.append("Improve the reward function according to the feedback.\n\n" + contract.text())
    return [{"role": "system", "content": DESIGNER_SYSTEM}, {"role": "user", "content": "\n\n".join(user)}]


def revise_messages(
    abstraction: Any, code: str, analysis: str, *, contract: CodeContract | None = None
) -> list[Message]:
    """Auto MC-Reward revision: the trajectory analyser's report (with Eureka-style term traces) goes back to the designer."""
    contract = contract or default_contract()
    user = [
        task_block(abstraction),
        f"A policy was trained on this reward function:\n\n{_fence(code)}",
        f"The trajectory analyser reports:\n\n{analysis.strip()}",
        (
            "Using the report, write an improved reward function. If a term's values barely change, "
            "rescale or rewrite it; if a term dominates, reduce its weight; if success is rare, add "
            "shaping that leads to the success condition."
        ),
        contract.text(),
    ]
    return [{"role": "system", "content": DESIGNER_SYSTEM}, {"role": "user", "content": "\n\n".join(user)}]


def icpl_messages(
    abstraction: Any,
    best: tuple[str, str],
    worst: tuple[str, str] | None,
    *,
    history: Sequence[str] = (),
    examples: Sequence[Any] = (),
    contract: CodeContract | None = None,
) -> list[Message]:
    """ICPL's next-round prompt: the preferred and the least preferred reward, with their traces.

    Args:
        abstraction: the task's environment abstraction.
        best: ``(code, reward trace / analysis text)`` of the preferred candidate.
        worst: the same for the least preferred one (``None`` with a single candidate).
        history: notes on earlier rounds (e.g. how the preferred reward changed and
            whether that helped), oldest first.
        examples: few-shot examples.
    """
    contract = contract or default_contract()
    user = [task_block(abstraction)]
    if examples:
        user.append(fewshot_block(examples))
    user.append(
        "We trained one policy on each of several reward functions and the evaluator ranked the "
        "resulting behaviours.\n\n"
        f"The MOST preferred reward function:\n{_fence(best[0])}\n\nIts training statistics:\n{best[1].strip()}"
    )
    if worst is not None:
        user.append(f"The LEAST preferred reward function:\n{_fence(worst[0])}\n\nIts training statistics:\n{worst[1].strip()}")
    if history:
        user.append("History of earlier rounds:\n" + "\n".join(f"- {h}" for h in history))
    user.append(
        "Write a new reward function that keeps what made the preferred behaviour better, avoids what "
        "made the least preferred one worse, and improves on both.\n\n" + contract.text()
    )
    return [{"role": "system", "content": DESIGNER_SYSTEM}, {"role": "user", "content": "\n\n".join(user)}]


def critic_messages(abstraction: Any, code: str, findings_text: str) -> list[Message]:
    """Auto MC-Reward's Reward Critic: ask the LLM to review the code, given the automatic findings."""
    return [
        {"role": "system", "content": CRITIC_SYSTEM},
        {
            "role": "user",
            "content": (
                f"{task_block(abstraction)}\n\nThe designer wrote:\n\n{_fence(code)}\n\n"
                f"Automatic checks (a dry run on states from random rollouts) found:\n{findings_text.strip() or '(nothing)'}\n\n"
                "Review the reward. List concrete problems, one per line starting with '- '. "
                "If it is correct and well shaped, answer exactly 'OK'."
            ),
        },
    ]


def analyser_messages(abstraction: Any, code: str, report: str) -> list[Message]:
    """Auto MC-Reward's Trajectory Analyzer: ask the LLM why the trained agent fails, given the statistics."""
    return [
        {"role": "system", "content": ANALYSER_SYSTEM},
        {
            "role": "user",
            "content": (
                f"{task_block(abstraction)}\n\nReward function used for training:\n\n{_fence(code)}\n\n"
                f"Statistics of training and evaluation:\n{report.strip()}\n\n"
                "In at most five sentences: why does the agent fail, and what should the reward change?"
            ),
        },
    ]


def ask(llm: Any, messages: Sequence[Message], n: int = 1) -> list[str]:
    """Send ``messages`` to ``llm`` and return ``n`` answer texts.

    ``llm`` is a chat client of :mod:`robo_reward.llm` (anything with a ``chat(messages, n=...)``
    method) or a plain callable ``llm(messages, n) -> list[str] | str`` (handy in tests and
    notebooks).
    """
    chat = getattr(llm, "chat", None)
    result = chat(list(messages), n=n) if callable(chat) else llm(list(messages), n)
    if isinstance(result, str):
        texts = [result]
    elif hasattr(result, "texts"):
        texts = list(result.texts)
    elif hasattr(result, "text") and isinstance(result.text, str):
        texts = [result.text]
    else:
        texts = [t if isinstance(t, str) else getattr(t, "text", str(t)) for t in result]
    if not texts:
        from ...core.errors import RoboRewardError

        raise RoboRewardError("the LLM returned no answer")
    return texts


def format_metrics(metrics: Mapping[str, Any], keys: Sequence[str] = ("success_rate", "env_return", "learned_return")) -> str:
    """A short ``key: value`` listing of the headline training metrics (for prompts and the terminal)."""
    lines = []
    for k in keys:
        v = metrics.get(k)
        if v is None:
            continue
        lines.append(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {json.dumps(v)}")
    return "\n".join(lines)


__all__ = [
    "ANALYSER_SYSTEM",
    "CRITIC_SYSTEM",
    "CodeContract",
    "DESIGNER_SYSTEM",
    "Message",
    "analyser_messages",
    "ask",
    "critic_messages",
    "default_contract",
    "designer_messages",
    "fewshot_block",
    "fix_messages",
    "format_metrics",
    "icpl_messages",
    "refine_messages",
    "revise_messages",
    "task_block",
]
