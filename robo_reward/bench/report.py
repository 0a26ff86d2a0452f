"""Write a benchmark report from run folders: tables (CSV), figures (PNG), Markdown and a self-contained HTML page.

``write_report(RUNS, OUT)`` produces::

    OUT/index.html          one page: tables, figures (embedded), evaluation videos
    OUT/report.md           the same in Markdown, figures and videos linked
    OUT/figures/*.png       learning curves per task, final scores, aggregate, improvement, reward vs GT
    OUT/videos/*.mp4        each run's evaluation video (copied, so OUT can be moved or published)
    OUT/results.csv         every evaluation (tidy: suite, task, reward, agent, seed, source, step, ...)
    OUT/runs.csv            one row per run
    OUT/cells.csv           per task × reward × agent: IQM and intervals
    OUT/aggregate.csv       per reward × agent over all tasks
    OUT/improvement.csv     probability of improvement between rewards
    OUT/report.json         what was written, and the settings of the statistics
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.errors import MissingDependencyError
from . import plots
from .alignment import ALIGNMENT_NPZ
from .results import (
    aggregate_table,
    cell_table,
    evaluations_table,
    improvement_table,
    learning_curves,
    load_runs,
    reward_order,
    runs_table,
    suite_files,
)


def _require_bench() -> None:
    for mod in ("matplotlib", "pandas", "scipy"):
        try:
            __import__(mod)
        except ImportError as exc:
            raise MissingDependencyError(mod, "bench", "benchmark reports") from exc


# ----------------------------------------------------------------------------- number formatting


def num(x: Any, digits: int | None = None) -> str:
    """A compact number: ``—`` for missing, 2 decimals below 10, 1 below 100, none above."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "—"
    if not math.isfinite(v):
        return "—"
    if digits is None:
        a = abs(v)
        digits = 2 if a < 10 else (1 if a < 100 else 0)
    return f"{v:.{digits}f}"


def est(v: Any, lo: Any, hi: Any, digits: int | None = None) -> str:
    """``"0.53 [0.41, 0.66]"`` (digits chosen from the largest magnitude)."""
    if digits is None:
        vals = [abs(float(t)) for t in (v, lo, hi) if t is not None and math.isfinite(float(t))]
        a = max(vals) if vals else 0.0
        digits = 2 if a < 10 else (1 if a < 100 else 0)
    if num(v) == "—":
        return "—"
    return f"{num(v, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


# ----------------------------------------------------------------------------- document blocks


@dataclass
class _Doc:
    """A document built once and rendered to both Markdown and HTML."""

    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", (level, text)))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> None:
        self.blocks.append(("table", (list(header), [list(r) for r in rows], align)))

    def img(self, path: str, alt: str) -> None:
        self.blocks.append(("img", (path, alt)))

    def videos(self, items: Sequence[tuple[str, str]]) -> None:
        self.blocks.append(("videos", list(items)))

    # -------------------------------------------------------------- markdown
    def markdown(self) -> str:
        out: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                out.append("#" * data[0] + " " + data[1])
            elif kind == "p":
                out.append(data)
            elif kind == "table":
                header, rows, align = data
                out.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
                al = align or ("l" + "r" * (len(header) - 1))
                out.append("|" + "|".join("---:" if a == "r" else "---" for a in al) + "|")
                out.extend("| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows)
            elif kind == "img":
                out.append(f"![{data[1]}]({data[0]})")
            elif kind == "videos":
                out.append("\n".join(f"- [{cap}]({src})" for src, cap in data))
            out.append("")
        return "\n".join(out)

    # -------------------------------------------------------------- html
    def html(self, title: str, base: Path) -> str:
        body: list[str] = []
        for kind, data in self.blocks:
            if kind == "h":
                lvl, text = data
                anchor = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
                body.append(f'<h{lvl} id="{anchor}">{html.escape(text)}</h{lvl}>')
            elif kind == "p":
                body.append(f"<p>{_inline_html(data)}</p>")
            elif kind == "table":
                header, rows, align = data
                al = align or ("l" + "r" * (len(header) - 1))
                th = "".join(f'<th class="{a}">{_inline_html(str(h))}</th>' for h, a in zip(header, al))
                trs = "".join(
                    "<tr>" + "".join(f'<td class="{a}">{_inline_html(str(c))}</td>' for c, a in zip(r, al)) + "</tr>"
                    for r in rows
                )
                body.append(f'<div class="tw"><table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>')
            elif kind == "img":
                path, alt = data
                raw = (base / path).read_bytes()
                b64 = base64.b64encode(raw).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'
                            f"<figcaption>{html.escape(alt)}</figcaption></figure>")
            elif kind == "videos":
                cells = "".join(
                    f'<figure class="vid"><video controls muted loop preload="metadata" src="{html.escape(src)}">'
                    f'</video><figcaption><a href="{html.escape(src)}">{html.escape(cap)}</a></figcaption></figure>'
                    for src, cap in data
                )
                body.append(f'<div class="videos">{cells}</div>')
        return _HTML.format(title=html.escape(title), body="\n".join(body))


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _inline_html(text: str) -> str:
    """Escape, then render the few Markdown inlines the report uses: `code`, **bold**, *italic*, [text](link)."""
    s = html.escape(text)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", s)
    s = re.sub(r"(?<![*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])", r"<em>\1</em>", s)
    s = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', s)
    return s


