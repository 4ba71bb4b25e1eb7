"""Profile reports: one data model written as JSON, a self-contained HTML page and a terminal summary.

Other passes add their own part with `ProfileReport.add_section` (a table, an optional bar chart and a
note); every writer renders sections the same way, so e.g. the carbon pass needs no HTML of its own.
The HTML has inline CSS and SVG only (no scripts, no CDN): it opens offline and can be attached to a
bug report.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from effc.compiler.fileio import write_atomic

OP_CLASSES = ("linear", "convolution", "attention", "normalization", "elementwise", "data_movement", "other")
PREDICTED_COLOR, MEASURED_COLOR = "#4c78a8", "#f58518"


@dataclass(frozen=True)
class OpRow:
    """One torch op as `effc-profile` annotated it; `id` is its `effc.op<id>` location tag."""

    id: int
    name: str
    op_class: str
    location: str
    flops: int
    flops_uncounted: int
    bytes: int
    est_time_s: float
    subclass: str | None = None


@dataclass(frozen=True)
class DispatchRow:
    """One IREE dispatch function, per model call: measured time over its launches, the torch ops its
    (first) call site computes, and their roofline estimate times the launches."""

    name: str
    time_s: float
    launches: int
    op_class: str
    root_op: int | None
    op_ids: tuple[int, ...]
    est_time_s: float


@dataclass(frozen=True)
class ClassRow:
    """Predicted and measured time of one op class (measured is None without a measurement)."""

    op_class: str
    est_time_s: float
    measured_s: float | None

    @property
    def ratio(self) -> float | None:
        """measured / predicted: how far from the roofline this class runs."""
        if self.measured_s is None or self.est_time_s <= 0:
            return None
        return self.measured_s / self.est_time_s


@dataclass
class Section:
    """An extra report part: a table, optionally a bar chart (label → value) and a note."""

    title: str
    columns: list[str]
    rows: list[list[Any]]
    note: str = ""
    bars: dict[str, float] | None = None
    unit: str = ""


@dataclass
class ProfileReport:
    """Everything `effc profile` found for one model."""

    model: str
    target: str
    hardware: str
    hardware_name: str
    device: str
    summary: dict[str, Any]
    ops: list[OpRow]
    dispatches: list[DispatchRow] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the compile's: what changed the module profiled, and why
    created: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    def add_section(self, section: Section) -> None:
        """Append a part (e.g. carbon) that JSON, HTML and the terminal summary all render."""
        self.sections.append(section)

    def classes(self) -> list[ClassRow]:
        """Predicted time from the ops, measured time from the dispatches, per op class."""
        predicted = dict.fromkeys(OP_CLASSES, 0.0)
        for op in self.ops:
            predicted[op.op_class] += op.est_time_s
        measured: dict[str, float] | None = None
        if self.dispatches:
            measured = dict.fromkeys(OP_CLASSES, 0.0)
            for dispatch in self.dispatches:
                measured[dispatch.op_class] += dispatch.time_s
        return [ClassRow(c, predicted[c], measured[c] if measured is not None else None) for c in OP_CLASSES]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classes"] = [dataclasses.asdict(row) | {"ratio": row.ratio} for row in self.classes()]
        return data


def write_report(report: ProfileReport, directory: Path, *, top: int = 15) -> tuple[Path, Path]:
    """Write report.json and report.html into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = write_atomic(directory / "report.json", json.dumps(report.to_json(), indent=2) + "\n")
    html_path = write_atomic(directory / "report.html", render_html(report, top=top))
    return json_path, html_path


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if abs(seconds) >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns" if seconds else "0"


def format_count(value: float) -> str:
    for scale, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def format_ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _op_label(report: ProfileReport, op_id: int | None) -> str:
    if op_id is None:
        return "-"
    op = next((o for o in report.ops if o.id == op_id), None)
    return f"op{op_id} {_short(op.name)} @ {op.location}" if op is not None else f"op{op_id}"


def _top_dispatches(report: ProfileReport, top: int) -> list[list[str]]:
    rows = sorted(report.dispatches, key=lambda d: d.time_s, reverse=True)[:top]
    return [
        [
            d.name,
            str(d.launches),
            d.op_class,
            format_time(d.time_s),
            format_time(d.est_time_s),
            format_ratio(d.time_s / d.est_time_s if d.est_time_s > 0 else None),
            _op_label(report, d.root_op),
        ]
        for d in rows
    ]


