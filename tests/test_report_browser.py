"""The benchmark report, opened in a real headless Chromium: no script errors, no failed loads, tables and plots shown.

Builds a report from synthetic run folders (the fixtures of ``tests/test_bench.py``,
with real H.264 evaluation videos), opens ``index.html`` from disk in Debian's
``chromium`` driven by Playwright over the Chrome DevTools Protocol (Playwright's own
browser download is not used: ``executable_path`` points at the system browser), and
checks what a reader would see.

Needs the ``chromium`` Debian package (``scripts/setup.sh`` installs it) and the
``playwright`` Python package (in the ``test`` extra); skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

#: Executable names of a Chromium-based browser, tried in order (``ROBO_REWARD_CHROMIUM`` overrides).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium executable: ``$ROBO_REWARD_CHROMIUM``, else the first of :data:`CHROMIUM_NAMES` on PATH."""
    explicit = os.environ.get("ROBO_REWARD_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "headless Chromium is not installed (Debian: apt-get install -y chromium; scripts/setup.sh installs it, "
        "or set ROBO_REWARD_CHROMIUM to a Chromium executable)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the 'playwright' package is not installed: pip install 'robo-reward[test]'"
)

from tests.test_bench import PEARSON, SYNTH, _write_run  # noqa: E402

FINAL_TABLE_HEADING = "final-success-rate-and-ground-truth-return"

# Everything the page shows, collected in one script run in the page.
_COLLECT_JS = """
() => {
  const box = (el) => { const r = el.getBoundingClientRect(); return {w: r.width, h: r.height}; };
  const heading = document.getElementById(arguments_heading);
  let table = null;
  for (let el = heading && heading.nextElementSibling; el; el = el.nextElementSibling) {
    if (el.tagName === 'H2') break;
    table = el.querySelector('table');
    if (table) break;
  }
  const cells = (row, sel) => Array.from(row.querySelectorAll(sel)).map((c) => c.textContent.trim());
  return {
    title: document.title,
    table: table && {
      header: cells(table.tHead.rows[0], 'th'),
      rows: Array.from(table.tBodies[0].rows).map((r) => cells(r, 'td')),
      box: box(table),
    },
    images: Array.from(document.querySelectorAll('img')).map((img) => ({
      alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
      box: box(img)})),
    svgs: Array.from(document.querySelectorAll('svg')).map(box),
    canvases: Array.from(document.querySelectorAll('canvas')).map(box),
    videos: Array.from(document.querySelectorAll('video')).map((v) => ({
      src: v.getAttribute('src'), readyState: v.readyState, error: v.error && v.error.code,
      videoWidth: v.videoWidth, box: box(v)})),
    links: Array.from(document.querySelectorAll('a[href]')).map((a) => a.getAttribute('href')),
    text: document.body.innerText,
    tables: document.querySelectorAll('table').length,
  };
}
""".replace("arguments_heading", repr(FINAL_TABLE_HEADING))


def _write_video(path: Path, seed: int) -> None:
    """A real two-second H.264 MP4, written the way evaluation videos are (imageio + ffmpeg)."""
    imageio = pytest.importorskip("imageio.v2", reason="imageio (the 'video' extra) writes the test's videos")
    rng = np.random.default_rng(seed)
    with imageio.get_writer(path, fps=10, macro_block_size=1) as writer:
        for k in range(20):
            frame = np.full((48, 64, 3), 20 * (k % 10), dtype=np.uint8)
            frame[:, :, seed % 3] = rng.integers(0, 255)
            writer.append_data(frame)


@pytest.fixture
def report(tmp_path):
    """A report over the synthetic suite of ``test_bench`` (2 tasks × 2 rewards × 4 seeds, one unfinished run)."""
    from robo_reward.bench.report import write_report

    root = tmp_path / "runs" / "synth"
    videos = 0
    for task, rewards in SYNTH.items():
        for reward, (succ, gt) in rewards.items():
            for seed in range(4):
                d = _write_run(root, task, reward, seed, succ[seed], gt[seed], video=(seed == 0))
                if seed == 0:  # replace the placeholder bytes with a real video
                    _write_video(d / "videos" / "eval.mp4", videos)
                    videos += 1
    _write_run(root, "task-a", "dist", 4, 0.0, -50.0, finished=False)
    out = tmp_path / "report"
    info = write_report(root, out, reps=200)
    return out, info


def open_in_chromium(page_path: Path, screenshot: Path | None = None) -> tuple[dict, list[str], list[str]]:
    """Open ``page_path`` in headless Chromium; return what the page shows, console errors and failed loads."""
    console: list[str] = []
    failed: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "assert") else None)
            page.on("pageerror", lambda exc: console.append(f"uncaught exception: {exc}"))
            page.on("requestfailed", lambda req: failed.append(f"{req.url}: {req.failure}"))
            page.on("response", lambda res: failed.append(f"{res.url}: HTTP {res.status}") if res.status >= 400 else None)
            page.goto(page_path.resolve().as_uri(), wait_until="load", timeout=60_000)
            # videos load their metadata after the load event
            page.wait_for_function(
                "Array.from(document.querySelectorAll('video')).every(v => v.readyState >= 1 || v.error)",
                timeout=60_000,
            )
            seen = page.evaluate(_COLLECT_JS)
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return seen, console, failed


