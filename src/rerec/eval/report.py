"""The evaluation report a reviewer reads in the MLflow UI: ``report.md``, ``report.html`` (figures
embedded, so the page renders as a single artifact) and ``plots/*.png``, from report.json's dict.

Both documents are rendered from one list of blocks, so they always say the same thing:
``("h", level, text)``, ``("p", text)``, ``("ul", [text])``, ``("table", header, rows)``,
``("img", relative_path, caption)``, ``("pre", text)``.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from rerec.data.schema import QUERY_TYPES

TYPE_ORDER = (*QUERY_TYPES, "all")
METRIC_LABELS = {"acc@1": "Acc@1", "parsed": "parse rate", "mrr": "MRR"}


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
    if ci and low is not None and high is not None and not (math.isnan(low) or math.isnan(high)):
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
def _colors(report: dict, names: list[str]) -> list:
    """Baselines in greys, LLMs in colours, so the two kinds read apart at a glance."""
    import matplotlib

    greys = matplotlib.colormaps["Greys"]
    tab = matplotlib.colormaps["tab10"]
    kinds = report.get("kinds", {})
    n_base = sum(kinds.get(m) == "baseline" for m in names)
    out, b, k = [], 0, 0
    for m in names:
        if kinds.get(m) == "baseline":
            out.append(greys(0.3 + 0.4 * b / max(1, n_base - 1)))
            b += 1
        else:
            out.append(tab(k % 10))
            k += 1
    return out


def plot_headline(report: dict, path: Path) -> Path | None:
    """Acc@1 per query type (and over all queries), one bar per model, with 95% intervals."""
    rows = report["table"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    types = _types_present(report)
    names = [m for m in report["models"] if any(r["model"] == m for r in rows)]
    cell = {(r["model"], r["type"]): r for r in rows}
    x = np.arange(len(types))
    width = 0.84 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(types) + 0.35 * len(names) * len(types) / 2), 3.4))
    for j, (m, color) in enumerate(zip(names, _colors(report, names), strict=True)):
        vals, err = [], []
        for t in types:
            r = cell.get((m, t))
            vals.append(r["acc@1"] if r else np.nan)
            err.append([r["acc@1"] - r["acc@1_low"], r["acc@1_high"] - r["acc@1"]] if r else [0.0, 0.0])
        ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, yerr=np.array(err).T.clip(min=0),
               capsize=2, color=color, label=m, error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, [f"{t}\n(n={report['n_queries_by_type'].get(t, report['n_queries'])})" if t != "all"
                      else f"all\n(n={report['n_queries']})" for t in types])
    ax.set_ylim(0, 1)
    ax.set_ylabel("Acc@1")
    ax.set_title(f"Acc@1 by query type ({report['split']} split, 95% intervals)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_paired(report: dict, path: Path) -> Path | None:
    """Each comparison's Acc@1 difference with its 95% interval, overall and per query type; a line at 0."""
    entries = [e for e in report.get("paired", []) if e["by_type"].get("all", {}).get("n")]
    if not entries:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    types = [t for t in TYPE_ORDER[::-1] if any(t in e["by_type"] for e in entries)]
    fig, axes = plt.subplots(1, len(entries), figsize=(3.3 * len(entries) + 0.8, 0.42 * len(types) + 1.1),
                             sharey=True, squeeze=False)
    for ax, e in zip(axes[0], entries, strict=True):
        for y, t in enumerate(types):
            c = e["by_type"].get(t)
            if not c or not c.get("n"):
                continue
            color = "#1f77b4" if c["separated"] else "#7f7f7f"
            ax.errorbar(c["diff"], y, xerr=[[c["diff"] - c["low"]], [c["high"] - c["diff"]]], fmt="o",
                        color=color, capsize=3, markersize=5 if t == "all" else 4)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_title(f"{e['model']} − {e['reference']}", fontsize=9)
        ax.set_xlim(-1, 1)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("Acc@1 difference")
    axes[0][0].set_yticks(range(len(types)), types)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
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
    fig, ax = plt.subplots(figsize=(max(4.0, 1.0 * len(names) + 1.5), 2.8))
    for j, key in enumerate(("mmlu", "ifeval")):
        ax.bar(x + (j - 0.5) * 0.4, [models[m].get(key) or 0.0 for m in names], 0.4,
               label={"mmlu": "MMLU acc.", "ifeval": "IFEval acc."}[key])
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1)
    ax.set_title(f"General-ability retention (reference: {report['retention'].get('base_model')})")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


