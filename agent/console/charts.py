"""The console's plots: SVG drawn here by pygal (no script, nothing fetched), shown as data: images."""
from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import pygal
from pygal.style import Style

from agent.console.history import Run, Sample

STYLE = Style(background="white", plot_background="white", foreground="#333", foreground_strong="#111",
              foreground_subtle="#bbb", font_family="sans-serif",
              colors=("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"),
              no_data_font_size=18)
WIDTH, HEIGHT = 600, 260
X_LABELS = 6


def _when(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)


def _chart(title: str, y_title: str, y_format=None) -> pygal.DateTimeLine:
    chart = pygal.DateTimeLine(
        title=title, y_title=y_title, style=STYLE, width=WIDTH, height=HEIGHT, js=[], disable_xml_declaration=False,
        show_dots=True, dots_size=2, legend_at_bottom=True, truncate_legend=30, x_label_rotation=20,
        x_value_formatter=lambda moment: moment.strftime("%m-%d %H:%M"), no_data_text="no data yet",
        explicit_size=True, show_minor_x_labels=True)
    if y_format is not None:
        chart.value_formatter = y_format
    return chart


def _add(chart: pygal.DateTimeLine, title: str, values: list[tuple[datetime, float]], **options) -> None:
    """A series with values only (an empty one would draw bare axes instead of 'no data yet'); the x labels
    spread evenly over everything drawn (pygal's own crowd together on long spans)."""
    if not values:
        return
    chart.add(title, values, **options)
    moments = [moment for serie in chart.raw_series for moment, _ in serie[0]]
    first, last = min(moments), max(moments)
    chart.x_labels = [first + (last - first) * index / (X_LABELS - 1) for index in range(X_LABELS)]


def data_uri(chart: pygal.graph.graph.Graph) -> str | None:
    """The chart as an <img> source: an SVG image runs no script and loads nothing (CSP img-src data:);
    None when it has nothing to draw (the page says so in words)."""
    if not chart.raw_series:
        return None
    return "data:image/svg+xml;base64," + base64.b64encode(chart.render()).decode()


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def per_component(runs: Sequence[Run], title: str, y_title: str, value, y_format=None) -> str | None:
    chart = _chart(title, y_title, y_format)
    for component in sorted({run.component for run in runs}):
        _add(chart, component, [(_when(run.finished), value(run)) for run in runs
                                if run.component == component and run.status == "ok"])
    return data_uri(chart)


def backup_sizes(runs: Sequence[Run]) -> str | None:
    return per_component(runs, "Backup size per component", "bytes", lambda run: run.bytes, human)


def backup_durations(runs: Sequence[Run]) -> str | None:
    return per_component(runs, "Backup duration per component", "seconds", lambda run: round(run.seconds, 1))


def _series(samples: Iterable[Sample], field: str) -> list[tuple[datetime, float]]:
    return [(_when(s.at), value) for s in samples if (value := getattr(s, field)) is not None]


def mirror_lag(samples: Sequence[Sample]) -> str | None:
    chart = _chart("Mirror lag, last 24 h", "seconds")
    _add(chart, "lag", _series(samples, "mirror_lag"))
    return data_uri(chart)


def queue_depth(samples: Sequence[Sample]) -> str | None:
    chart = _chart("Queue depth, last 24 h", "messages")
    _add(chart, "waiting", _series(samples, "queue_depth"))
    return data_uri(chart)


def storage_growth(samples: Sequence[Sample], forecast: Sequence[tuple[float, float]]) -> str | None:
    """Bytes in backups, and the fitted line continued until the file system is full (or 30 days)."""
    chart = _chart("Storage used, with forecast", "bytes", human)
    _add(chart, "backups", _series(samples, "storage_bytes"))
    _add(chart, "forecast", [(_when(at), value) for at, value in forecast], stroke_style={"dasharray": "6, 4"})
    return data_uri(chart)
