"""Benchmark suites: run a grid of tasks × rewards × agents × seeds and report on it honestly.

* :mod:`.suite` — suite files (YAML) and their cells;
* :mod:`.runner` — run the cells, locally in worker processes or as Ray tasks, resumably;
* :mod:`.results` — read run folders into tables;
* :mod:`.stats` — IQM, stratified bootstrap intervals, probability of improvement (Agarwal et al. 2021);
* :mod:`.alignment` — correlation of a learned reward with the ground truth on evaluation rollouts;
* :mod:`.report` / :mod:`.plots` — figures, Markdown and HTML reports.

::

    from robo_reward.bench import load_suite, run_suite, write_report
    run_suite(load_suite("smoke"), "runs/bench", workers=2)
    write_report("runs/bench/smoke", "report/")
"""

from __future__ import annotations

from typing import Any

from .stats import Estimate, iqm, probability_of_improvement, stratified_bootstrap
from .suite import Cell, Suite, list_suites, load_suite, suite_from_dict

__all__ = [
    "Cell",
    "Estimate",
    "Suite",
    "iqm",
    "list_suites",
    "load_suite",
    "probability_of_improvement",
    "run_suite",
    "stratified_bootstrap",
    "suite_from_dict",
    "write_report",
]


def __getattr__(name: str) -> Any:  # the runner and the report import heavier modules; load them on use
    if name == "run_suite":
        from .runner import run_suite

        return run_suite
    if name == "write_report":
        from .report import write_report

        return write_report
    raise AttributeError(f"module 'robo_reward.bench' has no attribute {name!r}")
