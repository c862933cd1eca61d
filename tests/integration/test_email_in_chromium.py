"""Each state's e-mail rendered by a real browser engine (headless Chromium): the picture is
not blank, shows the tracker's colours, and the parsed DOM has the five steps, one current.

Needs Debian's `chromium` package (or chromium-browser / google-chrome on PATH); skipped
with that reason when none is installed.
"""

from __future__ import annotations

import struct
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pedidos.adapters.email.chromium import dump_dom, find_chromium, screenshot
from pedidos.adapters.email.preview import (
    SAMPLE_SENDER,
    SCREENSHOT_HEIGHT,
    body,
    sample_email,
    sample_order,
)
from pedidos.adapters.email.render import EmailRenderer
from pedidos.domain.states import ALL_STATES, OrderState

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        find_chromium() is None,
        reason="needs a Chromium binary on PATH (Debian: apt-get install chromium)",
    ),
]

PAGE = (0xEE, 0xF1, 0xF5)  # the page background: all a blank render would show
BRAND = (0x1F, 0x5F, 0xBF)  # the current step and the header
DONE = (0x1E, 0x8E, 0x5A)  # the steps already reached


def _paeth(left: int, up: int, up_left: int) -> int:
    estimate = left + up - up_left
    a, b, c = abs(estimate - left), abs(estimate - up), abs(estimate - up_left)
    if a <= b and a <= c:
        return left
    return up if b <= c else up_left


def png_colours(data: bytes) -> set[tuple[int, ...]]:
    """Distinct RGB colours of an 8-bit RGB/RGBA, non-interlaced PNG (Chromium's screenshots)."""
    colours: set[tuple[int, ...]] = set()
    for line, bpp in png_rows(data):
        colours.update(tuple(line[i : i + 3]) for i in range(0, len(line), bpp))
    return colours


def png_rows(data: bytes) -> list[tuple[bytes, int]]:
    """The pixel rows of an 8-bit RGB/RGBA, non-interlaced PNG, each with its bytes per pixel.

    Decoded with the standard library, since Pillow is not among the project's dependencies.
    """
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, compressed = 8, []
    width = height = bpp = 0
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunk = data[position + 8 : position + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert (depth, interlace) == (8, 0), chunk
            assert colour_type in (2, 6), chunk
            bpp = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            compressed.append(chunk)
        position += 12 + length
    raw = zlib.decompress(b"".join(compressed))
    stride = width * bpp
    previous = bytearray(stride)
    rows: list[tuple[bytes, int]] = []
    for row in range(height):
        start = row * (stride + 1)
        method, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            if method == 1:
                line[i] = (line[i] + left) & 0xFF
            elif method == 2:
                line[i] = (line[i] + previous[i]) & 0xFF
            elif method == 3:
                line[i] = (line[i] + (left + previous[i]) // 2) & 0xFF
            elif method == 4:
                up_left = previous[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + _paeth(left, previous[i], up_left)) & 0xFF
        rows.append((bytes(line), bpp))
        previous = line
    return rows


class _Steps(HTMLParser):
    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.steps: list[dict[str, str | None]] = []
        self.texts: list[str] = []
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if "tracker-step" in (found.get("class") or "").split():
            self.steps.append(found)

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


@pytest.mark.parametrize("state", ALL_STATES, ids=lambda state: state.slug)
def test_chromium_renders_the_tracker_of_each_state(state: OrderState, tmp_path: Path) -> None:
    page = tmp_path / "email.html"
    page.write_text(body(sample_email(state), "html"), encoding="utf-8")

    dom = _Steps(dump_dom(page))
    assert [step.get("data-step") for step in dom.steps] == ["1", "2", "3", "4", "5"]
    current = [step["data-step"] for step in dom.steps if step.get("aria-current") == "step"]
    assert current == [str(state.position + 1)]
    assert f"Paso {state.position + 1} de 5 · {state.value}" in "".join(dom.texts)

    png = tmp_path / "email.png"
    screenshot(page, png, SCREENSHOT_HEIGHT)
    colours = png_colours(png.read_bytes())
    assert len(colours) > 50, f"only {len(colours)} colours: the page looks blank"
    assert PAGE in colours
    assert BRAND in colours
    # Green bars and dots only once a step before the current one was reached.
    assert (DONE in colours) == (state.position > 0)


def test_the_html_sent_in_long_lines_draws_the_very_pixels_of_the_template(
    tmp_path: Path,
) -> None:
    """The HTML part goes in a quarter of the template's lines (`compact_html`); at the
    snapshot's width and at a phone's (the narrow layout's media query), Chromium must draw
    exactly what it draws for the template's own text. (Enviado: done, current and pending
    steps.)"""
    state = OrderState.ENVIADO
    order = sample_order()
    renderer = EmailRenderer(SAMPLE_SENDER)
    template = renderer.bodies_from_templates(
        state, renderer.values(order, state, order.reached[state])
    )[1]
    sent = body(sample_email(state), "html")
    assert sent.count("\n") * 4 <= template.count("\n")
    pictures: dict[str, list[list[tuple[bytes, int]]]] = {}
    for name, html in (("template", template), ("sent", sent)):
        page = tmp_path / f"{name}.html"
        page.write_text(html, encoding="utf-8")
        for width in (680, 400):
            png = tmp_path / f"{name}-{width}.png"
            screenshot(page, png, SCREENSHOT_HEIGHT, width=width)
            pictures.setdefault(name, []).append(png_rows(png.read_bytes()))
    assert pictures["sent"] == pictures["template"]