# ---------------------------------------------------------------- content
def _signed(cell: dict | None, with_n: bool = True) -> str:
    if not cell or not cell.get("n"):
        return "–"
    text = f"{cell['diff']:+.3f} [{cell['low']:+.3f}, {cell['high']:+.3f}]"
    return f"{text} (n={cell['n']})" if with_n else text


def _paired_table(paired: list[dict], types: list[str]) -> tuple:
    """Rows: comparisons; columns: query types. A column whose comparisons share one query count names it
    in its header instead of in every cell (the usual case: every model answered every query)."""
    header, columns = ["model − reference"], []
    for t in types:
        counts = {(e["by_type"].get(t) or {}).get("n") for e in paired}
        shared = len(counts) == 1 and next(iter(counts))
        header.append(f"{t} (n={shared})" if shared else t)
        columns.append((t, not shared))
    rows = [[f"{e['model']} − {e['reference']}", *[_signed(e["by_type"].get(t), with_n) for t, with_n in columns]]
            for e in paired]
    return ("table", header, rows)


def _how_to_read(report: dict) -> list[str]:
    """The short definitions a reader needs, with this report's split, candidate count and top_k."""
    top_k = report.get("top_k", 1)
    n = report.get("n_candidates", {})
    shown = "" if not n else (f"{n['min']}" if n["min"] == n["max"] else f"{n['min']} to {n['max']}")
    read = f"its first {top_k} answer items" if top_k > 1 else "its first answer item only"
    llms = (f"an LLM answering {top_k} items only at K ≤ {top_k}" if top_k > 1 else
            "a top-1 LLM would score its Acc@1 again, so LLMs are left out")
    out = [
        f"**Split**: every figure comes from the **{report['split']}** split; all rows are scored on the same "
        "queries" + (f", each showing {shown} candidates." if shown else "."),
        "**Acc@1** (= Hit@1), the headline: the share of queries whose first recommended item is the positive. "
        f"A baseline recommends its top-ranked candidate; an LLM is scored on {read} (top_k = {top_k}, as in "
        "the reward), so boxing every candidate earns nothing extra, and an item naming no candidate, or no "
        "parsable answer, is a miss.",
        "**NDCG@K** (hits at rank r ≤ K weighted 1 / log2(r + 1), over the ideal), **Recall@K** (positives in "
        f"the first K) and **MRR** (mean 1 / rank of the positive) are shown for rankers whose list reaches "
        f"depth K: the baselines rank every candidate; {llms}."
        + (f" K ≥ {n['min']} (the candidate count) is not reported: a full ranking has Recall@K = 1 there."
           if n else ""),
        "**[low, high]**: 95% percentile bootstrap interval of the mean over queries "
        f"({report.get('config', {}).get('n_boot', 1000)} resamples, seeded).",
        "**Paired difference** A − B: the mean per-query Acc@1 difference on the queries both answered (+1 "
        "where only A is right, −1 where only B is), its interval from resampling those differences within "
        "each query type; *not separated* when the interval holds 0.",
    ]
    base = report.get("base")
    if base:
        out.append(f"**base** is the zero-shot model {base['source']}, without fine-tuning; retention ratios are "
                   "against it. **Parse rate**: the share of an LLM's completions with a parsable boxed answer.")
    out.append("**Query types**: explicit queries can be answered from the shown evidence; implicit, misinformed "
               "and interest-based ones carry the verdict. No baseline reads a query's stored conditions.")
    return out


