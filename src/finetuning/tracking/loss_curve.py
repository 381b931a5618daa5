"""`loss_curve.svg`: train/eval loss and learning rate against the optimizer step, written as SVG text by hand.

Why not matplotlib: importing and rendering it cost ~0.7 s of every run (of 8.7 s for a repeat run of a cached
dataset) for one picture. A few polylines need no dependency, open in any browser and in summary.md, and tests can
read their points back. Each series is one `<polyline data-series="KEY">` (KEY: the metric's name in the records).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

from .metrics_file import metric_series, read_metrics

LOSS_CURVE_FILE = "loss_curve.svg"

WIDTH, HEIGHT = 1080, 600  # the loss panel alone; the margins panel adds MARGINS_EXTRA
MARGINS_EXTRA, MARGINS_PANEL, PANEL_GAP = 180, 150, 25
LEFT, RIGHT, TOP, BOTTOM = 80, 90, 50, 60  # room around the plot area for titles, ticks and axis labels
BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#7f7f7f"  # matplotlib's tab:blue, tab:orange, tab:gray
MARKERS_UP_TO = 50  # series this short get a marker on every point, so that a single logged step still shows
LOSSES = (("loss", "train loss", BLUE), ("eval_loss", "eval loss", ORANGE))
MARGINS = (("rewards/margins", "rewards/margins", BLUE), ("eval_rewards/margins", "eval rewards/margins", ORANGE))


def plot_losses(metrics_jsonl: Path, svg: Path, title: str | None = None) -> Path:
    """Plot train/eval loss and the learning rate of a metrics.jsonl into `svg`; returns `svg`."""
    return plot_records(read_metrics(metrics_jsonl), svg, title or curve_title(Path(metrics_jsonl).parent))


def curve_title(output_dir: Path) -> str:
    """The run's directory names the picture: several runs' curves open side by side stay told apart."""
    return f"{output_dir.name}: loss and learning rate"


def plot_records(records: list[dict], svg: Path, title: str = "loss and learning rate") -> Path:
    """Loss curve of log records (metrics.jsonl lines or `trainer.state.log_history`) into `svg`; returns `svg`.

    Written to a temporary file first and renamed, so that a reader never sees half a picture."""
    svg = Path(svg)
    svg.parent.mkdir(parents=True, exist_ok=True)
    partial = svg.with_name(svg.name + ".partial")
    partial.write_text(render_svg(records, title), encoding="utf-8")
    partial.replace(svg)
    return svg


@dataclass
class Axis:
    """A value range laid onto a pixel range, with its tick values. For y, `end` < `start`: SVG's y grows down."""

    low: float
    high: float
    ticks: list[float]
    start: float
    end: float

    def at(self, value: float) -> float:
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    @property
    def scientific(self) -> bool:
        """Tick labels as 1e-4 when the numbers are small or large (learning rates), as matplotlib's scilimits."""
        biggest = max(abs(tick) for tick in self.ticks)
        return biggest < 1e-2 or biggest >= 1e4


def _finite_series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """`metric_series` without nan/inf: a diverged step would stretch the axis to infinity (or out of SVG)."""
    pairs = [(step, value) for step, value in zip(*metric_series(records, key), strict=True) if math.isfinite(value)]
    return [step for step, _ in pairs], [value for _, value in pairs]


def _nice_step(span: float, count: int = 5, integer: bool = False) -> float:
    """The distance of round ticks, 1, 2, 2.5 or 5 × 10^k, that cut `span` into about `count` intervals."""
    raw = max(span / count, 1.0) if integer else span / count
    magnitude = 10.0 ** math.floor(math.log10(raw))
    steps = [factor * magnitude for factor in (1, 2, 2.5, 5, 10)]
    return next(step for step in steps if step >= raw * (1 - 1e-9) and not (integer and step % 1))


