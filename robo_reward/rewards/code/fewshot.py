"""Few-shot examples of reward code, retrieved by similarity of task descriptions (offline BM25).

Text2Reward (Xie et al. 2023, §2.3) improves its zero-shot rewards by putting a few
expert-written reward functions for *related* tasks into the prompt, chosen by the
similarity of the task instructions. Here the examples are the reward programs in the
shipped ``assets/rewards/`` folder (or any folder of your own), and the similarity is
Okapi BM25 (Robertson & Zaragoza 2009) over the words of each example's task — its card's
name, description, success signal and observation field names — plus the example's own
summary. Nothing leaves the process: no embedding service, no network.

An example file is an ordinary reward program with a comment header::

    # task: mujoco-reacher-v5
    # written-by: robo_reward team (hand-written)
    # summary: dense distance reward with a success bonus and a small torque penalty

``task`` names the task card the program was written for (it supplies most of the words
to match on); ``written-by`` says who wrote it; ``summary`` is optional.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...core.errors import ConfigError

_HEADER_RE = re.compile(r"^#\s*([A-Za-z][A-Za-z_-]*)\s*:\s*(.*)$")
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    """a an and are as at be by each for from has have in is it its it's of on or that the their then there
    these this to was when where which with within without one two per same not no only own every any all
    its into than after before up down so if but also can must may does do""".split()
)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens without stop words or 1-letter words, with a crude plural strip.

    ``"metaworld-pick-place-v3"`` → ``["metaworld", "pick", "place", "v3"]``.
    """
    out = []
    for tok in _TOKEN_RE.findall(text.lower().replace("_", " ")):
        if len(tok) < 2 or tok in _STOPWORDS:
            continue
        if len(tok) > 4 and tok.endswith("s") and not tok.endswith("ss"):
            tok = tok[:-1]
        out.append(tok)
    return out


