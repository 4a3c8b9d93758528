"""The evaluation report a reviewer reads in the MLflow UI: ``report.md``, ``report.html`` (figures
embedded, so the page renders as a single artifact) and ``plots/*.png``, from report.json's dict.

Both documents are rendered from one list of blocks, so they always say the same thing:
``("h", level, text)``, ``("p", text)``, ``("ul", [text])``, ``("table", header, rows)``,
``("img", relative_path, caption)``, ``("pre", text)``.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from rerec.data.schema import QUERY_TYPES
from rerec.eval.metrics import metric_names

TYPE_ORDER = (*QUERY_TYPES, "all")
METRIC_LABELS = {"acc@1": "Acc@1", "parsed": "parse rate"}


def _label(metric: str) -> str:
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    name, k = metric.split("@")
    return {"ndcg": "NDCG", "recall": "Recall"}[name] + f"@{k}"


def _fmt(row: dict, metric: str, ci: bool = True) -> str:
    value = row.get(metric)
    if value is None:
        return "–"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if ci and low is not None and high is not None and high > low:
        return f"{value:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}"


def _in_model_order(report: dict, rows: list[dict]) -> list[dict]:
    """Baselines first, then the LLMs, in the order they were evaluated."""
    order = {m: i for i, m in enumerate(report["models"])}
    return sorted(rows, key=lambda r: order.get(r["model"], len(order)))


def _types_present(report: dict) -> list[str]:
    present = {r["type"] for r in report["table"]}
    return [t for t in TYPE_ORDER if t in present] + sorted(present - set(TYPE_ORDER))


# ---------------------------------------------------------------- figures
def plot_type(report: dict, query_type: str, path: Path) -> Path:
    """Bars of Acc@1 and NDCG@K (largest K) per model for one query type, with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = _in_model_order(report, [r for r in report["table"] if r["type"] == query_type])
    metrics = ["acc@1", f"ndcg@{max(report['ks'])}"]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1), 3.2))
    width = 0.8 / len(metrics)
    for j, m in enumerate(metrics):
        values = np.array([r[m] for r in rows])
        err = np.array([[r[m] - r[f"{m}_low"], r[f"{m}_high"] - r[m]] for r in rows]).T.clip(min=0)
        ax.bar(x + (j - (len(metrics) - 1) / 2) * width, values, width, yerr=err, capsize=3, label=_label(m))
    ax.set_xticks(x, [r["model"] for r in rows], rotation=30, ha="right")
    ax.set_ylim(0, 1)
    n = rows[0]["n"] if rows else 0
    ax.set_title(f"{query_type} queries (n={n})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_retention(report: dict, path: Path) -> Path | None:
    """MMLU and IFEval accuracy per LLM (the base model's bars are the reference)."""
    models = report.get("retention", {}).get("models", {})
    if not models:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(models)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(names) + 1), 3.2))
    for j, key in enumerate(("mmlu", "ifeval")):
        ax.bar(x + (j - 0.5) * 0.4, [models[m].get(key) or 0.0 for m in names], 0.4,
               label={"mmlu": "MMLU acc.", "ifeval": "IFEval acc."}[key])
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title(f"General-ability retention (base: {report['retention'].get('base_model')})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


# ---------------------------------------------------------------- content
def build_blocks(report: dict, figures: dict[str, str]) -> list[tuple]:
    """The report's content; ``figures``: name -> path relative to the report folder."""
    ks = report["ks"]
    names = metric_names(ks)
    blocks: list[tuple] = [("h", 1, "ReRec evaluation")]
    by_type = ", ".join(f"{t} {n}" for t, n in report["n_queries_by_type"].items())
    blocks.append(("p", f"Split **{report['split']}**: {report['n_queries']} queries evaluated "
                        f"(of {report['n_queries_split']}; {by_type}). Metrics are means over queries with 95% "
                        f"bootstrap intervals. An LLM's ranked list is the items it answered, in its order; "
                        f"baselines rank all candidates. No baseline reads a query's stored conditions. "
                        f"Explicit queries can be answered by checking the shown evidence; implicit, misinformed "
                        f"and interest-based queries carry the verdict."))
    if report.get("notes"):
        blocks.append(("ul", list(report["notes"])))

    blocks.append(("h", 2, "Recommendation benchmark by query type"))
    header = ["model", "kind", "n", *[_label(m) for m in names]]
    for t in _types_present(report):
        blocks.append(("h", 3, f"{t} queries"))
        rows = _in_model_order(report, [r for r in report["table"] if r["type"] == t])
        blocks.append(("table", header, [[r["model"], r["kind"], str(r["n"]),
                                          *[_fmt(r, m, ci=m != "parsed") for m in names]] for r in rows]))
        if f"type_{t}" in figures:
            blocks.append(("img", figures[f"type_{t}"], f"Acc@1 and NDCG@{max(ks)} on {t} queries"))

    if report["by_conditions"]:
        blocks.append(("h", 2, "Acc@1 by number of conditions"))
        counts = sorted({r["n_conditions"] for r in report["by_conditions"]})
        cell = {(r["model"], r["n_conditions"]): r for r in report["by_conditions"]}
        rows = []
        for model in report["models"]:
            rows.append([model, *[f"{cell[(model, c)]['acc@1']:.3f} (n={cell[(model, c)]['n']})"
                                  if (model, c) in cell else "–" for c in counts]])
        blocks.append(("table", ["model", *[f"{c} condition{'s' if c != 1 else ''}" for c in counts]], rows))

    if report.get("llm"):
        blocks.append(("h", 2, "LLM generation"))
        rows = [[m, f"{s['n_generated']}/{s['n_selected']}", str(s["new_tokens"]), f"{s['tokens_per_second']:.1f}",
                 f"{s['seconds']:.0f}", "yes" if s["budget_exhausted"] else "no"] for m, s in report["llm"].items()]
        blocks.append(("table", ["model", "answered", "new tokens", "tokens/s", "seconds (all parts)",
                                 "budget ran out"], rows))

    retention = report.get("retention") or {}
    if retention.get("models"):
        blocks.append(("h", 2, "General-ability retention"))
        blocks.append(("p", f"Ratio = model score / score of the base model **{retention['base_model']}**. "
                            "MMLU: zero-shot letter log-likelihood on the dev exemplars shipped with lm-eval "
                            "(public, so a retention probe, not an MMLU result). IFEval: programmatic checks of "
                            "verifiable instructions (strict). Some checks (length limits, lowercase, no commas) are "
                            "met by degenerate text too, so read IFEval against the base model, not alone."))

        def ratio(v: Any) -> str:
            return "–" if v is None else f"{v:.2f}"

        rows = [[m, f"{r['mmlu']:.3f} (n={r['mmlu_n']}, chance {r['mmlu_chance']:.2f})", ratio(r.get("mmlu_ratio")),
                 f"{r['ifeval']:.3f} (n={r['ifeval_n']})", ratio(r.get("ifeval_ratio"))]
                for m, r in retention["models"].items() if r]
        blocks.append(("table", ["model", "MMLU", "MMLU ratio", "IFEval", "IFEval ratio"], rows))
        if "retention" in figures:
            blocks.append(("img", figures["retention"], "MMLU and IFEval accuracy"))

    if report.get("traces"):
        blocks.append(("h", 2, "Sample reasoning traces"))
        for model, traces in report["traces"].items():
            for which in ("best", "worst"):
                for t in traces.get(which, []):
                    blocks.append(("h", 3, f"{model}: {which} — {t['type']} query {t['query_id']} "
                                           f"(Acc@1 {t['acc@1']:.0f}, parsed {'yes' if t['parsed'] else 'no'})"))
                    blocks.append(("p", f"Request: {t['request']}  \nExpected: {'; '.join(t['positives'])}  \n"
                                        f"Answered: {'; '.join(t['answered']) or '(nothing matched)'}"))
                    blocks.append(("pre", t["completion"] or "(empty)"))
    return blocks


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
        elif kind == "pre":
            out.append("```text\n" + block[1].replace("```", "'''") + "\n```")
    return "\n\n".join(out) + "\n"


def _inline(text: str) -> str:
    """Escaped text with **bold** and Markdown hard breaks turned into HTML."""
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    return escaped.replace("  \n", "<br>\n")


def render_html(blocks: list[tuple], root: Path) -> str:
    """``root``: the report folder, where image paths are resolved to embed them as data URIs."""
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
        elif kind == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((root / block[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "font-size:13px;text-align:right}td:first-child,th:first-child{text-align:left}"
             "pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ReRec evaluation</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``plots/``, ``report.md`` and ``report.html`` into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    figures: dict[str, str] = {}
    for t in _types_present(report):
        rel = f"plots/type_{t}.png"
        plot_type(report, t, out_dir / rel)
        figures[f"type_{t}"] = rel
    if plot_retention(report, out_dir / "plots" / "retention.png") is not None:
        figures["retention"] = "plots/retention.png"
    blocks = build_blocks(report, figures)
    (out_dir / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(blocks, out_dir), encoding="utf-8")
    return {"report.md": out_dir / "report.md", "report.html": out_dir / "report.html",
            **{name: out_dir / rel for name, rel in figures.items()}}
