"""Comparison reports of evaluation runs: markdown + self-contained HTML, bar chart with Wilson
error bars. The entry point is ``eval/report.py``."""

from __future__ import annotations

import base64
import os
import glob
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbr.eval.rollouts.results import format_rate, load_results
from avbr.provenance import describe_commit

@dataclass
class ReportConfig:
    """Options of ``eval/report.py``.

    Attributes:
        runs: run folders (or glob patterns) of ``eval/libero.py``.
        out: output folder for ``report.md``, ``report.html`` and ``success.png``.
        title: report title.
    """

    runs: list[str] = field(default_factory=list)
    out: str = "reports/eval"
    title: str = "AVBR evaluation report"


def expand_runs(patterns: Sequence[str]) -> list[Path]:
    """Folders matching ``patterns`` that hold a ``results.json``, in the given order.

    Raises:
        FileNotFoundError: a pattern matches no run folder.
    """
    runs: list[Path] = []
    for pattern in patterns:
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(pattern)))
        found = [m for m in matches if (m / "results.json").exists()]
        if not found:
            raise FileNotFoundError(f"runs: {pattern!r} matches no folder holding results.json; pass "
                                    f"eval/libero.py output folders")
        runs += [f for f in found if f not in runs]
    return runs


def run_label(results: Mapping[str, Any]) -> str:
    """The encoder label of a run: registry name plus source (``random`` when random-init)."""
    enc = results["config"].get("encoder") or {}
    source = enc.get("source")
    return f"{results['encoder']} ({'random init' if source is None else Path(str(source)).name})"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def differing_config(results: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Config keys (dotted) whose values are not the same in every run -> the per-run values."""
    flat = [_flatten(r["config"]) for r in results]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k, "<unset>") for f in flat] for k in keys
            if len({repr(f.get(k, "<unset>")) for f in flat}) > 1 and k != "out_dir"}


def bar_chart(results: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Grouped bars of suite success per encoder with Wilson 95% error bars, saved as PNG."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    suites = list(dict.fromkeys(r["suite"] for r in results))
    labels = list(dict.fromkeys(run_label(r) for r in results))
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.8 * len(suites) * max(1, len(labels)) / 2), 3.8))
    for j, label in enumerate(labels):
        xs, ys, lo, hi, counts = [], [], [], [], []
        for i, suite in enumerate(suites):
            match = [r for r in results if r["suite"] == suite and run_label(r) == label]
            if not match:
                continue
            s = match[0]["suite_success"]
            xs.append(i - 0.4 + width * (j + 0.5))
            ys.append(100 * s["success_rate"])
            lo.append(100 * max(0.0, s["success_rate"] - s["ci95_low"]))  # >= 0 despite rounding
            hi.append(100 * max(0.0, s["ci95_high"] - s["success_rate"]))
            counts.append(f"{s['successes']}/{s['episodes']}")
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label)
        for bar, text in zip(bars, counts):
            ax.annotate(text, (bar.get_x() + bar.get_width() / 2, 1), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(suites)), suites)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success rate (%)")
    ax.set_title("Success per encoder and suite (error bars: Wilson 95% interval)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _table(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    suites = list(dict.fromkeys(r["suite"] for r in results))
    labels = list(dict.fromkeys(run_label(r) for r in results))
    rows = []
    for label in labels:
        row = [label]
        for suite in suites:
            match = [r for r in results if r["suite"] == suite and run_label(r) == label]
            row.append(f"{format_rate(match[0]['suite_success'])}, seeds {match[0]['seeds']}" if match else "-")
        rows.append(row)
    return ["encoder", *suites], rows


def _videos(results: Mapping[str, Any]) -> list[str]:
    return [e["video"] for e in results["episodes"] if e.get("video")]


def build_report(cfg: ReportConfig) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``success.png`` into ``cfg.out``; returns their paths."""
    runs = expand_runs(cfg.runs)
    results = [load_results(r) for r in runs]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chart = bar_chart(results, out / "success.png")
    header, rows = _table(results)
    diff = differing_config(results)
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731 - links relative to the report

    md = [f"# {cfg.title}", "",
          "Success rate per encoder and suite: rate, [Wilson 95% interval], (successes/episodes), seeds. "
          "Policy heads are selected on held-out demo loss, never on these rollouts.", "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", f"![success per encoder and suite]({rel(chart)})", "", "## Runs", ""]
    for run, res in zip(runs, results):
        md.append(f"- **{run_label(res)} / {res['suite']}** (`{rel(run)}`, code {describe_commit(res['provenance'])}): "
                  f"{format_rate(res['suite_success'])}")
        md += [f"  - [{name}]({rel(run / 'videos' / name)})" for name in _videos(res)]
    md += ["", "## Config keys that differ between runs", ""]
    if diff:
        md += ["| key | " + " | ".join(run.name for run in runs) + " |",
               "|---|" + "---|" * len(runs)]
        md += [f"| `{k}` | " + " | ".join(f"`{v}`" for v in vals) + " |" for k, vals in diff.items()]
    else:
        md.append("None: the runs share every setting.")
    (out / "report.md").write_text("\n".join(md) + "\n")

    png = base64.b64encode(chart.read_bytes()).decode()
    esc = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(cfg.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;font-size:13px}code{font-size:12px}</style></head><body>",
             f"<h1>{esc(cfg.title)}</h1>",
             "<p>Success rate per encoder and suite: rate, [Wilson 95% interval], (successes/episodes), seeds. "
             "Policy heads are selected on held-out demo loss, never on these rollouts.</p><table><tr>"
             + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
    parts += [f"</table><p><img alt='success chart' src='data:image/png;base64,{png}'></p><h2>Runs</h2><ul>"]
    for run, res in zip(runs, results):
        links = "".join(f"<li><a href='{esc(rel(run / 'videos' / name))}'>{esc(name)}</a></li>"
                        for name in _videos(res))
        parts.append(f"<li><b>{esc(run_label(res))} / {esc(res['suite'])}</b> (<code>{esc(rel(run))}</code>): "
                     f"{esc(format_rate(res['suite_success']))}<ul>{links}</ul></li>")
    parts.append("</ul><h2>Config keys that differ between runs</h2>")
    if diff:
        parts.append("<table><tr><th>key</th>" + "".join(f"<th>{esc(run.name)}</th>" for run in runs) + "</tr>")
        parts += ["<tr><td><code>" + esc(k) + "</code></td>" + "".join(f"<td><code>{esc(str(v))}</code></td>" for v in vals)
                  + "</tr>" for k, vals in diff.items()]
        parts.append("</table>")
    else:
        parts.append("<p>None: the runs share every setting.</p>")
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts))
    return {"markdown": out / "report.md", "html": out / "report.html", "chart": chart}

