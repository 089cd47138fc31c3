"""Comparison reports of evaluation runs: fair tables, paired tests, bars with n and intervals.

The entry point is ``eval/report.py``. Runs are grouped by suite; within a suite they share one
table only when they share every key of :func:`comparability` (tasks, demo files by sha256,
episodes per task, seeds, camera size, episode protocol). Otherwise :func:`build_report` refuses,
naming the differing keys; ``allow_unequal=true`` builds the report anyway with the differences
printed above the tables. Each suite gets a per-task table (rate, Wilson 95% interval, counts),
the suite row (all episodes pooled, Wilson 95% interval), and a paired comparison of every two
runs over their shared episodes (:mod:`avbr.eval.reporting.paired`).
"""

from __future__ import annotations

import base64
import glob
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbr.eval.reporting.paired import compare_paired
from avbr.cli import UserError
from avbr.eval.rollouts.results import format_rate, load_results
from avbr.provenance import describe_commit

#: Episode-protocol fields of the suite config that must match between compared runs.
PROTOCOL_KEYS = ("num_settle_steps", "settle_action", "max_steps", "init_state_offset", "control_freq",
                 "flip_images")
#: Runs of one table must agree on all of these (see :func:`comparability`).
COMPARABILITY_KEYS = ("suite", "tasks", "demos", "episodes_per_task", "seeds", "camera_size", "protocol")
#: Bars over fewer episodes than this are hatched (their interval is wide).
SMALL_N = 20


class IncomparableRunsError(UserError, ValueError):
    """Runs of one suite differ in a key that makes their numbers incomparable."""


@dataclass
class ReportConfig:
    """Options of ``eval/report.py``.

    Attributes:
        runs: run folders (or glob patterns) of ``eval/libero.py``.
        out: output folder for ``report.md``, ``report.html`` and ``success.png``.
        title: report title.
        allow_unequal: put runs that differ in a comparability key into one table anyway; the
            differences are printed above the tables.
        bootstrap_samples: replicates of the paired bootstrap interval.
    """

    runs: list[str] = field(default_factory=list)
    out: str = "reports/eval"
    title: str = "AVBR evaluation report"
    allow_unequal: bool = False
    bootstrap_samples: int = 10_000


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


def is_random_init(results: Mapping[str, Any]) -> bool:
    """Whether the run's encoder had random weights (``encoder_source``, else the config's source)."""
    if "encoder_source" in results:
        return bool(results["encoder_source"].get("random_init"))
    source = (results["config"].get("encoder") or {}).get("source")
    return source is None or source == "random"


def _source_name(source: str) -> str:
    parts = Path(source).parts
    # `<run>/encoder` (what pretraining exports) is named by its run folder.
    return "/".join(parts[-2:]) if len(parts) >= 2 and parts[-1] == "encoder" else (parts[-1] if parts else source)


def run_label(results: Mapping[str, Any]) -> str:
    """The encoder label of a run: registry name plus weights (``random init`` when random)."""
    if is_random_init(results):
        return f"{results['encoder']} (random init)"
    source = (results.get("encoder_source") or {}).get("source") or (results["config"].get("encoder") or {}).get("source")
    return f"{results['encoder']} ({_source_name(str(source))})"


def unique_labels(runs: Sequence[Path], results: Sequence[Mapping[str, Any]]) -> list[str]:
    """:func:`run_label` per run, unique within each suite: duplicates get their run folder's
    name, then a counter (one encoder evaluated on two suites keeps one label)."""
    keys = [(r["suite"], run_label(r)) for r in results]
    keys = [(suite, f"{lab} [{run.name}]" if keys.count((suite, lab)) > 1 else lab)
            for (suite, lab), run in zip(keys, runs)]
    seen: dict[tuple[str, str], int] = {}
    out = []
    for key in keys:
        seen[key] = seen.get(key, 0) + 1
        out.append(key[1] if keys.count(key) == 1 else f"{key[1]} #{seen[key]}")
    return out


def comparability(results: Mapping[str, Any]) -> dict[str, Any]:
    """The values that must be equal for two runs to share a table (:data:`COMPARABILITY_KEYS`)."""
    cfg = results["config"]
    suite = cfg.get("suite") or {}
    demos = results.get("demo_files")
    return {
        "suite": results["suite"],
        "tasks": sorted(t["task_id"] for t in results["per_task"]),
        "demos": ({t: d["sha256"] for t, d in sorted(demos.items())} if demos else "<not recorded>"),
        "episodes_per_task": cfg.get("episodes_per_task", "<not recorded>"),
        "seeds": sorted(results["seeds"]),
        "camera_size": suite.get("camera_size", "<not recorded>"),
        "protocol": {k: suite.get(k, "<not recorded>") for k in PROTOCOL_KEYS},
    }


