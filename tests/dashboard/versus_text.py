"""The dashboard's base | trained | Δ formats (static/versus.js), written again in Python so a
test can say which text a user must see for a report's numbers."""

from __future__ import annotations

import math
from typing import Any

MINUS = "\u2212"


def pct_points(value: float) -> int:
    """Whole percentage points, rounded half up as the page's Math.round does."""
    return math.floor(value * 100 + 0.5)


def signed(p: int) -> str:
    return "0" if p == 0 else f"+{p}" if p > 0 else f"{MINUS}{-p}"


def rate_text(value: float, interval: dict[str, float]) -> str:
    """A rate and its 95% interval as the page writes it: 41% [33–50]."""
    return f"{pct_points(value)}% [{pct_points(interval['low'])}–{pct_points(interval['high'])}]"


def delta_text(c: dict[str, Any]) -> str:
    """trained - base as the page writes it: +12 pts [+4, +20] (rates), −0.200 [−0.204, −0.197]
    (means)."""
    if c["kind"] == "rate":
        one = [signed(pct_points(c[k])) for k in ("delta", "delta_low", "delta_high")]
        return f"{one[0]} pts [{one[1]}, {one[2]}]"

    def number(v: float) -> str:
        text = f"{abs(v):.3f}"
        return text if float(text) == 0 else ("+" if v > 0 else MINUS) + text

    return f"{number(c['delta'])} [{number(c['delta_low'])}, {number(c['delta_high'])}]"
