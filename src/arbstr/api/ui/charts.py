"""Charts drawn on the server as SVG: no script, they print, scale, and follow the page's
colours (classes, not fills, so dark mode is the stylesheet's business). Each chart carries
its numbers in `<title>` elements; the page puts the same numbers in a table beside it."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bars"]

W, H, PAD_L, PAD_B, PAD_T = 640, 180, 48, 22, 10


def _fmt(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if value else "0"


def bars(title: str, labels: Sequence[str], values: Sequence[float], unit: str = "") -> str:
    """A bar per bucket, the value and label of each in its `<title>`."""
    n = max(1, len(values))
    top = max([*values, 0.0]) or 1.0
    inner_w, inner_h = W - PAD_L - 4, H - PAD_B - PAD_T
    step = inner_w / n
    width = max(1.0, step * 0.8)
    parts = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        'xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + inner_h}" x2="{W - 4}" '
        f'y2="{PAD_T + inner_h}"/>',
        f'<text class="tick" x="{PAD_L - 6}" y="{PAD_T + 8}" text-anchor="end">'
        f"{escape(_fmt(top))}</text>",
        f'<text class="tick" x="{PAD_L - 6}" y="{PAD_T + inner_h}" text-anchor="end">0</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = inner_h * value / top
        x = PAD_L + i * step + (step - width) / 2
        y = PAD_T + inner_h - h
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}">'
            f"<title>{escape(label)}: {escape(_fmt(value))}{escape(unit)}</title></rect>"
        )
    if labels:
        for i in (0, len(labels) - 1):
            anchor = "start" if i == 0 else "end"
            x = PAD_L if i == 0 else W - 4
            parts.append(
                f'<text class="tick" x="{x}" y="{H - 6}" text-anchor="{anchor}">'
                f"{escape(labels[i])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
