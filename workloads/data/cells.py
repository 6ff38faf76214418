"""Procedural stained bone-marrow cells, one drawing recipe per class code.

The recipes caricature May-Grünwald-Giemsa morphology so that a small CNN can learn the 21
classes offline: cell size, nucleus shape and position, nucleus/cytoplasm ratio, chromatin
texture, cytoplasm colour and granules differ by class; position, rotation, scale, stain and
brightness are jittered per image so that no single pixel statistic gives the class away.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from workloads.classes import CLASS_CODES
from workloads.data.drawing import Canvas, Cell, Color, Point, Shape, blob, thick_arc

# Nuclear stain: dark, medium and pale purple.
NUC_DARK: Color = (72, 32, 104)
NUC_MID: Color = (112, 66, 146)
NUC_PALE: Color = (160, 124, 190)
# Cytoplasm.
PALE_BLUE: Color = (162, 186, 230)
SKY_BLUE: Color = (140, 165, 220)
DEEP_BLUE: Color = (78, 92, 172)
GREY_BLUE: Color = (172, 168, 206)
NEUTRO_PINK: Color = (226, 202, 216)
LILAC: Color = (208, 178, 214)
EOS_PINK: Color = (232, 196, 188)
# Granules and inclusions.
FINE_PINK: Color = (196, 118, 166)
ORANGE_RED: Color = (234, 112, 52)
BASO_BLACK: Color = (40, 18, 64)
AZURO: Color = (134, 28, 96)
AUER: Color = (188, 36, 84)
VACUOLE: Color = (236, 232, 240)


# --- building blocks --------------------------------------------------------------------------
def cytoplasm(c: Canvas, cell: Cell, color: Color, wobble: float = 0.04, opacity: float = 0.95) -> np.ndarray:
    outline = blob(cell.cx, cell.cy, cell.r, cell.r * cell.aspect, cell.angle, c.rng, wobble)
    mask = c.mask(outline)
    c.paint(mask, c.jitter(color, 10), opacity)
    return mask


def nucleus(
    c: Canvas, *shapes: Shape | list[Point], dark: Color = NUC_DARK, light: Color = NUC_MID, kind: str
) -> np.ndarray:
    mask = c.mask(*shapes)
    c.paint_chromatin(mask, c.jitter(dark, 8), c.jitter(light, 8), kind)
    return mask


def round_nucleus(
    c: Canvas, cell: Cell, size: float, offset: float = 0.0, aspect: tuple[float, float] = (0.85, 1.0)
) -> list[Point]:
    """A round/oval nucleus of radius ``size``·r, shifted ``offset``·r along the cell's axis."""
    cx, cy = cell.at(offset * cell.r, c.uniform(-0.3, 0.3))
    r = size * cell.r
    return blob(cx, cy, r, r * c.uniform(*aspect), c.uniform(0, math.pi), c.rng, 0.05)


def kidney_nucleus(c: Canvas, cell: Cell, size: float, depth: float) -> list[Point]:
    """An indented (bean) nucleus whose notch faces the cell's axis."""
    r = size * cell.r
    cx, cy = cell.at(-0.12 * cell.r, 0.0)
    return blob(cx, cy, r, r * c.uniform(0.7, 0.85), cell.angle, c.rng, 0.04, dent=(0.0, depth, 0.7))


def segmented_nucleus(c: Canvas, cell: Cell, lobes: int, lobe: tuple[float, float]) -> Shape:
    """2-5 lobes on a curved path, joined by thin chromatin filaments."""
    path_r = cell.r * c.uniform(0.32, 0.45)
    step = c.uniform(0.8, 1.15) * (2.2 / max(lobes - 1, 1)) if lobes > 1 else 0.0
    start = -step * (lobes - 1) / 2
    centers = []
    shape = Shape()
    for i in range(lobes):
        x, y = cell.at(path_r * c.uniform(0.85, 1.15), start + i * step + c.uniform(-0.15, 0.15))
        r = cell.r * c.uniform(*lobe)
        shape.polygons.append(blob(x, y, r, r * c.uniform(0.7, 0.95), c.uniform(0, math.pi), c.rng, 0.06))
        centers.append((x, y))
    if lobes > 1:
        shape.lines.append((centers, max(2, round(cell.r * 0.05))))
    return shape