class BM25:
    """Okapi BM25 scores of a query against a fixed set of documents.

    ``score(q, d) = Σ_{t ∈ q} idf(t) · f(t, d)(k1 + 1) / (f(t, d) + k1(1 − b + b|d|/avgdl))``
    with ``idf(t) = ln(1 + (N − n(t) + 0.5) / (n(t) + 0.5))`` (the non-negative variant).

    Args:
        documents: the documents, each a list of tokens (see :func:`tokenize`).
        k1: term-frequency saturation.
        b: length normalisation.
    """

    def __init__(self, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = float(k1), float(b)
        self.tf = [Counter(d) for d in documents]
        self.lengths = [len(d) for d in documents]
        self.avgdl = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        df: Counter[str] = Counter()
        for c in self.tf:
            df.update(c.keys())
        n = len(documents)
        self.idf = {t: math.log(1.0 + (n - m + 0.5) / (m + 0.5)) for t, m in df.items()}

    def scores(self, query: Iterable[str]) -> list[float]:
        """The BM25 score of every document for ``query`` (a list of tokens)."""
        q = list(query)
        out = []
        for tf, length in zip(self.tf, self.lengths):
            norm = self.k1 * (1.0 - self.b + self.b * (length / self.avgdl if self.avgdl else 0.0))
            s = 0.0
            for t in q:
                f = tf.get(t, 0)
                if f:
                    s += self.idf.get(t, 0.0) * f * (self.k1 + 1.0) / (f + norm)
            out.append(s)
        return out


@dataclass(frozen=True)
class FewShotExample:
    """A hand-written reward program for one task, used as a few-shot example.

    Attributes:
        name: the file's stem (``mujoco-reacher-v5``).
        task: the task card it was written for.
        written_by: who wrote it (the team, or which model).
        summary: a one-line summary (may be empty).
        code: the whole file, header included.
        path: where it was read from.
        search_text: the words it is matched on (card text + summary).
    """

    name: str
    task: str
    written_by: str
    summary: str
    code: str
    path: Path | None = None
    search_text: str = field(default="", repr=False)

    @property
    def body(self) -> str:
        """The code without the ``# key: value`` header lines (what the prompt shows)."""
        return strip_header(self.code)


def strip_header(text: str) -> str:
    """``text`` without its leading ``# key: value`` header lines (and the blank lines among them)."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and (not lines[i].strip() or _HEADER_RE.match(lines[i].strip())):
        i += 1
    return "\n".join(lines[i:]).strip() + "\n"


def parse_header(text: str) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a file (stops at the first other line)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _HEADER_RE.match(line.strip())
        if not m:
            break
        out[m.group(1).lower()] = m.group(2).strip()
    return out


def card_search_text(card: Any) -> str:
    """The words a task card is matched on: name, description, success text, field names and meanings."""
    parts = [card.name, card.env_id, card.description or ""]
    success = getattr(card, "success", None)
    if success is not None:
        parts.append(success.description or "")
    for f in getattr(card, "observation", ()):
        parts.append(f"{f.name} {f.meaning}")
    return " ".join(parts)


def default_examples_dir() -> Path:
    """The shipped ``assets/rewards`` folder."""
    from ...paths import data_dir

    return data_dir("assets") / "rewards"


def load_examples(folder: str | Path | None = None) -> list[FewShotExample]:
    """Load every ``*.py`` example in ``folder`` (default: the shipped ``assets/rewards``), sorted by name.

    Raises:
        ConfigError: the folder does not exist, or a file lacks the ``# task:`` or
            ``# written-by:`` header.
    """
    folder = Path(folder) if folder is not None else default_examples_dir()
    if not folder.is_dir():
        raise ConfigError(f"few-shot example folder {folder} does not exist")
    out = []
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        head = parse_header(text)
        missing = [k for k in ("task", "written-by") if not head.get(k)]
        if missing:
            raise ConfigError(
                f"few-shot example {path} lacks the header line(s) {', '.join('# ' + k + ': ...' for k in missing)}"
            )
        task = head["task"]
        try:
            from ...envs import load_card

            card_text = card_search_text(load_card(task))
        except Exception:  # an example for a card that is not installed: match on its summary alone
            card_text = task
        out.append(
            FewShotExample(
                name=path.stem,
                task=task,
                written_by=head["written-by"],
                summary=head.get("summary", ""),
                code=text,
                path=path,
                search_text=f"{card_text} {head.get('summary', '')}",
            )
        )
    return out


def retrieve(
    query: Any,
    k: int = 2,
    *,
    examples: Sequence[FewShotExample] | None = None,
    exclude_task: str | None = None,
) -> list[tuple[FewShotExample, float]]:
    """The ``k`` examples most similar to ``query`` by BM25, best first, with their scores.

    Args:
        query: a task card (matched on :func:`card_search_text`) or free text.
        k: how many to return (fewer if there are fewer examples).
        examples: the pool (default: :func:`load_examples` of the shipped folder).
        exclude_task: leave out examples written for this task — e.g. the query's own task,
            so that "few-shot" means examples of *other* tasks, as in Text2Reward.

    Ties are broken by name, so retrieval is deterministic.
    """
    if k <= 0:
        return []
    pool = list(examples) if examples is not None else load_examples()
    if exclude_task is not None:
        pool = [e for e in pool if e.task != exclude_task]
    if not pool:
        return []
    text = query if isinstance(query, str) else card_search_text(query)
    index = BM25([tokenize(e.search_text) for e in pool])
    scores = index.scores(tokenize(text))
    ranked = sorted(zip(pool, scores), key=lambda p: (-p[1], p[0].name))
    return [(e, float(s)) for e, s in ranked[:k]]


__all__ = [
    "BM25",
    "FewShotExample",
    "card_search_text",
    "default_examples_dir",
    "load_examples",
    "parse_header",
    "retrieve",
    "strip_header",
    "tokenize",
]