def _axis(values: list[float], start: float, end: float, integer: bool = False, widen: float = 0.0) -> Axis:
    """The range of `values` (`widen` more on each side), padded by 5% as matplotlib's margins are, so that no point
    sits on the frame, with round ticks inside it."""
    low, high = (min(values) - widen, max(values) + widen) if values else (0.0, 1.0)
    if high == low:  # one value: a band around it rather than a range of width zero
        low, high = low - (abs(low) * 0.1 or 1.0), high + (abs(high) * 0.1 or 1.0)
    step, pad = _nice_step(high - low, integer=integer), (high - low) * 0.05
    low, high = low - pad, high + pad
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    # through text, so that 3 * 0.1 is labelled 0.3, not 0.30000000000000004
    ticks = [float(f"{index * step:.12g}") for index in range(first, last + 1)]
    return Axis(low, high, ticks, start, end)


def _tick_label(value: float, scientific: bool = False) -> str:
    if value == 0:
        return "0"
    if scientific:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{value:.6g}"


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = 12, extra: str = "") -> str:
    """One `<text>`; `content` is escaped, since titles come from directory names."""
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}"{extra}>{escape(content)}</text>'


def _series(key: str, steps: list[int], values: list[float], x: Axis, y: Axis, color: str, dashed: bool) -> list[str]:
    """The polyline of one metric and, while it has few points, a circle on each (a ring on dashed lines)."""
    points = [(f"{x.at(step):.1f}", f"{y.at(value):.1f}") for step, value in zip(steps, values, strict=True)]
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    parts = [
        f'<polyline data-series="{escape(key)}" points="{" ".join(f"{px},{py}" for px, py in points)}" fill="none" '
        f'stroke="{color}" stroke-width="1.8"{dash}/>'
    ]
    if len(points) <= MARKERS_UP_TO:
        radius = (2.5 if len(points) > 1 else 5) + (1.5 if dashed else 0)
        circles = "".join(f'<circle cx="{px}" cy="{py}" r="{radius}"/>' for px, py in points)
        paint = f'fill="none" stroke="{color}"' if dashed else f'fill="{color}"'  # rings: a dot under one shows
        parts.append(f'<g data-markers="{escape(key)}" {paint}>{circles}</g>')
    return parts


def _grid_and_y_ticks(x: Axis, y: Axis | None, top: float, bottom: float) -> list[str]:
    """Light grid lines at the ticks, the panel's frame and the left axis' tick labels."""
    parts = [f'<line x1="{x.at(t):.1f}" y1="{top}" x2="{x.at(t):.1f}" y2="{bottom}"/>' for t in x.ticks]
    for tick in y.ticks if y else []:
        parts.append(f'<line x1="{x.start}" y1="{y.at(tick):.1f}" x2="{x.end}" y2="{y.at(tick):.1f}"/>')
    parts = ['<g stroke="#000" stroke-opacity="0.12" stroke-width="1">', *parts, "</g>"]
    parts.append(
        f'<rect x="{x.start}" y="{top}" width="{x.end - x.start}" height="{bottom - top}" fill="none" stroke="#000"/>'
    )
    return parts + _y_labels(y, x.start - 6, "end") if y else parts


def _y_labels(y: Axis, at: float, anchor: str) -> list[str]:
    return [_text(at, y.at(tick) + 4, _tick_label(tick, y.scientific), anchor) for tick in y.ticks]


def _y_title(at: float, top: float, bottom: float, label: str) -> str:
    middle = (top + bottom) / 2
    return _text(at, middle, label, size=13, extra=f' transform="rotate(-90 {at:.1f} {middle:.1f})"')


def _legend(entries: list[tuple[str, str, bool]], x: Axis, top: float, corner: str = "right") -> list[str]:
    """A boxed legend in a top corner of the panel: the right one for a falling loss, the left for rising margins."""
    width, height = 44 + 7 * max(len(label) for label, _, _ in entries), 8 + 18 * len(entries)
    left = x.end - width - 8 if corner == "right" else x.start + 8
    box = f'x="{left}" y="{top + 8}" width="{width}" height="{height}"'
    parts = [f'<rect {box} fill="#fff" fill-opacity="0.85" stroke="#ccc"/>']
    for row, (label, color, dashed) in enumerate(entries):
        y = top + 8 + 13 + 18 * row
        dash = ' stroke-dasharray="6 4"' if dashed else ""
        swatch = f'x1="{left + 8}" y1="{y - 4}" x2="{left + 32}" y2="{y - 4}"'
        parts.append(f'<line {swatch} stroke="{color}" stroke-width="2"{dash}/>')
        parts.append(_text(left + 38, y, label, "start"))
    return parts