def test_report_renders_in_headless_chromium(report):
    import pandas as pd

    from robo_reward.bench.report import est

    out, info = report
    seen, console, failed = open_in_chromium(out / "index.html", screenshot=os.environ.get("ROBO_REWARD_SCREENSHOT")
                                             and Path(os.environ["ROBO_REWARD_SCREENSHOT"]))

    assert console == [], console
    assert failed == [], failed
    assert seen["title"].startswith("Benchmark report: synth")
    # Markdown inlines are rendered, not shown as punctuation
    assert "**" not in seen["text"] and "*no evidence" not in seen["text"] and "`" not in seen["text"]

    # the final-success table: one row per task × reward, in suite order, with the report's numbers
    table = seen["table"]
    assert table is not None, "no table under the 'Final success rate and ground-truth return' heading"
    assert table["box"]["w"] > 0 and table["box"]["h"] > 0
    assert table["header"][:4] == ["task", "reward", "seeds", "success IQM [95% CI]"]
    assert "r(learned, GT)" in table["header"] and "D(learned, GT)" in table["header"]
    cells = pd.read_csv(out / "cells.csv")
    expected = [[c.task, c.reward, str(c.seeds), est(c.success_iqm, c.success_lo, c.success_hi, 2)]
                for c in cells.itertuples()]
    assert [row[:4] for row in table["rows"]] == expected
    assert [row[:2] for row in table["rows"]] == [["task-a", "env"], ["task-a", "dist"],
                                                  ["task-b", "env"], ["task-b", "dist"]]
    assert table["rows"][0][3].startswith("0.55 [")  # task-a · env: IQM of (0.1, 0.5, 0.6, 0.9)
    r_col, d_col = table["header"].index("r(learned, GT)"), table["header"].index("D(learned, GT)")
    assert table["rows"][1][r_col] == f"{np.mean(PEARSON):.2f}"
    assert table["rows"][1][d_col] == f"{np.mean([np.sqrt((1 - r) / 2) for r in PEARSON]):.2f}"
    assert table["rows"][0][r_col] == table["rows"][0][d_col] == "—"  # the env reward: nothing to compare
    assert seen["tables"] >= 4

    # every figure is an image that decoded and takes up room on the page
    plots = seen["images"] + [{"box": b} for b in seen["svgs"] + seen["canvases"]]
    assert len(seen["images"]) == len(info["figures"]) and len(plots) >= 7
    for img in seen["images"]:
        assert img["complete"] and img["naturalWidth"] > 0 and img["naturalHeight"] > 0, img["alt"]
        assert img["box"]["w"] > 50 and img["box"]["h"] > 50, img
    for plot in plots:
        assert plot["box"]["w"] > 0 and plot["box"]["h"] > 0

    # the evaluation videos were copied next to the page, and the browser can decode them
    assert len(seen["videos"]) == 4
    for v in seen["videos"]:
        assert v["error"] is None and v["readyState"] >= 1 and v["videoWidth"] == 64, v
        assert (out / v["src"]).is_file()

    # every local link (data files, videos) points at a file of the report
    local = [h for h in seen["links"] if "://" not in h and not h.startswith(("#", "data:", "mailto:"))]
    assert {"results.csv", "runs.csv", "cells.csv"} <= set(local)
    missing = [h for h in local if not (out / h).is_file()]
    assert missing == [], missing


def test_the_browser_check_catches_a_broken_page(report):
    """The same check on a page with a script error, a missing image and an undecodable video finds all three."""
    out, _ = report
    page = out / "index.html"
    text = page.read_text()
    (out / "broken.mp4").write_bytes(b"not a video")
    page.write_text(text.replace("</body>", '<img src="figures/missing.png" alt="missing">'
                                            '<video src="broken.mp4" preload="metadata"></video>'
                                            "<script>undefinedFunction();</script></body>"))
    seen, console, failed = open_in_chromium(page)
    assert any("undefinedFunction" in c for c in console), console
    assert any("missing.png" in f for f in failed), failed
    assert any(v["src"] == "broken.mp4" and v["error"] for v in seen["videos"]), seen["videos"]
    assert any(img["alt"] == "missing" and img["naturalWidth"] == 0 for img in seen["images"])