_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; max-width: 1200px;
       padding: 1.5rem; color: #1a1a1a; line-height: 1.45; }}
h1 {{ font-size: 1.7rem; margin-bottom: .3rem; }}
h2 {{ margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }}
.tw {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: .9rem; margin: .6rem 0 1rem; }}
th, td {{ border-bottom: 1px solid #e4e4e4; padding: .3rem .6rem; white-space: nowrap; }}
th {{ background: #f6f6f6; position: sticky; top: 0; }}
td.r, th.r {{ text-align: right; font-variant-numeric: tabular-nums; }}
td.l, th.l {{ text-align: left; }}
tbody tr:hover {{ background: #fafafa; }}
figure {{ margin: 1rem 0; }}
figure img {{ max-width: 100%; height: auto; border: 1px solid #eee; }}
figcaption {{ font-size: .85rem; color: #555; }}
code {{ background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; font-size: .9em; }}
.videos {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: .8rem; }}
.videos video {{ width: 100%; background: #000; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


# ----------------------------------------------------------------------------- helpers


def _slug(*parts: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", "__".join(str(p) for p in parts)).strip("-")


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return str(path)


def _alignment_points(runs: Sequence[Any]) -> tuple[dict, dict]:
    """``{(reward, task): [(seed, learned, gt)]}`` from ``alignment.npz`` files, and pooled Pearson r per panel.

    The plot shows the Pearson distance ``sqrt((1 - r) / 2)`` of each pooled ``r`` beside it.
    """
    points: dict[tuple[str, str], list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for r in runs:
        path = r.run_dir / ALIGNMENT_NPZ
        if not path.is_file():
            continue
        try:
            with np.load(path) as z:
                learned, gt = z["learned"].astype(np.float64), z["gt"].astype(np.float64)
        except (OSError, KeyError, ValueError):
            continue
        if r.agent and len({x.agent for x in runs}) > 1:
            key = (f"{r.reward} · {r.agent}", r.task)
        else:
            key = (r.reward, r.task)
        points.setdefault(key, []).append((r.seed, learned, gt))
    from .stats import correlations

    corr = {}
    for key, rows in points.items():
        c = correlations(np.concatenate([l for _, l, _ in rows]), np.concatenate([g for _, _, g in rows]))["pearson"]
        corr[key] = math.nan if c is None else c
    return points, corr


def _suite_info(roots: Sequence[Path]) -> list[dict[str, Any]]:
    import yaml

    out = []
    for p in suite_files(roots):
        try:
            out.append(yaml.safe_load(p.read_text()) or {})
        except (OSError, yaml.YAMLError):
            continue
    return out


# ----------------------------------------------------------------------------- the report


def write_report(
    roots: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    copy_videos: bool = True,
    title: str | None = None,
) -> dict[str, Any]:
    """Aggregate the run folders under ``roots`` and write the report into ``out`` (see the module docstring).

    Args:
        roots: one or more folders holding run folders (e.g. ``runs/bench/smoke``).
        out: the report folder (created; files in it are overwritten).
        reps: bootstrap resamples for every interval.
        confidence: interval level.
        seed: seed of the bootstrap (the same seed gives the same report).
        copy_videos: copy evaluation videos into ``out/videos`` (else link to the run folders).
        title: page title (default: from the suite names).

    Returns:
        ``report.json``'s content: paths of what was written, counts, settings.
    """
    _require_bench()
    if isinstance(roots, (str, Path)):
        roots = [roots]
    roots = [Path(r) for r in roots]
    out = Path(out)
    runs = load_runs(roots)
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    for old in fig_dir.glob("*.png"):
        old.unlink()

    kw = {"reps": reps, "confidence": confidence, "seed": seed}
    evals = evaluations_table(runs)
    rdf = runs_table(runs)
    cells = cell_table(rdf, **kw)
    agg = aggregate_table(rdf, **kw)
    poi = improvement_table(rdf, **kw)
    evals.to_csv(out / "results.csv", index=False)
    rdf.to_csv(out / "runs.csv", index=False)
    cells.to_csv(out / "cells.csv", index=False)
    agg.to_csv(out / "aggregate.csv", index=False)
    poi.to_csv(out / "improvement.csv", index=False)
    parquet = None
    try:
        evals.to_parquet(out / "results.parquet", index=False)
        parquet = "results.parquet"
    except (ImportError, ValueError):
        pass  # pyarrow/fastparquet not installed: CSV only

    rewards = reward_order(runs)
    colors = plots.reward_colors(rewards)
    agents = list(dict.fromkeys(r.agent for r in runs))
    tasks = list(dict.fromkeys(r.task for r in runs))
    suites = sorted({r.suite for r in runs if r.suite})
    n_finished = int(rdf["finished"].sum())
    figures: dict[str, str] = {}

    curve_kw = {"reps": min(reps, 1000), "confidence": confidence, "seed": seed}
    curves = learning_curves(runs, "gt_return", **curve_kw) + learning_curves(runs, "success_rate", **curve_kw)
    for task in tasks:
        p = plots.plot_curves(curves, task, fig_dir / f"curves_{_slug(task)}.png", colors, agents, confidence)
        if p:
            figures[f"curves:{task}"] = _rel(p, out)
    for metric, name in (("success_rate", "final_success"), ("gt_return", "final_gt_return")):
        p = plots.plot_intervals(cells, metric, fig_dir / f"{name}.png", colors, confidence)
        if p:
            figures[name] = _rel(p, out)
    if len(tasks) > 1:
        p = plots.plot_aggregate(agg, fig_dir / "aggregate.png", colors, confidence)
        if p:
            figures["aggregate"] = _rel(p, out)
    p = plots.plot_improvement(poi, fig_dir / "improvement.png", confidence)
    if p:
        figures["improvement"] = _rel(p, out)
    points, corr = _alignment_points(runs)
    p = plots.plot_reward_vs_gt(points, fig_dir / "reward_vs_gt.png", colors, corr, seed=seed)
    if p:
        figures["reward_vs_gt"] = _rel(p, out)

    videos: list[tuple[str, str]] = []
    vid_dir = out / "videos"
    if vid_dir.exists() and copy_videos:
        shutil.rmtree(vid_dir)
    for r in sorted(runs, key=lambda r: (tasks.index(r.task), rewards.index(r.reward), agents.index(r.agent), r.seed)):
        v = r.video
        if v is None:
            continue
        cap = f"{r.task} · {r.reward}{' · ' + r.agent if len(agents) > 1 else ''} · seed {r.seed}"
        if copy_videos:
            vid_dir.mkdir(exist_ok=True)
            dst = vid_dir / f"{_slug(r.task, r.reward, r.agent, 'seed' + str(r.seed))}.mp4"
            shutil.copy2(v, dst)
            videos.append((_rel(dst, out), cap))
        else:
            videos.append((_rel(v, out), cap))

    # ------------------------------------------------------------------ the document
    pct = int(round(confidence * 100))
    multi_agent = len(agents) > 1
    doc = _Doc()
    page_title = title or f"Benchmark report: {', '.join(suites) or ', '.join(map(str, roots))}"
    doc.h(1, page_title)
    doc.p(f"Generated {time.strftime('%Y-%m-%d %H:%M')} from `{', '.join(map(str, roots))}`: "
          f"{len(runs)} runs ({n_finished} finished) · {len(tasks)} task(s) · {len(rewards)} reward(s) · "
          f"{len(agents)} agent(s).")
    for info in _suite_info(roots):
        if info.get("description"):
            doc.p(f"**{info.get('name', '')}** — {' '.join(str(info['description']).split())}")
        doc.p(f"Step budget {info.get('steps')} per run; seeds {info.get('seeds')}; "
              f"{info.get('eval_episodes')} deterministic evaluation episodes per run.")
    doc.p("**How to read this.** Success rate and ground-truth (GT) return come from the final deterministic "
          "evaluation on the environment's own reward, whatever reward the agent trained on. Each cell reports the "
          f"interquartile mean (IQM) over seeds with a {pct}% stratified-bootstrap percentile interval "
          f"({reps} resamples; Agarwal et al. 2021). With few seeds the intervals are wide: read overlapping "
          "intervals as *no evidence of a difference*. `r(learned, GT)` is the Pearson correlation, per step, "
          "between the reward the agent was trained on and the GT reward on evaluation rollouts of the trained "
          "policy (mean over seeds). `D(learned, GT)` is the Pearson distance `√((1 − r) / 2)` of the same "
          "samples (0 = perfectly correlated, 0.71 = uncorrelated, 1 = anti-correlated; mean over seeds): the "
          "distance EPIC uses and VLM-RM's evaluation reports, but taken here on the raw rewards along the "
          "policy's own rollouts, **without EPIC's canonicalisation** — so it is not EPIC: it is not invariant "
          "to potential shaping and depends on the states the trained policy visits.")

    unfinished = rdf[~rdf["finished"]]
    if len(unfinished):
        doc.p(f"**{len(unfinished)} run(s) did not finish** and are left out of the tables: "
              + ", ".join(f"`{t}/{w}/{a}/seed{s}`" for t, w, a, s in
                          unfinished[["task", "reward", "agent", "seed"]].itertuples(index=False)))

    doc.h(2, "Final success rate and ground-truth return")
    header = ["task", "reward"] + (["agent"] if multi_agent else []) + [
        "seeds", f"success IQM [{pct}% CI]", f"GT return IQM [{pct}% CI]", "learned-reward return",
        "r(learned, GT)", "D(learned, GT)", "train time (s)", "env steps/s"]
    rows = []
    for _, c in cells.iterrows():
        rows.append([c["task"], c["reward"]] + ([c["agent"]] if multi_agent else []) + [
            int(c["seeds"]), est(c["success_iqm"], c["success_lo"], c["success_hi"], 2),
            est(c["gt_iqm"], c["gt_lo"], c["gt_hi"]), num(c["learned_return"]), num(c["step_pearson"], 2),
            num(c["step_pearson_distance"], 2), num(c["train_time_s"], 0), num(c["steps_per_s"], 0)])
    doc.table(header, rows, "ll" + ("l" if multi_agent else "") + "r" * 8)
    for key, alt in (("final_success", "final success rate per task (IQM and interval)"),
                     ("final_gt_return", "final ground-truth return per task (IQM and interval)")):
        if key in figures:
            doc.img(figures[key], alt)

    if len(tasks) > 1 and not agg.empty:
        doc.h(2, "Over all tasks")
        doc.p("IQM over all runs of all tasks, with intervals from a bootstrap stratified by task. GT returns are "
              "min–max normalised per task over the runs in this report (0 = the task's worst run, 1 = its best), "
              "so they compare the rewards here with each other, not with published scores.")
        doc.table(["reward"] + (["agent"] if multi_agent else []) + ["tasks", "runs", f"success IQM [{pct}% CI]",
                                                                     f"normalised GT IQM [{pct}% CI]"],
                  [[a["reward"]] + ([a["agent"]] if multi_agent else []) + [
                      int(a["tasks"]), int(a["runs"]), est(a["success_iqm"], a["success_lo"], a["success_hi"], 2),
                      est(a["gt_norm_iqm"], a["gt_norm_lo"], a["gt_norm_hi"], 2)] for _, a in agg.iterrows()],
                  "l" + ("l" if multi_agent else "") + "rrrr")
        if "aggregate" in figures:
            doc.img(figures["aggregate"], "IQM over all tasks")

    if not poi.empty:
        doc.h(2, "Probability of improvement")
        doc.p("`P(X > Y)`: the probability that a run with reward X ends with a higher score than a run with "
              "reward Y on the same task (ties count ½), averaged over tasks; 0.5 means no difference. An interval "
              "that excludes 0.5 is evidence of a difference.")
        doc.table(["X", "Y"] + (["agent"] if multi_agent else []) + ["metric", "scope", f"P(X > Y) [{pct}% CI]"],
                  [[q["x"], q["y"]] + ([q["agent"]] if multi_agent else []) + [
                      q["metric"].replace("gt_return", "GT return").replace("success_rate", "success rate"),
                      q["scope"], est(q["poi"], q["poi_lo"], q["poi_hi"], 2)] for _, q in poi.iterrows()],
                  "ll" + ("l" if multi_agent else "") + "llr")
        if "improvement" in figures:
            doc.img(figures["improvement"], "probability of improvement between rewards")

    doc.h(2, "Learning curves")
    doc.p(f"Mean across seeds with a {pct}% bootstrap band. Curves come from the periodic deterministic "
          "evaluations where the runs have them (`eval_freq` > 0), else from the training episodes "
          "(mean of the last 20 episodes at each log line, on the env's own reward).")
    for task in tasks:
        if f"curves:{task}" in figures:
            doc.img(figures[f"curves:{task}"], f"learning curves: {task}")

    doc.h(2, "Learned reward vs ground truth")
    learned_runs = rdf[rdf["reward"] != "env"]
    if "reward_vs_gt" in figures:
        doc.img(figures["reward_vs_gt"], "learned reward vs ground-truth reward per step of evaluation rollouts")
    if len(learned_runs):
        doc.table(["task", "reward"] + (["agent"] if multi_agent else []) + [
            "seed", "r per step (Pearson)", "ρ per step (Spearman)", "D per step (Pearson distance)",
            "r over training log", "note"],
            [[t["task"], t["reward"]] + ([t["agent"]] if multi_agent else []) + [
                int(t["seed"]), num(t["step_pearson"], 2), num(t["step_spearman"], 2),
                num(t["step_pearson_distance"], 2), num(t["train_pearson"], 2),
                t["alignment_error"] or ""] for _, t in learned_runs.iterrows()],
            "ll" + ("l" if multi_agent else "") + "rrrrrl")
        doc.p("`D per step`: the Pearson distance `√((1 − r) / 2)` between learned and GT reward per step of "
              "the evaluation rollouts, without EPIC's canonicalisation (see *How to read this*). "
              "`r over training log`: correlation of the learned-reward and GT episode returns across the lines of "
              "`metrics.jsonl` (how the two moved together during training).")
    else:
        doc.p("No run trained on a learned reward.")

    if videos:
        doc.h(2, "Evaluation videos")
        doc.p("One deterministic evaluation episode of each trained policy.")
        doc.videos(videos)

    doc.h(2, "Runs")
    doc.table(["task", "reward", "agent", "seed", "steps", "success", "GT return", "wall time (s)", "run folder"],
              [[t["task"], t["reward"], t["agent"], int(t["seed"]), int(t["steps"]), num(t["success_rate"], 2),
                num(t["gt_return"]), num(t["wall_time_s"], 0), f"`{t['run']}`"] for _, t in rdf.iterrows()],
              "llllrrrrl")
    files = ["results.csv", "runs.csv", "cells.csv", "aggregate.csv", "improvement.csv"] + ([parquet] if parquet else [])
    doc.p("Data: " + ", ".join(f"[{f}]({f})" for f in files) + ".")

    (out / "report.md").write_text(doc.markdown())
    (out / "index.html").write_text(doc.html(page_title, out))
    info = {
        "html": "index.html",
        "markdown": "report.md",
        "figures": figures,
        "videos": [v for v, _ in videos],
        "tables": files,
        "runs": len(runs),
        "finished": n_finished,
        "tasks": tasks,
        "rewards": rewards,
        "agents": agents,
        "reps": reps,
        "confidence": confidence,
        "seed": seed,
        "roots": [str(r) for r in roots],
    }
    (out / "report.json").write_text(json.dumps(info, indent=2))
    return info


__all__ = ["est", "num", "write_report"]