def _top_ops(report: ProfileReport, top: int) -> list[list[str]]:
    rows = sorted(report.ops, key=lambda o: o.est_time_s, reverse=True)[:top]
    return [
        [
            f"op{o.id}",
            _short(o.name),
            o.op_class + (f" ({o.subclass})" if o.subclass else ""),
            format_count(o.flops),
            format_count(o.bytes),
            format_time(o.est_time_s),
            o.location,
        ]
        for o in rows
    ]


def _short(op_name: str) -> str:
    return op_name.removeprefix("torch.")


DISPATCH_COLUMNS = ["dispatch", "launches", "class", "measured", "predicted", "ratio", "root op"]
OP_COLUMNS = ["op", "name", "class", "FLOPs", "bytes", "predicted", "location"]


def print_summary(report: ProfileReport, console: Console, *, top: int = 10) -> None:
    """Rich tables: time per op class, the slowest dispatches, the costliest ops and extra sections."""
    console.print(f"[bold]{report.model}[/bold] on {report.device} ({report.target}); roofline: {report.hardware_name}")
    console.print(" | ".join(f"{summary_label(k)} {format_value(k, v)}" for k, v in report.summary.items()))
    classes = Table(title="time per op class (per model call)", title_justify="left")
    for column in (
        "class",
        "predicted",
        "measured",
        "measured/predicted",
        "predicted share",
        "measured share",
    ):
        classes.add_column(column, justify="left" if column == "class" else "right")
    rows = report.classes()
    total_est = sum(r.est_time_s for r in rows)
    total_measured = sum(r.measured_s or 0.0 for r in rows)
    for row in rows:
        classes.add_row(
            row.op_class,
            format_time(row.est_time_s),
            format_time(row.measured_s),
            format_ratio(row.ratio),
            f"{row.est_time_s / total_est:.1%}" if total_est else "-",
            f"{(row.measured_s or 0.0) / total_measured:.1%}" if total_measured else "-",
        )
    classes.add_row(
        "[bold]total[/bold]",
        format_time(total_est),
        format_time(total_measured if report.dispatches else None),
        format_ratio(total_measured / total_est if report.dispatches and total_est else None),
        "",
        "",
    )
    console.print(classes)
    if report.dispatches:
        console.print(
            _rich_table(f"top {top} dispatches by measured time", DISPATCH_COLUMNS, _top_dispatches(report, top))
        )
    console.print(_rich_table(f"top {top} ops by predicted time", OP_COLUMNS, _top_ops(report, top)))
    for section in report.sections:
        console.print(_rich_table(section.title, section.columns, [[_cell(v) for v in r] for r in section.rows]))
        if section.note:
            console.print(f"[dim]{section.note}[/dim]")


