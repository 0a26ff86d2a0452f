"""Pull the reward function out of an LLM's response.

LLMs answer with prose around one or more fenced code blocks (```` ```python ````,
```` ``` ````, ``~~~``), sometimes after a ``<think>...</think>`` section, sometimes with
a last block cut off by the token limit, and sometimes with no fences at all.
:func:`extract_reward_code` returns the code that defines the expected function:

1. ``<think>``/``<reasoning>`` sections are dropped.
2. Fenced blocks are collected (an unterminated last fence runs to the end of the text).
3. Of the blocks that define ``def <function>(``, the **last** one wins (a model that
   corrects itself puts the corrected version last). A block that only *calls* the
   function does not count.
4. Without fences, the text from the first line that starts code (``import``,
   ``from``, ``def``, ``@``, or an upper-case constant assignment) before the function's
   ``def`` to the end of the function's indented body is taken.

Nothing here checks what the code does: that is
:func:`~robo_reward.rewards.code.validate.validate_reward_code`'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...core.errors import RoboRewardError
from .validate import DEFAULT_FUNCTION


class CodeExtractionError(RoboRewardError, ValueError):
    """No code defining the reward function was found in the response."""


@dataclass(frozen=True)
class CodeBlock:
    """One fenced code block: its language tag (may be empty), code, and first line in the response (1-based)."""

    language: str
    code: str
    line: int
    closed: bool = True


_THINK_RE = re.compile(r"<(think|thinking|reasoning)>.*?(</\1>|\Z)", re.DOTALL | re.IGNORECASE)
_FENCE_RE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w.+-]*)[^\n]*$")
_CODE_START_RE = re.compile(r"^(import\s|from\s+\w|def\s|@|[A-Z_][A-Z0-9_]*\s*(:[^=]*)?=)")
_PY_LANGS = {"", "python", "py", "python3", "py3", "ipython", "python2"}


def strip_reasoning(text: str) -> str:
    """Drop ``<think>...</think>`` (and ``<thinking>``, ``<reasoning>``) sections, closed or not."""
    return _THINK_RE.sub("", text)


def extract_code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced code block of ``text``, in order. An unclosed last fence runs to the end."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    blocks: list[CodeBlock] = []
    i = 0
    while i < len(lines):
        m = _FENCE_RE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        indent = len(lines[i]) - len(lines[i].lstrip())
        start = i + 1
        j = start
        closed = False
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and stripped.strip(fence[0]) == "":
                closed = True
                break
            j += 1
        body = [ln[indent:] if ln[:indent].strip() == "" else ln for ln in lines[start:j]]
        blocks.append(CodeBlock(lang, "\n".join(body).strip("\n") + "\n", start + 1, closed))
        i = j + 1
    return blocks


def _defines(code: str, function: str) -> bool:
    return re.search(rf"^[ \t]*def[ \t]+{re.escape(function)}[ \t]*\(", code, re.MULTILINE) is not None


def _unfenced(text: str, function: str) -> str | None:
    lines = text.replace("\r\n", "\n").split("\n")
    def_re = re.compile(rf"^def[ \t]+{re.escape(function)}[ \t]*\(")
    idx = next((i for i, ln in enumerate(lines) if def_re.match(ln)), None)
    if idx is None:
        return None
    # walk back over code-looking lines (imports, constants, helpers, blank lines, comments)
    start = idx
    for k in range(idx - 1, -1, -1):
        ln = lines[k]
        if _CODE_START_RE.match(ln):
            start = k
        elif ln.strip() and not ln[0].isspace() and not ln.lstrip().startswith("#"):
            break  # prose
    # forward to the first line of prose after the function
    end = idx + 1
    while end < len(lines):
        ln = lines[end]
        if (ln.strip() and not ln[0].isspace() and not ln.lstrip().startswith("#")
                and not _CODE_START_RE.match(ln) and not ln.startswith((")", "]", "}"))):
            break
        end += 1
    while end > idx and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end]).strip("\n") + "\n"


def extract_reward_code(text: str, function: str = DEFAULT_FUNCTION) -> str:
    """Return the code in an LLM response that defines ``function``.

    Args:
        text: the response.
        function: the expected function name.

    Raises:
        CodeExtractionError: no block (or unfenced text) defines ``function``; the message
            says what was found instead.
    """
    if not isinstance(text, str) or not text.strip():
        raise CodeExtractionError("the response is empty: there is no reward code in it")
    body = strip_reasoning(text)
    blocks = extract_code_blocks(body)
    candidates = [b for b in blocks if b.language in _PY_LANGS and _defines(b.code, function)]
    if not candidates:
        candidates = [b for b in blocks if _defines(b.code, function)]
    if candidates:
        return candidates[-1].code
    if not blocks:
        found = _unfenced(body, function)
        if found is not None:
            return found
    if blocks:
        names = sorted({m for b in blocks for m in re.findall(r"^[ \t]*def[ \t]+(\w+)", b.code, re.MULTILINE)})
        also = f"; functions defined: {', '.join(names)}" if names else ""
        raise CodeExtractionError(
            f"the response has {len(blocks)} code block(s) but none defines `def {function}(...)`{also}. "
            f"Answer with one ```python block that defines {function}."
        )
    raise CodeExtractionError(
        f"the response has no code block and no `def {function}(...)`. Answer with one ```python block that defines {function}."
    )
