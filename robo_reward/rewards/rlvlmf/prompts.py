"""The two-stage RL-VLM-F prompt: an analysis query with both images, then a labelling query.

The wording follows the prompt of Wang et al. 2024 ("RL-VLM-F: Reinforcement Learning
from Vision Language Foundation Model Feedback", ICML 2024, arXiv:2402.03681), as
published with the paper's code:

1. **Analysis** — one user message whose content interleaves text and images:
   ``Consider the following two images: Image 1: <image> Image 2: <image>`` followed by
   three questions (what each image shows, and whether they differ in terms of
   achieving the goal).
2. **Labelling** — a text-only exchange (system: "You are a helpful assistant.") that
   repeats the questions, gives the analysis, and asks for one line: ``0`` (goal better
   achieved in image 1), ``1`` (image 2) or ``-1`` (unsure / no difference).

:class:`PromptSet` holds the texts so they can be changed; its :meth:`PromptSet.fingerprint`
enters the label cache key, so changing a prompt never reuses labels made with another.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from ...core.errors import ConfigError

#: The labels a labeller returns: image 1 better, image 2 better, unsure.
FIRST, SECOND, UNSURE = 0, 1, -1

__all__ = [
    "FIRST",
    "SECOND",
    "UNSURE",
    "PromptSet",
    "DEFAULT_PROMPTS",
    "analysis_messages",
    "label_messages",
    "parse_label",
    "goal_from_card",
]


@dataclass(frozen=True)
class PromptSet:
    """The texts of the two queries. ``{goal}`` is replaced by the task goal, ``{questions}``
    and ``{analysis}`` (labelling template only) by the analysis questions and the
    analysis answer.

    Attributes:
        intro: text before the first image.
        between: text between the two images.
        questions: the analysis questions (after the second image).
        label_system: system message of the labelling query (``""``: none).
        label_template: user message of the labelling query.
    """

    intro: str = "Consider the following two images:\nImage 1:"
    between: str = "Image 2:"
    questions: str = (
        "1. What is shown in Image 1?\n"
        "2. What is shown in Image 2?\n"
        "3. The goal is {goal}. Is there any difference between Image 1 and Image 2 in terms of achieving the goal?"
    )
    label_system: str = "You are a helpful assistant."
    label_template: str = (
        "Based on the text below to the questions:\n"
        "{questions}\n"
        "{analysis}\n\n"
        "Is the goal better achieved in Image 1 or Image 2?\n"
        "Reply a single line of 0 if the goal is better achieved in Image 1, or 1 if it is better achieved in Image 2.\n"
        "Reply -1 if the text is unsure or there is no difference."
    )

    def __post_init__(self) -> None:
        if "{goal}" not in self.questions:
            raise ConfigError("PromptSet.questions must contain '{goal}'")
        if "{analysis}" not in self.label_template:
            raise ConfigError("PromptSet.label_template must contain '{analysis}'")

    def fingerprint(self) -> str:
        """SHA-256 of the texts (part of every cache key)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode("utf-8")).hexdigest()

    def analysis_questions(self, goal: str) -> str:
        """The questions with the goal filled in."""
        return self.questions.replace("{goal}", goal)


#: The prompts of Wang et al. 2024.
DEFAULT_PROMPTS = PromptSet()


def analysis_messages(image1: Any, image2: Any, goal: str, prompts: PromptSet = DEFAULT_PROMPTS,
                      detail: str | None = None) -> list[dict[str, Any]]:
    """The analysis query: one user message with text, image 1, text, image 2, questions (OpenAI content parts)."""
    from ...llm import image_part, text_part

    content = [
        text_part(prompts.intro),
        image_part(image1, detail=detail),
        text_part(prompts.between),
        image_part(image2, detail=detail),
        text_part(prompts.analysis_questions(goal)),
    ]
    return [{"role": "user", "content": content}]


def label_messages(analysis: str, goal: str, prompts: PromptSet = DEFAULT_PROMPTS) -> list[dict[str, Any]]:
    """The labelling query: text only, the questions and the analysis, asking for 0, 1 or -1."""
    text = prompts.label_template.replace("{questions}", prompts.analysis_questions(goal)).replace(
        "{analysis}", analysis.strip()
    )
    msgs: list[dict[str, Any]] = []
    if prompts.label_system:
        msgs.append({"role": "system", "content": prompts.label_system})
    msgs.append({"role": "user", "content": text})
    return msgs


_ALONE = re.compile(r"^[^\w\-]*(-1|0|1)\W*$")
_TOKEN = re.compile(r"(?<![\w.\-])(-1|0|1)(?![\w.])")


def parse_label(text: str) -> int | None:
    """Read the label (0, 1 or -1) from the labelling reply; ``None`` when it cannot be read.

    A line holding only the label (markdown and punctuation around it allowed) is taken,
    the first such line winning. Otherwise the last non-empty line is used if it holds
    exactly one of ``-1``, ``0``, ``1`` as a separate token (``Answer: 0``); anything
    else — several candidates, none — is unreadable.
    """
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    for ln in lines:
        m = _ALONE.match(ln)
        if m:
            return int(m.group(1))
    if lines:
        found = _TOKEN.findall(lines[-1])
        if len(found) == 1:
            return int(found[0])
    return None


def goal_from_card(card: Any) -> str | None:
    """A goal phrase for the prompt from a task card's first VLM goal prompt (``None`` if the card has none)."""
    vlm = getattr(card, "vlm", None)
    goals: Sequence[str] = tuple(getattr(vlm, "goal", ()) or ())
    if not goals:
        return None
    g = goals[0].strip().rstrip(".")
    return f"to reach a state where {g[0].lower() + g[1:] if g else g}"