def build_blocks(report: dict, figures: dict[str, str]) -> list[tuple]:
    """The report's content; ``figures``: name -> path relative to the report folder."""
    ks = report["ks"]
    blocks: list[tuple] = [("h", 1, "ReRec evaluation")]
    by_type = ", ".join(f"{t} {n}" for t, n in report["n_queries_by_type"].items())
    blocks.append(("p", f"Split **{report['split']}**: {report['n_queries']} queries evaluated "
                        f"(of {report['n_queries_split']}; {by_type})."))
    blocks.append(("h", 2, "How to read this"))
    blocks.append(("ul", _how_to_read(report)))
    if report.get("notes"):
        blocks.append(("h", 2, "Notes"))
        blocks.append(("ul", list(report["notes"])))

    types = _types_present(report)
    cell = {(r["model"], r["type"]): r for r in report["table"]}
    blocks.append(("h", 2, "Acc@1 by query type"))
    blocks.append(("p", "Every row on the same queries; mean [95% interval]. Baselines are grey in the figure."))
    rows = []
    for m in report["models"]:  # a model that answered nothing within its budget stays a row, n = 0
        if (report.get("llm") or {}).get(m, {}).get("n_selected", 1) == 0:
            continue  # not asked the queries at all (a base kept for retention only): no row to read
        parsed = cell.get((m, "all"), {}).get("parsed")
        rows.append([m, report["kinds"].get(m, ""), str(cell.get((m, "all"), {}).get("n", 0)),
                     *[_fmt(cell[(m, t)], "acc@1") if (m, t) in cell else "–" for t in types],
                     f"{parsed:.2f}" if report["kinds"].get(m) == "llm" and parsed is not None else "–"])
    blocks.append(("table", ["model", "kind", "n", *types, "parse rate"], rows))
    if "headline" in figures:
        blocks.append(("img", figures["headline"], "Acc@1 by query type with 95% intervals"))

    paired = report.get("paired") or []
    if paired:
        blocks.append(("h", 2, "Paired differences in Acc@1"))
        blocks.append(("p", "Model − reference on the queries both answered, overall and per query type: "
                            "difference [95% interval], n = queries compared."))
        blocks.append(("ul", [e["verdict"] for e in paired]))
        blocks.append(_paired_table(paired, ["all", *[t for t in types if t != "all"]]))
        if "paired" in figures:
            blocks.append(("img", figures["paired"], "Acc@1 differences with 95% intervals (blue: separated from 0)"))

    ranking = report.get("ranking_metrics", [f"{m}@{k}" for k in ks for m in ("ndcg", "recall")])
    if ranking:
        shown = [r for r in report["table"] if r["type"] == "all" and any(m in r for m in ranking)]
        if shown:
            blocks.append(("h", 2, "Ranking metrics (full rankings)"))
            blocks.append(("p", "All queries; rankers whose list reaches each depth (see How to read this)."))
            blocks.append(("table", ["model", "kind", "n", *[_label(m) for m in ranking]],
                           [[r["model"], r["kind"], str(r["n"]), *[_fmt(r, m) if m in r else "–" for m in ranking]]
                            for r in _in_model_order(report, shown)]))

    unseen = report.get("unseen_phrasing") or {}
    if unseen.get("table"):
        blocks.append(("h", 2, "Requests phrased unlike the training templates"))
        blocks.append(("p", f"{unseen['n_queries']} of the evaluated queries asked again in a held-out phrasing "
                            "(casual requests that share no three-word sequence with any training template; "
                            "the same conditions, films, candidates and user). Per LLM: parse rate and Acc@1 "
                            "[95% interval] on them, and on the same queries as generated."))
        rows = [[r["model"], r["type"], str(r["n"]), f"{r['parsed']:.2f}",
                 "–" if r["original_parsed"] is None else f"{r['original_parsed']:.2f}", _fmt(r, "acc@1"),
                 "–" if r["original_acc@1"] is None else f"{r['original_acc@1']:.3f}"]
                for r in sorted(unseen["table"], key=lambda r: (report["models"].index(r["model"])
                                                                if r["model"] in report["models"] else 99,
                                                                r["type"] != "all", r["type"]))]
        blocks.append(("table", ["model", "type", "n", "parse rate", "as generated", "Acc@1", "as generated"], rows))

    if report["by_conditions"]:
        blocks.append(("h", 2, "Acc@1 by number of conditions"))
        counts = sorted({r["n_conditions"] for r in report["by_conditions"]})
        cond = {(r["model"], r["n_conditions"]): r for r in report["by_conditions"]}
        rows = []
        for model in report["models"]:
            rows.append([model, *[f"{cond[(model, c)]['acc@1']:.3f} (n={cond[(model, c)]['n']})"
                                  if (model, c) in cond else "–" for c in counts]])
        blocks.append(("table", ["model", *[f"{c} condition{'s' if c != 1 else ''}" for c in counts]], rows))

    retention = report.get("retention") or {}
    if retention.get("models"):
        blocks.append(("h", 2, "General-ability retention"))
        blocks.append(("p", f"Ratio = model score / score of the zero-shot base model **{retention['base_model']}** "
                            "on the questions both answered. MMLU: zero-shot letter log-likelihood on the dev "
                            "exemplars shipped with lm-eval (public, so a retention probe, not an MMLU result). "
                            "IFEval: programmatic checks of verifiable instructions (strict). Some checks (length "
                            "limits, lowercase, no commas) are met by degenerate text too, so read IFEval against "
                            "the base model, not alone."))

        def ratio(v: Any) -> str:
            return "–" if v is None else f"{v:.2f}"

        rows = [[m, f"{r['mmlu']:.3f} (n={r['mmlu_n']}, chance {r['mmlu_chance']:.2f})", ratio(r.get("mmlu_ratio")),
                 f"{r['ifeval']:.3f} (n={r['ifeval_n']})", ratio(r.get("ifeval_ratio"))]
                for m, r in retention["models"].items() if r]
        blocks.append(("table", ["model", "MMLU", "MMLU ratio", "IFEval", "IFEval ratio"], rows))
        if "retention" in figures:
            blocks.append(("img", figures["retention"], "MMLU and IFEval accuracy"))

    if report.get("llm"):
        blocks.append(("h", 2, "LLM generation"))
        rows = [[m, f"{s['n_generated']}/{s['n_selected']}", str(s.get("n_closed_after_last_row", "–")),
                 str(s["new_tokens"]), f"{s['tokens_per_second']:.1f}", f"{s['seconds']:.0f}",
                 "yes" if s["budget_exhausted"] else "no"] for m, s in report["llm"].items()]
        blocks.append(("table", ["model", "answered", "closed after the last row", "new tokens", "tokens/s",
                                 "seconds (all parts)", "budget ran out"], rows))

    if report.get("traces"):
        blocks.append(("h", 2, "Sample reasoning traces"))
        top_k = report.get("top_k", 1)
        for model, traces in report["traces"].items():
            for which in ("best", "worst"):
                for t in traces.get(which, []):
                    blocks.append(("h", 3, f"{model}: {which} — {t['type']} query {t['query_id']} "
                                           f"(Acc@1 {t['acc@1']:.0f}, parsed {'yes' if t['parsed'] else 'no'})"))
                    extra = (f" (scored: the first {top_k})" if len(t["answered"]) > top_k else "")
                    blocks.append(("p", f"Request: {t['request']}  \nExpected: {'; '.join(t['positives'])}  \n"
                                        f"Answered: {'; '.join(t['answered']) or '(nothing matched)'}{extra}"))
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
    """Escaped text with **bold**, *italic* and Markdown hard breaks turned into HTML."""
    import re

    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped)
    escaped = re.sub(r"(?<![\w*])\*([^*\n]+?)\*(?![\w*])", r"<i>\1</i>", escaped)
    return escaped.replace("  \n", "<br>\n")


