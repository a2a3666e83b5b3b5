"""The report's pages: blocks (summary.summary_blocks) as Markdown or as a self-contained HTML page, and
results/tableN.html, a paper table in the paper's layout."""
from __future__ import annotations

import html
import re

import pandas as pd

from kdstgcn.config.layout import table_path
from kdstgcn.report.caveats import caveat_lines, data_tag
from kdstgcn.report.labels import html_label, paper_label
from kdstgcn.report.tables import TABLE_COLUMNS


def markdown_text(blocks: list[tuple[str, object]]) -> str:
    """Blocks (summary.summary_blocks) as Markdown."""
    lines = []
    for kind, content in blocks:
        if kind == "table":
            lines += ["| " + " | ".join(content.columns) + " |", "|" + "---|" * len(content.columns)]
            lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in content.itertuples(index=False)]
        else:
            lines.append({"h1": "# ", "h2": "## "}.get(kind, "") + str(content))
        lines.append("")
    return "\n".join(lines)


PAGE_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 14px; margin: 1em 1.5em; color: #222; }
h1 { font-size: 1.35em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
p.caveat { background: #fff4e0; border-left: 4px solid #e09000; padding: .4em .8em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; text-align: center; }
td.model { text-align: left; } td.model code { display: block; color: #777; font-size: 11px; }
td.paper { color: #555; } td.diff { color: #777; } td.ours { border-left: 2px solid #999; }
"""


def inline_html(text: str) -> str:
    """Text of a block as HTML: **bold**, `code` and L_NAME subscripts."""
    out = html_label(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def html_page(blocks: list[tuple[str, object]], title: str) -> str:
    """Blocks as a self-contained HTML page (what the Snakemake report shows inline). Kinds as in summary.py: a
    caveat is a highlighted paragraph, html markup written by the caller."""
    parts = []
    for kind, content in blocks:
        if kind == "table":
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in content.columns)
            body = "".join("<tr>" + "".join(f"<td>{inline_html(str(v))}</td>" for v in row) + "</tr>"
                           for row in content.itertuples(index=False))
            parts.append(f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                         "</div>")
        elif kind == "html":
            parts.append(str(content))
        elif kind == "caveat":
            parts.append(f"<p class='caveat'>{inline_html(str(content))}</p>")
        else:
            parts.append(f"<{kind}>{inline_html(str(content))}</{kind}>")
    return (f"<!doctype html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{PAGE_STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


TABLE_TITLES = {
    1: "Parameters, FLOPs and test time", 2: "L_ORD against L_RD(L2) and L_RD(KL)",
    3: "Share of targets the overseen switch took from the teacher", 4: "L_STCD against other distillation losses",
    5: "Ablation of L_STCD", 6: "Distillation hyper-parameters",
    7: "Pruning the teacher with Algorithm 1 against the fixed STCD student",
    8: "Algorithm 1 against the pruning baseline without KD", 9: "Pruning hyper-parameters"}
METRIC_ORDER = ("MAPE", "MAE", "RMSE")
METRIC_LABELS = {"MAPE": "MAPE (%)", "teacher_share_pct": "share from the teacher (%)", "flops": "FLOPs",
                 "test_time_s": "test time (s)", "onnx_test_time_s": "test time, ONNX Runtime (s)"}
ROW_COLUMNS = {"param_pct": ("paper's parameter %", "{:.0f}"), "kept_pct": ("kept % of base", "{:.1f}"),
               "parameters": ("parameters", "{:,.0f}"), "epochs": ("epochs", "{:.0f}")}
CELL_COLUMNS = {"ours": "ours", "paper": "paper", "diff": "diff"}


def number_text(value, signed: bool = False) -> str:
    """A table number as the report pages print it: whole numbers with thousands separators, others with 3
    decimals, very large and small ones in 3 significant digits, '–' when missing."""
    if value is None or pd.isna(value):
        return "–"
    x, sign = float(value), "+" if signed else ""
    if x == 0:
        return "0"
    if abs(x) >= 1e6:
        return f"{x:{sign}#.3g}"
    if abs(x) < 0.1:
        return f"{x:{sign}.3g}"
    if x == round(x):
        return f"{x:{sign},.0f}"
    return f"{x:{sign}.3f}"


def cell_columns(table: pd.DataFrame) -> dict[str, str]:
    """Values shown under each metric: ours, the paper's, the difference and any further numeric columns a table
    adds to the common format (Table 1's ratios to the teacher)."""
    extra = [c for c in table.columns if c not in TABLE_COLUMNS and pd.api.types.is_numeric_dtype(table[c])]
    return CELL_COLUMNS | {c: c.replace("_ratio_to_", " ÷ ").replace("_", " ") for c in extra}


def wide_table_html(sub: pd.DataFrame) -> str:
    """One dataset's rows of a paper table in the paper's layout: a row per model, a column group per metric
    (and horizon) holding ours beside the paper's and the difference."""
    has_horizon = sub["horizon_min"].notna().any()
    metrics = list(dict.fromkeys(sub["metric"]))
    metrics = [m for m in METRIC_ORDER if m in metrics] + [m for m in metrics if m not in METRIC_ORDER]
    horizons = sorted(sub["horizon_min"].dropna().unique()) if has_horizon else [None]
    cells = cell_columns(sub)
    row_cols = [c for c in ROW_COLUMNS if sub[c].notna().any() and c not in metrics]
    keys = ["model", "param_pct"]
    models = sub[keys].drop_duplicates()
    depth = 3 if has_horizon else 2
    head = [f"<th rowspan='{depth}'>model</th>"] + [f"<th rowspan='{depth}'>{ROW_COLUMNS[c][0]}</th>"
                                                     for c in row_cols]
    head += [f"<th colspan='{len(horizons) * len(cells)}'>{html.escape(METRIC_LABELS.get(m, m))}</th>"
             for m in metrics]
    rows = ["<tr>" + "".join(head) + "</tr>"]
    if has_horizon:
        rows.append("<tr>" + "".join(f"<th colspan='{len(cells)}'>{int(h)} min</th>"
                                     for _ in metrics for h in horizons) + "</tr>")
    rows.append("<tr>" + "".join(f"<th>{label}</th>" for _ in metrics for _ in horizons
                                 for label in cells.values()) + "</tr>")
    body = []
    for _, key in models.iterrows():
        mine = sub[(sub["model"] == key["model"]) & ((sub["param_pct"] == key["param_pct"])
                                                      | (sub["param_pct"].isna() & pd.isna(key["param_pct"])))]
        first = mine.iloc[0]
        tds = [f"<td class='model'>{html_label(paper_label(first['model']))} <code>{html.escape(first['model'])}"
               "</code></td>"]
        tds += [f"<td>{'–' if pd.isna(first[c]) else ROW_COLUMNS[c][1].format(first[c])}</td>" for c in row_cols]
        for metric in metrics:
            for h in horizons:
                hit = mine[(mine["metric"] == metric) & ((mine["horizon_min"] == h) if has_horizon else True)]
                r = hit.iloc[0] if len(hit) else pd.Series(dtype=object)
                for col in cells:
                    text = number_text(r.get(col), signed=col == "diff")
                    if col == "ours" and r.get("n_seeds", 1) > 1 and pd.notna(r.get("ours_std")):
                        text += f" ± {number_text(r['ours_std'])}"
                    tds.append(f"<td class='{col}'>{text}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f"<div class='scroll'><table><thead>{''.join(rows)}</thead><tbody>{''.join(body)}</tbody></table></div>")


def table_page(table: pd.DataFrame, number: int, datasets: dict[str, dict], budget: dict) -> str:
    """results/tableN.html: the caveats (`datasets`: rows.dataset_facts, `budget`: rows.budget), then per dataset
    the table in the paper's layout (wide_table_html) and its notes; the CSV and parquet files beside it hold
    every column."""
    title = f"Table {number}: {TABLE_TITLES.get(number, '')}"
    blocks: list[tuple[str, object]] = [("h1", title)] + [("caveat", line) for line in caveat_lines(datasets, budget)]
    for dataset, sub in table.groupby("dataset", sort=False):
        blocks += [("h2", data_tag(dataset, datasets[dataset])),
                   ("html", wide_table_html(sub))]
        notes = list(dict.fromkeys(sub["note"].dropna()))
        extra = [c for c in table.columns if c not in TABLE_COLUMNS and c not in cell_columns(sub)]
        notes += [f"{c}: {', '.join(map(str, sub[c].dropna().unique()))}" for c in extra]
        blocks += [("p", f"Note: {n}") for n in notes]
    blocks.append(("p", f"diff = ours − paper. Every column (spread over seeds, comparisons, notes) is in "
                        f"`{table_path(number, 'csv')}` and `.parquet`."))
    return html_page(blocks, title)
