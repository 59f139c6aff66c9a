#!/usr/bin/env python3
"""Writes an SVG line chart, log-log, of wall time against size (scripts/bench --plot).

Usage: plot.py OUT.svg TITLE < rows, where each row is `SERIES SIZE SECONDS` (space
separated; SERIES without spaces, `_` shown as a space). Standard library only."""
import math
import sys

out, title = sys.argv[1], sys.argv[2]
series = {}
for line in sys.stdin:
    parts = line.split()
    if len(parts) != 3:
        continue
    name, size, secs = parts[0].replace("_", " "), float(parts[1]), float(parts[2])
    if size > 0 and secs > 0:
        series.setdefault(name, []).append((size, secs))
if not series:
    sys.exit("plot: no data")

W, H, L, R, T, B = 760, 480, 80, 190, 50, 60
xs = [p[0] for s in series.values() for p in s]
ys = [p[1] for s in series.values() for p in s]
x0, x1 = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
y0, y1 = math.floor(math.log10(min(ys))), math.ceil(math.log10(max(ys)))
x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)


def px(x):
    return L + (math.log10(x) - x0) / (x1 - x0) * (W - L - R)


def py(y):
    return H - B - (math.log10(y) - y0) / (y1 - y0) * (H - T - B)


def label(v):
    if v >= 1:
        return f"{v:g}"
    return f"{v:.3f}".rstrip("0")


colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
svg = [
    f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
    f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
    f'<rect width="{W}" height="{H}" fill="white"/>',
    f'<text x="{L}" y="28" font-size="15" font-weight="bold">{title}</text>',
]
for e in range(x0, x1 + 1):
    x = px(10**e)
    svg.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
    svg.append(f'<text x="{x:.1f}" y="{H - B + 18}" text-anchor="middle">{label(10**e)}</text>')
for e in range(y0, y1 + 1):
    y = py(10**e)
    svg.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#ddd"/>')
    svg.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">{label(10**e)} s</text>')
svg.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#333"/>')
svg.append(
    f'<text x="{(L + W - R) / 2:.0f}" y="{H - 18}" text-anchor="middle">components (log)</text>'
)
svg.append(
    f'<text x="18" y="{(T + H - B) / 2:.0f}" text-anchor="middle" '
    f'transform="rotate(-90 18 {(T + H - B) / 2:.0f})">wall time, seconds (log)</text>'
)
for k, (name, pts) in enumerate(series.items()):
    c = colors[k % len(colors)]
    pts.sort()
    path = " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(pts))
    svg.append(f'<path d="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
    for x, y in pts:
        svg.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{c}">'
            f"<title>{name}: {x:g} components, {y:.3f} s</title></circle>"
        )
    ly = T + 20 + k * 22
    svg.append(f'<line x1="{W - R + 15}" y1="{ly}" x2="{W - R + 40}" y2="{ly}" stroke="{c}" stroke-width="2"/>')
    svg.append(f'<text x="{W - R + 46}" y="{ly + 4}">{name}</text>')
svg.append("</svg>")
with open(out, "w") as f:
    f.write("\n".join(svg) + "\n")