def comparability_differences(results: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Comparability keys whose values differ between ``results`` -> the per-run values."""
    keys = [comparability(r) for r in results]
    return {k: [c[k] for c in keys] for k in COMPARABILITY_KEYS if len({repr(c[k]) for c in keys}) > 1}


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


@dataclass
class SuiteGroup:
    """The runs of one suite: their folders, results, unique labels and differences."""

    suite: str
    runs: list[Path]
    results: list[Mapping[str, Any]]
    labels: list[str]
    differences: dict[str, list[Any]]


def group_runs(runs: Sequence[Path], results: Sequence[Mapping[str, Any]], allow_unequal: bool) -> list[SuiteGroup]:
    """Group runs by suite and check each group's comparability.

    Raises:
        IncomparableRunsError: a group differs in a comparability key and not ``allow_unequal``.
    """
    labels = unique_labels(runs, results)
    groups = []
    for suite in dict.fromkeys(r["suite"] for r in results):
        idx = [i for i, r in enumerate(results) if r["suite"] == suite]
        diff = comparability_differences([results[i] for i in idx])
        if diff and not allow_unequal:
            lines = "\n".join(f"  {k}: " + "; ".join(f"{labels[i]} = {v!r}" for i, v in zip(idx, vals))
                              for k, vals in diff.items())
            raise IncomparableRunsError(
                f"{suite}: runs differ in {', '.join(diff)}, so their success rates are not comparable:\n{lines}\n"
                f"Re-run them under the same settings, or pass allow_unequal=true to report them anyway (the "
                f"differences are then printed above the tables).")
        groups.append(SuiteGroup(suite, [runs[i] for i in idx], [results[i] for i in idx], [labels[i] for i in idx],
                                 diff))
    return groups


def bar_chart(groups: Sequence[SuiteGroup], path: Path) -> Path:
    """Suite success per run, one panel per suite: Wilson 95% error bars, ``s/n`` and the interval
    written on every bar; bars over fewer than :data:`SMALL_N` episodes are hatched."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    width = max(max(len(g.runs) for g in groups), 1)
    fig, axes = plt.subplots(1, len(groups), figsize=(max(4.5, 1.5 * width) * len(groups), 4.2), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for x, (label, res) in enumerate(zip(group.labels, group.results)):
            s = res["suite_success"]
            y, lo, hi = 100 * s["success_rate"], 100 * s["ci95_low"], 100 * s["ci95_high"]
            small = s["episodes"] < SMALL_N
            ax.bar(x, y, 0.7, yerr=[[max(0.0, y - lo)], [max(0.0, hi - y)]], capsize=4,
                   color="#f2b8b8" if is_random_init(res) else "#8fb4d9", edgecolor="#333",
                   hatch="//" if small else None)
            ax.annotate(f"{s['successes']}/{s['episodes']}\n[{lo:.0f}, {hi:.0f}]", (x, hi + 1), ha="center",
                        va="bottom", fontsize=7)
        ax.set_xticks(range(len(group.labels)), group.labels, rotation=20, ha="right", fontsize=7)
        ax.set_xlim(-0.8, max(len(group.labels), 2) - 0.2)
        ax.set_ylim(0, 118)
        ax.set_ylabel("success rate (%)")
        ax.set_title(f"{group.suite}", fontsize=9)
    fig.suptitle(f"Success with Wilson 95% intervals (s/n on bars; hatched: n < {SMALL_N}; red: random init)",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def task_table(group: SuiteGroup) -> tuple[list[str], list[list[str]]]:
    """Per-task rows (rate, interval, counts per run) and the suite row (pooled, Wilson 95%)."""
    tasks: dict[int, str] = {}
    for res in group.results:
        for t in res["per_task"]:
            tasks.setdefault(t["task_id"], t["language"])
    rows = []
    for task_id, language in sorted(tasks.items()):
        row = [f"{task_id}: {language}"]
        for res in group.results:
            match = [t for t in res["per_task"] if t["task_id"] == task_id]
            row.append(format_rate(match[0]) if match else "-")
        rows.append(row)
    rows.append(["**suite** (all episodes)"] + [f"**{format_rate(r['suite_success'])}**" for r in group.results])
    rows.append(["crashed (not counted)"] + [str(r["suite_success"].get("crashed", 0)) for r in group.results])
    return ["task", *group.labels], rows


def paired_rows(group: SuiteGroup, samples: int) -> tuple[list[str], list[list[str]]]:
    """One row per pair of runs: shared episodes, discordant counts, difference, interval, p."""
    header = ["A", "B", "pairs", "A only", "B only", "A - B (pp)", "paired bootstrap 95% CI (pp)", "McNemar exact p"]
    rows = []
    for i in range(len(group.results)):
        for j in range(i + 1, len(group.results)):
            try:
                c = compare_paired(group.results[i]["episodes"], group.results[j]["episodes"], samples)
            except ValueError as exc:
                rows.append([group.labels[i], group.labels[j], "0", "", "", "", str(exc), ""])
                continue
            rows.append([group.labels[i], group.labels[j], str(c.pairs), str(c.a_only), str(c.b_only),
                         f"{100 * c.difference:+.1f}", f"[{100 * c.ci95_low:+.1f}, {100 * c.ci95_high:+.1f}]",
                         f"{c.mcnemar_p:.3g}"])
    return header, rows


def _videos(results: Mapping[str, Any]) -> list[str]:
    return [e["video"] for e in results["episodes"] if e.get("video")]


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    return ("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{esc(c.replace('**', ''))}</td>" for c in r) + "</tr>" for r in rows)
            + "</table>")


def _differences_text(group: SuiteGroup) -> list[str]:
    return [f"- `{k}`: " + "; ".join(f"{lab} = `{v!r}`" for lab, v in zip(group.labels, vals))
            for k, vals in group.differences.items()]


def build_report(cfg: ReportConfig) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``success.png`` into ``cfg.out``; returns their paths.

    Raises:
        IncomparableRunsError: runs of a suite differ in a comparability key (see
            :func:`group_runs`) and not ``cfg.allow_unequal``.
    """
    runs = expand_runs(cfg.runs)
    results = [load_results(r) for r in runs]
    groups = group_runs(runs, results, cfg.allow_unequal)
    labels = {run: lab for g in groups for run, lab in zip(g.runs, g.labels)}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    chart = bar_chart(groups, out / "success.png")
    diff = differing_config(results)
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731 - links relative to the report
    intro = ("Success per task and suite: rate, [Wilson 95% interval], (successes/episodes); crashed episodes "
             "(infrastructure) are not counted. Policy heads are selected on held-out demo loss, never on these "
             "rollouts. Paired comparisons match episodes by (seed, task, init state).")

    md = [f"# {cfg.title}", "", intro, ""]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(cfg.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:4px 8px;font-size:13px}code{font-size:12px}"
             ".warn{background:#fff3cd;padding:6px}</style></head><body>",
             f"<h1>{html.escape(cfg.title)}</h1><p>{html.escape(intro)}</p>"]
    for group in groups:
        md += [f"## {group.suite}", ""]
        parts.append(f"<h2>{html.escape(group.suite)}</h2>")
        if group.differences:
            warn = (f"**Not comparable (allow_unequal=true): these runs differ in {', '.join(group.differences)}.**")
            md += [warn, "", *_differences_text(group), ""]
            parts.append(f"<div class='warn'><p>{html.escape(warn.replace('**', ''))}</p><ul>"
                         + "".join(f"<li>{html.escape(t[2:])}</li>" for t in _differences_text(group)) + "</ul></div>")
            print(f"[report] {warn.replace('**', '')}\n" + "\n".join(_differences_text(group)), flush=True)
        random = [lab for lab, r in zip(group.labels, group.results) if is_random_init(r)]
        if random:
            note = f"Random-init encoders (controls, no pretrained weights): {', '.join(random)}."
            md += [note, ""]
            parts.append(f"<p><b>{html.escape(note)}</b></p>")
        header, rows = task_table(group)
        md += _md_table(header, rows) + [""]
        parts.append(_html_table(header, rows))
        if len(group.results) > 1:
            header, rows = paired_rows(group, cfg.bootstrap_samples)
            md += ["Paired comparisons (same episodes; difference in percentage points):", ""]
            md += _md_table(header, rows) + [""]
            parts.append("<p>Paired comparisons (same episodes; difference in percentage points):</p>"
                         + _html_table(header, rows))
    md += [f"![success per run and suite]({rel(chart)})", "", "## Runs", ""]
    png = base64.b64encode(chart.read_bytes()).decode()
    parts.append(f"<p><img alt='success chart' src='data:image/png;base64,{png}'></p><h2>Runs</h2><ul>")
    for run, res in zip(runs, results):
        md.append(f"- **{labels[run]} / {res['suite']}** (`{rel(run)}`, code {describe_commit(res['provenance'])}): "
                  f"{format_rate(res['suite_success'])}")
        md += [f"  - [{name}]({rel(run / 'videos' / name)})" for name in _videos(res)]
        links = "".join(f"<li><a href='{html.escape(rel(run / 'videos' / name))}'>{html.escape(name)}</a></li>"
                        for name in _videos(res))
        parts.append(f"<li><b>{html.escape(labels[run])} / {html.escape(res['suite'])}</b> "
                     f"(<code>{html.escape(rel(run))}</code>): {html.escape(format_rate(res['suite_success']))}"
                     f"<ul>{links}</ul></li>")
    md += ["", "## Config keys that differ between runs", ""]
    parts.append("</ul><h2>Config keys that differ between runs</h2>")
    if diff:
        names = [labels[run] for run in runs]
        md += _md_table(["key", *names], [[f"`{k}`", *(f"`{v}`" for v in vals)] for k, vals in diff.items()])
        parts.append(_html_table(["key", *names], [[k, *(str(v) for v in vals)] for k, vals in diff.items()]))
    else:
        md.append("None: the runs share every setting.")
        parts.append("<p>None: the runs share every setting.</p>")
    parts.append("</body></html>")
    (out / "report.md").write_text("\n".join(md) + "\n")
    (out / "report.html").write_text("\n".join(parts))
    return {"markdown": out / "report.md", "html": out / "report.html", "chart": chart}
