#!/usr/bin/env python3
"""Writes the conference logos' words (and the favicon's B) as SVG paths, from the self-hosted Bebas Neue
(web/fonts, SIL Open Font License): a logo drawn with paths looks the same on every
phone, with or without the font. Run from the repository root after changing a logo:

    python3 -m pip install fonttools brotli
    python3 web/tools/logo_paths.py

Each logo is (file, width, mark, [(text, colour), ...]); the words are scaled to fit
between the mark and the right edge, centred on the badge's middle line.
"""
import re

from fontTools.pens.svgPathPen import SVGPathPen
from fontTools.pens.transformPen import TransformPen
from fontTools.ttLib import TTFont

FONT = "web/fonts/bebas-neue-latin-400-normal.woff2"
INK = "#f5f5f5"
# The words' box inside the 80-unit-high badge.
TOP, BOTTOM, RIGHT_MARGIN = 20.0, 60.0, 14.0

LOGOS = [
    (
        "sreday",
        "SREday",
        "#FFD700",
        220,
        76,
        '  <circle cx="40" cy="40" r="24" fill="none" stroke="#39FF14" stroke-width="6"/>\n'
        '  <path d="M40 22 v18 l12 8" fill="none" stroke="#39FF14" stroke-width="6" stroke-linecap="round"/>\n',
        [("SRE", INK), ("DAY", "#FFD700")],
    ),
    (
        "kubecon",
        "KubeCon",
        "#4169E1",
        240,
        80,
        '  <polygon points="40,12 62,23 67,47 52,66 28,66 13,47 18,23" fill="#4169E1" stroke="#f5f5f5" stroke-width="3"/>\n'
        '  <circle cx="40" cy="41" r="9" fill="none" stroke="#f5f5f5" stroke-width="4"/>\n'
        '  <g stroke="#f5f5f5" stroke-width="4" stroke-linecap="round">\n'
        '    <line x1="40" y1="32" x2="40" y2="20"/><line x1="48" y1="37" x2="58" y2="31"/><line x1="48" y1="46" x2="58" y2="52"/>\n'
        '    <line x1="40" y1="50" x2="40" y2="60"/><line x1="32" y1="46" x2="22" y2="52"/><line x1="32" y1="37" x2="22" y2="31"/>\n'
        "  </g>\n",
        [("KUBE", INK), ("CON", "#4169E1")],
    ),
    (
        "devopsdays",
        "DevOpsDays",
        "#FF1493",
        260,
        88,
        '  <path d="M16 40 C16 24 36 24 46 40 C56 56 76 56 76 40 C76 24 56 24 46 40 C36 56 16 56 16 40 Z" fill="none" stroke="#FF1493" stroke-width="6"/>\n',
        [("DEVOPS", INK), ("DAYS", "#FF1493")],
    ),
]


def words(font, parts, left, right):
    """The parts as paths, fitted into [left, right] × [TOP, BOTTOM]."""
    glyphs = font.getGlyphSet()
    cmap = font.getBestCmap()
    cap = font["OS/2"].sCapHeight or font["head"].unitsPerEm * 0.7
    scale = (BOTTOM - TOP) / cap
    total = sum(glyphs[cmap[ord(c)]].width for text, _ in parts for c in text)
    scale = min(scale, (right - left) / total)
    height = cap * scale
    baseline = (TOP + BOTTOM) / 2 + height / 2
    x = left + ((right - left) - total * scale) / 2
    out = []
    for text, colour in parts:
        pen = SVGPathPen(glyphs)
        for c in text:
            name = cmap[ord(c)]
            # Font units (y up) to the badge's (y down), at x.
            glyphs[name].draw(TransformPen(pen, (scale, 0, 0, -scale, x, baseline)))
            x += glyphs[name].width * scale
        d = re.sub(r"-?\d+(?:\.\d+)?", lambda m: f"{float(m.group()):.1f}".rstrip("0").rstrip("."), pen.getCommands())
        out.append(f'  <path fill="{colour}" d="{d}"/>\n')
    return "".join(out)


def favicon(font):
    """The favicon's B, as a path in its 64-unit circle."""
    glyphs, cmap = font.getGlyphSet(), font.getBestCmap()
    b = glyphs[cmap[ord("B")]]
    cap = font["OS/2"].sCapHeight or font["head"].unitsPerEm * 0.7
    scale = 34.0 / cap
    x = 32 - b.width * scale / 2
    pen = SVGPathPen(glyphs)
    b.draw(TransformPen(pen, (scale, 0, 0, -scale, x, 32 + 17)))
    d = re.sub(r"-?\d+(?:\.\d+)?", lambda m: f"{float(m.group()):.1f}".rstrip("0").rstrip("."), pen.getCommands())
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64">\n'
        '  <circle cx="32" cy="32" r="30" fill="#39FF14" stroke="#f5f5f5" stroke-width="4"/>\n'
        f'  <path fill="#1a1a1a" d="{d}"/>\n'
        "</svg>\n"
    )
    with open("web/static/favicon.svg", "w") as f:
        f.write(svg)
    print(f"web/static/favicon.svg: {len(svg)} bytes")


def main():
    font = TTFont(FONT)
    favicon(font)
    for name, label, stroke, width, left, mark, parts in LOGOS:
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="80" viewBox="0 0 {width} 80" '
            f'role="img" aria-label="{label}">\n'
            f"  <title>{label}</title>\n"
            f'  <rect x="2" y="2" width="{width - 4}" height="76" rx="10" fill="#1a1a1a" stroke="{stroke}" stroke-width="4"/>\n'
            + mark
            + words(font, parts, left, width - RIGHT_MARGIN)
            + "</svg>\n"
        )
        with open(f"web/static/logos/{name}.svg", "w") as f:
            f.write(svg)
        print(f"web/static/logos/{name}.svg: {len(svg)} bytes")


if __name__ == "__main__":
    main()