def _loss_panel(records: list[dict], x: Axis, top: float, bottom: float) -> list[str]:
    """Train and eval loss on the left axis, the learning rate dashed on a right axis of its own."""
    losses = [(key, label, color, _finite_series(records, key)) for key, label, color in LOSSES]
    losses = [loss for loss in losses if loss[3][0]]
    y = _axis([value for *_, (_, values) in losses for value in values], bottom, top) if losses else None
    parts = _grid_and_y_ticks(x, y, top, bottom) + [_y_title(x.start - 58, top, bottom, "loss")]
    entries = []
    for key, label, color, (steps, values) in losses:
        parts += _series(key, steps, values, x, y, color, dashed=False)
        entries.append((label, color, False))
    steps, values = _finite_series(records, "learning_rate")
    if steps:
        lr = _axis(values, bottom, top)
        parts += _series("learning_rate", steps, values, x, lr, GREY, dashed=True)
        parts += _y_labels(lr, x.end + 6, "start") + [_y_title(x.end + 78, top, bottom, "learning rate")]
        entries.append(("learning rate", GREY, True))
    if not losses:
        parts.append(_text((x.start + x.end) / 2, (top + bottom) / 2, "no loss logged", size=16))
    return parts + (_legend(entries, x, top) if entries else [])


def _margins_panel(records: list[dict], x: Axis, top: float, bottom: float) -> list[str]:
    """DPO-style reward margins with a line at 0: above it, the chosen answers are preferred."""
    margins = [(key, label, color, _finite_series(records, key)) for key, label, color in MARGINS]
    margins = [margin for margin in margins if margin[3][0]]
    y = _axis([0.0] + [value for *_, (_, values) in margins for value in values], bottom, top)
    parts = _grid_and_y_ticks(x, y, top, bottom) + [_y_title(x.start - 58, top, bottom, "reward margin")]
    parts.append(
        f'<line x1="{x.start}" y1="{y.at(0):.1f}" x2="{x.end}" y2="{y.at(0):.1f}" stroke="#000" stroke-width="0.8"/>'
    )
    for key, _, color, (steps, values) in margins:
        parts += _series(key, steps, values, x, y, color, dashed=False)
    return parts + _legend([(label, color, False) for _, label, color, _ in margins], x, top, "left")


def render_svg(records: list[dict], title: str) -> str:
    """The whole picture as SVG text: the loss panel, the margins panel below it when there are margins."""
    keys = [key for key, _, _ in LOSSES + MARGINS] + ["learning_rate"]
    steps = sorted({step for key in keys for step in _finite_series(records, key)[0]})
    has_margins = any(_finite_series(records, key)[0] for key, _, _ in MARGINS)
    height = HEIGHT + (MARGINS_EXTRA if has_margins else 0)
    bottom = height - BOTTOM
    # one or two logged steps: whole steps around them, not a range of 0.99..1.01
    x = _axis([float(step) for step in steps], LEFT, WIDTH - RIGHT, integer=True, widen=1 if 0 < len(steps) <= 2 else 0)
    loss_bottom = bottom - MARGINS_PANEL - PANEL_GAP if has_margins else bottom
    parts = _loss_panel(records, x, TOP, loss_bottom)
    if has_margins:
        parts += _margins_panel(records, x, loss_bottom + PANEL_GAP, bottom)
    parts += [_text(x.at(tick), bottom + 18, str(int(tick))) for tick in x.ticks]
    parts += [
        _text((x.start + x.end) / 2, bottom + 45, "optimizer step", size=13),
        _text(WIDTH / 2, 30, title, size=16),
    ]
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
            'font-family="sans-serif">',
            f'<rect width="{WIDTH}" height="{height}" fill="#fff"/>',
            *parts,
            "</svg>\n",
        ]
    )