def band_nucleus(c: Canvas, cell: Cell) -> Shape:
    cx, cy = cell.at(cell.r * 0.1, math.pi)
    span = c.uniform(3.3, 4.4)
    start = cell.angle + math.pi - span / 2 + math.pi
    return thick_arc(cx, cy, cell.r * c.uniform(0.38, 0.46), start, span, cell.r * 0.26, c.rng, pinch=0.25)


def nucleoli(
    c: Canvas, nucleus_mask: np.ndarray, cell: Cell, count: int, color: Color = (176, 168, 214)
) -> None:
    inner = (nucleus_mask > 0.99).astype(np.float32)
    c.dots(inner, count, (cell.r * 0.06, cell.r * 0.1), color, opacity=0.7)


def granular_cell(
    c: Canvas,
    cell: Cell,
    cyto_color: Color,
    nucleus_shape: Shape | list[Point],
    chromatin: str,
    granules: tuple[Color, int, tuple[float, float]] | None,
    over_nucleus: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Cytoplasm, nucleus, then granules (in the cytoplasm, or over everything)."""
    cyto = cytoplasm(c, cell, cyto_color)
    nuc = nucleus(c, nucleus_shape, kind=chromatin)
    if granules is not None:
        color, count, radius = granules
        region = cyto if over_nucleus else cyto * (1 - nuc)
        c.dots(region, count, radius, c.jitter(color, 10))
    return cyto, nuc


# --- the 21 recipes ---------------------------------------------------------------------------
def _ngs(c: Canvas) -> None:
    cell = c.place((0.25, 0.29))
    lobes = int(c.rng.integers(3, 6))
    shape = segmented_nucleus(c, cell, lobes, (0.17, 0.22))
    granular_cell(c, cell, NEUTRO_PINK, shape, "dense", (FINE_PINK, 160, c.px(0.7, 1.3)))


def _ngb(c: Canvas) -> None:
    cell = c.place((0.25, 0.29))
    granular_cell(c, cell, NEUTRO_PINK, band_nucleus(c, cell), "dense", (FINE_PINK, 160, c.px(0.7, 1.3)))


def _mmz(c: Canvas) -> None:
    cell = c.place((0.26, 0.3))
    shape = kidney_nucleus(c, cell, c.uniform(0.52, 0.6), depth=c.uniform(0.35, 0.5))
    granular_cell(c, cell, LILAC, shape, "clumped", (FINE_PINK, 180, c.px(0.7, 1.3)))


def _myb(c: Canvas) -> None:
    cell = c.place((0.27, 0.31))
    cyto = cytoplasm(c, cell, LILAC)
    nuc_shape = round_nucleus(c, cell, c.uniform(0.5, 0.58), offset=0.38, aspect=(0.75, 0.9))
    hof = c.mask(Shape(circles=[(*cell.at(-0.1 * cell.r, 0.0), 0.3 * cell.r)]), blur=cell.r * 0.12)
    c.paint(hof * cyto, (232, 214, 230), 0.6)
    nuc = nucleus(c, nuc_shape, kind="clumped", light=NUC_PALE)
    c.dots(cyto * (1 - nuc), 200, c.px(0.7, 1.4), c.jitter(FINE_PINK, 10))


def _pmo(c: Canvas) -> None:
    cell = c.place((0.29, 0.33))
    cyto = cytoplasm(c, cell, GREY_BLUE)
    nuc = nucleus(
        c, round_nucleus(c, cell, c.uniform(0.56, 0.64), 0.25, (0.75, 0.9)), light=NUC_PALE, kind="lacy"
    )
    nucleoli(c, nuc, cell, int(c.rng.integers(1, 3)))
    c.dots(cyto, 140, c.px(1.5, 2.6), c.jitter(AZURO, 10))


def _eos(c: Canvas) -> None:
    cell = c.place((0.26, 0.3))
    shape = segmented_nucleus(c, cell, 2, (0.22, 0.27))
    granular_cell(c, cell, EOS_PINK, shape, "dense", (ORANGE_RED, 260, c.px(2.0, 3.0)))


def _abe(c: Canvas) -> None:
    cell = c.place((0.28, 0.32))
    cyto = cytoplasm(c, cell, EOS_PINK)
    nuc = nucleus(c, round_nucleus(c, cell, c.uniform(0.48, 0.56), 0.3), kind="clumped")
    region = cyto * (1 - nuc)
    c.dots(region, 200, c.px(2.2, 3.4), c.jitter(ORANGE_RED, 10))
    c.dots(region, 70, c.px(2.8, 4.2), c.jitter((92, 30, 96), 10))


def _bas(c: Canvas) -> None:
    cell = c.place((0.22, 0.26))
    cyto = cytoplasm(c, cell, LILAC)
    nucleus(c, segmented_nucleus(c, cell, 2, (0.24, 0.3)), light=NUC_PALE, kind="lacy")
    c.dots(cyto, 90, c.px(2.2, 3.8), c.jitter(BASO_BLACK, 8))


def _lyt(c: Canvas) -> None:
    cell = c.place((0.16, 0.19), aspect=(0.9, 1.0))
    cytoplasm(c, cell, PALE_BLUE)
    nucleus(c, round_nucleus(c, cell, c.uniform(0.8, 0.88), 0.1), kind="clumped")


def _lyi(c: Canvas) -> None:
    cell = c.place((0.2, 0.23), aspect=(0.88, 1.0))
    cytoplasm(c, cell, SKY_BLUE)
    nuc = nucleus(c, round_nucleus(c, cell, c.uniform(0.8, 0.86), 0.12), light=NUC_PALE, kind="lacy")
    nucleoli(c, nuc, cell, int(c.rng.integers(0, 2)))


def _bla(c: Canvas) -> None:
    cell = c.place((0.24, 0.28))
    cytoplasm(c, cell, SKY_BLUE)
    shape = round_nucleus(c, cell, c.uniform(0.84, 0.9), 0.05, (0.88, 1.0))
    nuc = nucleus(c, shape, dark=NUC_MID, light=NUC_PALE, kind="fine")
    nucleoli(c, nuc, cell, int(c.rng.integers(1, 4)))


def _ebo(c: Canvas) -> None:
    cell = c.place((0.15, 0.19), aspect=(0.93, 1.0))
    tone = (176, 162, 206) if c.rng.random() < 0.5 else (206, 172, 196)
    cytoplasm(c, cell, tone, wobble=0.02)
    nucleus(
        c, round_nucleus(c, cell, c.uniform(0.55, 0.66), 0.05, (0.92, 1.0)), dark=(48, 18, 70), kind="dense"
    )


def _peb(c: Canvas) -> None:
    cell = c.place((0.27, 0.31))
    bumps = Shape(
        circles=[
            (*cell.at(cell.r, c.uniform(0, 2 * math.pi)), cell.r * c.uniform(0.1, 0.16)) for _ in range(5)
        ]
    )
    cyto = c.mask(blob(cell.cx, cell.cy, cell.r, cell.r * cell.aspect, cell.angle, c.rng, 0.04), bumps)
    c.paint(cyto, c.jitter(DEEP_BLUE, 10), 0.95)
    shape = round_nucleus(c, cell, c.uniform(0.68, 0.76), 0.08)
    halo = c.mask(round_nucleus(c, cell, 0.86, 0.08), blur=cell.r * 0.05)
    c.paint(halo * cyto, (150, 160, 215), 0.5)
    nuc = nucleus(c, shape, light=NUC_PALE, kind="lacy")
    nucleoli(c, nuc, cell, int(c.rng.integers(1, 3)))


def _plm(c: Canvas) -> None:
    cell = c.place((0.23, 0.27), aspect=(0.68, 0.8))
    cyto = cytoplasm(c, cell, DEEP_BLUE)
    hof = c.mask(Shape(circles=[(*cell.at(0.05 * cell.r, 0.0), 0.32 * cell.r)]), blur=cell.r * 0.12)
    c.paint(hof * cyto, (178, 184, 226), 0.7)
    cx, cy = cell.at(0.5 * cell.r, 0.0)
    r = 0.45 * cell.r
    nucleus(c, blob(cx, cy, r, r * c.uniform(0.88, 1.0), 0.0, c.rng, 0.04), kind="clumped")


def _mon(c: Canvas) -> None:
    cell = c.place((0.3, 0.34))
    cyto = cytoplasm(c, cell, GREY_BLUE, wobble=0.07)
    shape = kidney_nucleus(c, cell, c.uniform(0.56, 0.64), depth=c.uniform(0.25, 0.45))
    nuc = nucleus(c, shape, light=NUC_PALE, kind="lacy")
    region = cyto * (1 - nuc)
    c.dots(region, int(c.rng.integers(4, 12)), (cell.r * 0.04, cell.r * 0.09), VACUOLE, opacity=0.8)
    c.dots(region, 120, c.px(0.6, 1.0), c.jitter(AZURO, 10), opacity=0.5)


def _hac(c: Canvas) -> None:
    cell = c.place((0.24, 0.28))
    color = c.jitter((186, 190, 222), 8)
    hairs = Shape()
    for _ in range(int(c.rng.integers(40, 70))):
        direction = c.uniform(0, 2 * math.pi)
        base = cell.at(cell.r * 0.9, direction)
        tip = cell.at(cell.r * c.uniform(1.1, 1.35), direction + c.uniform(-0.15, 0.15))
        hairs.lines.append(([base, tip], max(1, round(cell.r / c.uniform(30, 60)))))
    c.paint(c.mask(hairs), color, 0.85)
    cyto = c.mask(blob(cell.cx, cell.cy, cell.r, cell.r * cell.aspect, cell.angle, c.rng, 0.1))
    c.paint(cyto, color, 0.95)
    nucleus(c, kidney_nucleus(c, cell, c.uniform(0.48, 0.56), depth=0.2), light=NUC_PALE, kind="lacy")


def _ksc(c: Canvas) -> None:
    cell = c.place((0.2, 0.26))
    direction = c.uniform(0, 2 * math.pi)
    smear = Shape()
    for _ in range(int(c.rng.integers(3, 6))):
        x, y = cell.at(cell.r * c.uniform(0, 0.9), direction - cell.angle + c.uniform(-0.4, 0.4))
        r = cell.r * c.uniform(0.4, 0.8)
        smear.polygons.append(blob(x, y, r * 1.4, r * 0.7, direction, c.rng, 0.25))
    for _ in range(int(c.rng.integers(8, 16))):
        start = cell.at(cell.r * c.uniform(0, 0.5), c.uniform(0, 2 * math.pi))
        a = direction + c.uniform(-0.35, 0.35)
        length = cell.r * c.uniform(0.8, 1.6)
        smear.lines.append(
            (
                [start, (start[0] + length * math.cos(a), start[1] + length * math.sin(a))],
                max(1, round(cell.r / 20)),
            )
        )
    mask = c.mask(smear, blur=c.uniform(0.03, 0.06) * cell.r)
    c.paint_chromatin(mask * 0.85, c.jitter((120, 80, 156), 10), c.jitter((186, 160, 206), 10), "lacy")


def _art(c: Canvas) -> None:
    palette = [NUC_DARK, NUC_PALE, (190, 120, 150), (120, 130, 190), (70, 50, 60), ORANGE_RED]
    s = c.size
    for _ in range(int(c.rng.integers(5, 14))):
        x, y = c.uniform(0.15, 0.85) * s, c.uniform(0.15, 0.85) * s
        r = c.uniform(0.015, 0.08) * s
        frag = blob(x, y, r, r * c.uniform(0.3, 1.0), c.uniform(0, math.pi), c.rng, 0.3, 24)
        c.paint(
            c.mask(frag, blur=c.uniform(0, 1.5)), c.jitter(palette[int(c.rng.integers(len(palette)))]), 0.8
        )
    c.dots(
        np.ones((s, s), np.float32), int(c.rng.integers(30, 120)), c.px(0.8, 2.0), (60, 30, 80), opacity=0.8
    )


def _fgc(c: Canvas) -> None:
    cell = c.place((0.29, 0.33))
    cyto, nuc = granular_cell(
        c, cell, GREY_BLUE, segmented_nucleus(c, cell, 2, (0.27, 0.32)), "lacy", (AZURO, 60, c.px(1.2, 2.0))
    )
    region = cyto * (1 - nuc)
    rods = Shape()
    candidates = np.flatnonzero(region > 0.5)
    for _ in range(int(c.rng.integers(2, 5))):
        y0, x0 = divmod(int(c.rng.choice(candidates)), c.size)
        a = c.uniform(0, math.pi)
        for _ in range(int(c.rng.integers(4, 10))):
            length = cell.r * c.uniform(0.25, 0.45)
            dx, dy = c.uniform(-0.05, 0.05) * cell.r, c.uniform(-0.05, 0.05) * cell.r
            b = a + c.uniform(-0.12, 0.12)
            end = (x0 + dx + length * math.cos(b), y0 + dy + length * math.sin(b))
            rods.lines.append(([(x0 + dx, y0 + dy), end], max(1, round(cell.r / 50))))
    c.paint(c.mask(rods) * cyto, c.jitter(AUER, 10), 0.9)


def _oth(c: Canvas) -> None:
    """Odd cells: a binucleate cell, a mitotic figure, a giant multilobed cell or a doublet."""
    variant = int(c.rng.integers(4))
    if variant == 0:
        cell = c.place((0.28, 0.33), aspect=(0.75, 0.9))
        cytoplasm(c, cell, SKY_BLUE)
        left = round_nucleus(c, cell, 0.38, 0.45)
        right_cell = Cell(cell.cx, cell.cy, cell.r, cell.angle + math.pi, cell.aspect)
        right = round_nucleus(c, right_cell, 0.38, 0.45)
        nucleus(c, left, right, kind="clumped")
    elif variant == 1:
        cell = c.place((0.26, 0.3))
        cyto = cytoplasm(c, cell, GREY_BLUE)
        core = c.mask(Shape(circles=[(cell.cx, cell.cy, cell.r * 0.55)]))
        c.dots(core * cyto, 45, c.px(2.0, 4.5), c.jitter(NUC_DARK, 8), opacity=0.95, elongation=2.0)
    elif variant == 2:
        cell = c.place((0.4, 0.46))
        cytoplasm(c, cell, LILAC, wobble=0.08)
        nucleus(c, segmented_nucleus(c, cell, 5, (0.2, 0.26)), kind="clumped")
        nucleus(c, segmented_nucleus(c, cell, 3, (0.16, 0.2)), kind="clumped")
    else:
        for side in (-1, 1):
            cell = c.place((0.17, 0.21))
            cell = Cell(cell.cx + side * cell.r * 0.95, cell.cy, cell.r, cell.angle, cell.aspect)
            if side < 0:
                cytoplasm(c, cell, PALE_BLUE)
                nucleus(c, round_nucleus(c, cell, 0.82, 0.1), kind="clumped")
            else:
                cyto = cytoplasm(c, cell, NEUTRO_PINK)
                nuc = nucleus(c, segmented_nucleus(c, cell, 3, (0.2, 0.25)), kind="dense")
                c.dots(cyto * (1 - nuc), 60, c.px(0.7, 1.2), FINE_PINK)


_BLURRABLE = ("NGS", "LYT", "MON", "BLA", "EBO", "MYB", "PLM", "NGB")


def _nif(c: Canvas) -> None:
    """A real cell, but out of focus; :func:`draw_cell` applies the heavy blur."""
    RECIPES[_BLURRABLE[int(c.rng.integers(len(_BLURRABLE)))]](c)


RECIPES: dict[str, Callable[[Canvas], None]] = {
    "ABE": _abe,
    "ART": _art,
    "BAS": _bas,
    "BLA": _bla,
    "EBO": _ebo,
    "EOS": _eos,
    "FGC": _fgc,
    "HAC": _hac,
    "KSC": _ksc,
    "LYI": _lyi,
    "LYT": _lyt,
    "MMZ": _mmz,
    "MON": _mon,
    "MYB": _myb,
    "NGB": _ngb,
    "NGS": _ngs,
    "NIF": _nif,
    "OTH": _oth,
    "PEB": _peb,
    "PLM": _plm,
    "PMO": _pmo,
}
assert tuple(sorted(RECIPES)) == CLASS_CODES


def draw_cell(code: str, rng: np.random.Generator, size: int = 250) -> Image.Image:
    """Draw one ``size``x``size`` RGB image of a cell of class ``code``; pure given ``rng``'s state."""
    if code not in RECIPES:
        raise ValueError(f"unknown class code {code!r}")
    canvas = Canvas(size, rng)
    canvas.red_cells(int(rng.integers(1, 6)))
    RECIPES[code](canvas)
    return canvas.finish(blur=canvas.uniform(2.5, 5.0) * size / 250 if code == "NIF" else None)