def _rich_table(title: str, columns: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# ---- HTML -------------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { padding: 3px 10px; border-bottom: 1px solid #eee; } th { text-align: left; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { background: #f6f8fa; padding: .6em 1em; border-radius: 6px; }
.card b { display: block; font-size: 1.3em; } .note { color: #666; } code { font-size: 12px; }
"""


def render_html(report: ProfileReport, *, top: int = 15) -> str:
    """A self-contained page: summary cards, class chart and table, top dispatches and ops, sections."""
    rows = report.classes()
    measured = bool(report.dispatches)
    class_rows = [
        [r.op_class, format_time(r.est_time_s), format_time(r.measured_s), format_ratio(r.ratio)] for r in rows
    ]
    parts = [
        f"<h1>effc profile: {_e(report.model)}</h1>",
        f"<p class='note'>target {_e(report.target)} on {_e(report.device)}; roofline device "
        f"{_e(report.hardware_name)} ({_e(report.hardware)}); {_e(report.created)}</p>",
        _cards(report.summary),
        *([f"<ul class='note'>{''.join(f'<li>{_e(n)}</li>' for n in report.notes)}</ul>"] if report.notes else []),
        "<h2>Time per op class, per model call</h2>",
        _class_chart(rows, measured),
        _html_table(["class", "predicted", "measured", "measured/predicted"], class_rows),
        "<p class='note'>Predicted: effc-profile's roofline per torch op, summed by class. Measured: IREE's "
        "HAL profiler per dispatch; a dispatch counts for the class of its root torch op (most FLOPs, else "
        "longest estimate), so fused elementwise work shows under the op it fused into.</p>",
    ]
    if measured:
        parts += [
            f"<h2>Top {top} dispatches</h2>",
            _html_table(DISPATCH_COLUMNS, _top_dispatches(report, top)),
        ]
    parts += [
        f"<h2>Top {top} torch ops by predicted time</h2>",
        _html_table(OP_COLUMNS, _top_ops(report, top)),
    ]
    for section in report.sections:
        parts.append(f"<h2>{_e(section.title)}</h2>")
        if section.bars:
            parts.append(_bar_chart(section.bars, section.unit))
        parts.append(_html_table(section.columns, [[_cell(v) for v in r] for r in section.rows]))
        if section.note:
            parts.append(f"<p class='note'>{_e(section.note)}</p>")
    body = "\n".join(parts)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>effc profile: {_e(report.model)}</title><style>{_CSS}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _cards(summary: dict[str, Any]) -> str:
    cards = "".join(
        f"<div class='card'>{_e(summary_label(key))}<b>{_e(format_value(key, v))}</b></div>"
        for key, v in summary.items()
    )
    return f"<div class='cards'>{cards}</div>"


def summary_label(key: str) -> str:
    """`wall_time_per_call_s` → `wall time per call`."""
    return key.removesuffix("_s").replace("_", " ")


def format_value(key: str, value: Any) -> str:
    """Summary values by key convention: `*_s` are seconds, other numbers are counts."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_time(value) if key.endswith("_s") else format_count(value)
    return str(value)


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td class='{_num_class(v)}'>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _num_class(value: str) -> str:
    return "num" if value[:1].isdigit() or value == "-" else ""


def _class_chart(rows: list[ClassRow], measured: bool) -> str:
    """Horizontal grouped bars: predicted (blue) and measured (orange) time per class."""
    label_w, bar_w, row_h = 120, 560, 34 if measured else 22
    peak = max([r.est_time_s for r in rows] + [r.measured_s or 0.0 for r in rows]) or 1.0
    height = row_h * len(rows) + 30
    items = []
    for i, row in enumerate(rows):
        y = i * row_h + 4
        items.append(f"<text x='{label_w - 8}' y='{y + 12}' text-anchor='end'>{_e(row.op_class)}</text>")
        bars = [(row.est_time_s, PREDICTED_COLOR)] + ([(row.measured_s or 0.0, MEASURED_COLOR)] if measured else [])
        for j, (value, color) in enumerate(bars):
            width = bar_w * value / peak
            items.append(f"<rect x='{label_w}' y='{y + j * 14}' width='{width:.1f}' height='12' fill='{color}'/>")
            items.append(f"<text x='{label_w + width + 4:.1f}' y='{y + j * 14 + 10}'>{_e(format_time(value))}</text>")
    legend_y = height - 10
    legend = f"<rect x='{label_w}' y='{legend_y - 9}' width='10' height='10' fill='{PREDICTED_COLOR}'/>"
    legend += f"<text x='{label_w + 14}' y='{legend_y}'>predicted (roofline)</text>"
    if measured:
        legend += f"<rect x='{label_w + 170}' y='{legend_y - 9}' width='10' height='10' fill='{MEASURED_COLOR}'/>"
        legend += f"<text x='{label_w + 184}' y='{legend_y}'>measured (IREE)</text>"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + bar_w + 90}' height='{height}' "
        f"font-size='12' role='img' aria-label='time per op class'>{''.join(items)}{legend}</svg>"
    )


def _bar_chart(bars: dict[str, float], unit: str) -> str:
    """One bar per label, for sections."""
    label_w, bar_w, row_h = 160, 500, 20
    peak = max(bars.values(), default=0.0) or 1.0
    items = []
    for i, (label, value) in enumerate(bars.items()):
        y = i * row_h + 4
        width = bar_w * value / peak
        items.append(f"<text x='{label_w - 8}' y='{y + 11}' text-anchor='end'>{_e(label)}</text>")
        items.append(f"<rect x='{label_w}' y='{y}' width='{width:.1f}' height='14' fill='{PREDICTED_COLOR}'/>")
        items.append(f"<text x='{label_w + width + 4:.1f}' y='{y + 11}'>{value:.4g} {_e(unit)}</text>")
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + bar_w + 120}' "
        f"height='{row_h * len(bars) + 8}' font-size='12'>{''.join(items)}</svg>"
    )