def _cell_html(text: object) -> str:
    """A table cell that may wrap between a value and its "[low, high]" interval, never inside it."""
    import re

    return re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", "&nbsp;"), html.escape(str(text)))


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
            rows = "".join("<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            data = base64.b64encode((root / block[1]).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(block[2])}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "pre":
            body.append(f"<pre>{html.escape(block[1])}</pre>")
    style = ("body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:auto;"
             "padding:1em 1.5em;color:#222;line-height:1.45}"
             "h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}"
             "h3{font-size:1em;margin:1.2em 0 .3em}"
             "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #d6d6d6;padding:4px 9px;"
             "font-size:13px;text-align:right;font-variant-numeric:tabular-nums}"
             "th{background:#f2f4f7}tbody tr:nth-child(even){background:#fafafa}"
             "td:first-child,th:first-child{text-align:left;font-weight:600;white-space:nowrap}"
             "li{margin:.25em 0}pre{background:#f6f6f6;padding:.6em;white-space:pre-wrap;font-size:12px}"
             "figure{margin:.8em 0}figcaption{font-size:12px;color:#666}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ReRec evaluation</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(report: dict, out_dir: Path) -> dict[str, Path]:
    """Write ``plots/``, ``report.md`` and ``report.html`` into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    figures: dict[str, str] = {}
    for name, plot in (("headline", plot_headline), ("paired", plot_paired), ("retention", plot_retention)):
        rel = f"plots/{name}.png"
        if plot(report, out_dir / rel) is not None:
            figures[name] = rel
    blocks = build_blocks(report, figures)
    (out_dir / "report.md").write_text(render_markdown(blocks), encoding="utf-8")
    (out_dir / "report.html").write_text(render_html(blocks, out_dir), encoding="utf-8")
    return {"report.md": out_dir / "report.md", "report.html": out_dir / "report.html",
            **{name: out_dir / rel for name, rel in figures.items()}}
