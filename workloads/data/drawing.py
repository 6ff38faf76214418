"""Drawing primitives for synthetic stained-cell images: shapes, textures and compositing.

Everything is drawn at the output size on an 8-bit RGB canvas. Shapes are polygons, circles
and thick lines rasterised with ``ImageDraw`` into masks, handled as float arrays in [0, 1] so
that recipes can combine them (``cytoplasm * (1 - nucleus)``); colours and textures are
alpha-blended into the canvas inside each mask's bounding box. The final slight blur (see
:meth:`Canvas.finish`) doubles as anti-aliasing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

Color = tuple[float, float, float]
Point = tuple[float, float]

BACKGROUND: Color = (238, 222, 228)
RBC: Color = (226, 166, 176)
RBC_CENTER: Color = (236, 202, 208)


_GRAIN = 5


@functools.cache
def _grain_tile(size: int) -> Image.Image:
    """Fixed sensor noise (0..2*_GRAIN per channel, 2S x 2S): each image adds a random window of it."""
    rng = np.random.default_rng(20210101)
    return Image.fromarray(
        rng.integers(0, 2 * _GRAIN + 1, (2 * size, 2 * size, 3), dtype=np.uint8), mode="RGB"
    )


def bounding_box(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices enclosing the non-zero part of ``mask`` (None when it is empty)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


@dataclass(frozen=True)
class Cell:
    """Where a cell sits on the canvas: centre, radius (px), orientation (rad) and aspect."""

    cx: float
    cy: float
    r: float
    angle: float
    aspect: float = 1.0

    def at(self, distance: float, direction: float) -> Point:
        """The point ``distance`` px from the centre, ``direction`` rad relative to the cell's angle."""
        a = self.angle + direction
        return (self.cx + distance * math.cos(a), self.cy + distance * math.sin(a))


@dataclass
class Shape:
    """A set of filled polygons, circles and thick lines drawn together into one mask."""

    polygons: list[list[Point]] = field(default_factory=list)
    circles: list[tuple[float, float, float]] = field(default_factory=list)
    lines: list[tuple[list[Point], int]] = field(default_factory=list)

    def draw(self, draw: ImageDraw.ImageDraw, fill: int = 255) -> None:
        for points in self.polygons:
            draw.polygon(points, fill=fill)
        for x, y, r in self.circles:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        for points, width in self.lines:
            draw.line(points, fill=fill, width=width, joint="curve")


def blob(
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    angle: float,
    rng: np.random.Generator,
    wobble: float = 0.04,
    n: int = 48,
    dent: tuple[float, float, float] | None = None,
) -> list[Point]:
    """An ellipse with a randomly wavy outline.

    ``wobble`` scales low harmonics of the radius; ``dent=(direction, depth, width)`` pushes the
    outline in around ``direction`` (rad, in the shape's frame) to make kidney/indented shapes.
    """
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    radial = np.ones(n)
    if wobble:
        for k in (2, 3, 4, 5):
            radial += wobble * rng.uniform(-1, 1) / (k - 1) * np.cos(k * t + rng.uniform(0, 2 * math.pi))
    if dent is not None:
        direction, depth, width = dent
        delta = np.angle(np.exp(1j * (t - direction)))
        radial *= 1.0 - depth * np.exp(-((delta / width) ** 2))
    x = rx * radial * np.cos(t)
    y = ry * radial * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return list(zip((cx + x * ca - y * sa).tolist(), (cy + x * sa + y * ca).tolist(), strict=True))


def thick_arc(
    cx: float,
    cy: float,
    radius: float,
    start: float,
    span: float,
    width: float,
    rng: np.random.Generator,
    pinch: float = 0.0,
    n: int = 32,
) -> Shape:
    """A curved sausage (band nucleus): an arc of ``radius`` with rounded ends.

    ``pinch`` adds random constrictions along the band (0 = uniform thickness).
    """
    t = np.linspace(start, start + span, n)
    w = np.full(n, width / 2)
    if pinch:
        phase = rng.uniform(0, 2 * math.pi)
        w *= 1.0 - pinch * (0.5 + 0.5 * np.cos(3 * (t - start) / max(span, 1e-6) * 2 * math.pi + phase))
    nx, ny = np.cos(t), np.sin(t)
    outer = list(zip((cx + (radius + w) * nx).tolist(), (cy + (radius + w) * ny).tolist(), strict=True))
    inner = list(zip((cx + (radius - w) * nx).tolist(), (cy + (radius - w) * ny).tolist(), strict=True))
    ends = [
        (cx + radius * nx[0], cy + radius * ny[0], w[0]),
        (cx + radius * nx[-1], cy + radius * ny[-1], w[-1]),
    ]
    return Shape(polygons=[outer + inner[::-1]], circles=ends)


class Canvas:
    """An 8-bit RGB image under construction plus the random generator that drives it.

    Painting goes through ``Image.paste(colour, box, mask)``, which alpha-blends in C; doing the
    same blend in float numpy was the dominant cost of drawing a cell.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        # Background: the stain colour with a faint uneven shading (a 6x6 field, smoothly upscaled).
        base = np.array(self.jitter(BACKGROUND, 6), dtype=np.float32)
        shade = (rng.random((6, 6, 1), dtype=np.float32) - 0.5) * 10
        low = Image.fromarray((base + shade).clip(0, 255).astype(np.uint8), mode="RGB")
        self.image = low.resize((size, size), Image.Resampling.BICUBIC)

    # --- randomness helpers ---------------------------------------------------------------
    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def jitter(self, color: Color, amount: float = 8.0) -> Color:
        r, g, b = (float(np.clip(c + self.rng.uniform(-amount, amount), 0, 255)) for c in color)
        return (r, g, b)

    def noise(self, feature_px: float, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Smooth value noise in [0, 1] whose blobs are about ``feature_px`` pixels wide."""
        h, w = shape or (self.size, self.size)
        feature_px = max(feature_px, 1.0)
        cells_y, cells_x = max(2, round(h / feature_px) + 1), max(2, round(w / feature_px) + 1)
        low = Image.fromarray(self.rng.random((cells_y, cells_x), dtype=np.float32), mode="F")
        return np.asarray(low.resize((w, h), Image.Resampling.BICUBIC), dtype=np.float32).clip(0, 1)

    def px(self, low: float, high: float) -> tuple[float, float]:
        """A pixel range given for a 250 px image, scaled to this canvas."""
        scale = self.size / 250
        return (low * scale, high * scale)

    def grain(self, shape: tuple[int, int] | None = None) -> np.ndarray:
        """Per-pixel noise in [0, 1]."""
        return self.rng.random(shape or (self.size, self.size), dtype=np.float32)

    # --- masks and painting -----------------------------------------------------------------
    def mask(self, *shapes: Shape | list[Point], blur: float = 0.0) -> np.ndarray:
        """Rasterise shapes (a :class:`Shape` or a bare polygon) into a float mask in [0, 1]."""
        img = Image.new("L", (self.size, self.size), 0)
        draw = ImageDraw.Draw(img)
        for shape in shapes:
            if isinstance(shape, Shape):
                shape.draw(draw)
            else:
                draw.polygon(shape, fill=255)
        if blur:
            box = img.getbbox()
            if box is not None:
                # Blur only around the drawn pixels: a full-frame blur per shape is the slow part.
                m = int(3 * blur) + 2
                x0, y0 = max(box[0] - m, 0), max(box[1] - m, 0)
                x1, y1 = min(box[2] + m, self.size), min(box[3] + m, self.size)
                img.paste(img.crop((x0, y0, x1, y1)).filter(ImageFilter.BoxBlur(blur)), (x0, y0))
        return np.asarray(img, dtype=np.float32) / 255.0

    def paint(self, mask: np.ndarray, color: Color | np.ndarray, opacity: float = 1.0) -> None:
        """Blend ``color`` (an RGB triple or an (S, S, 3) field) into the canvas where ``mask`` is set."""
        box = bounding_box(mask)
        if box is None:
            return
        ys, xs = box
        target = np.asarray(color, dtype=np.float32)
        if target.ndim == 3:
            self._blend(ys, xs, target[ys, xs], mask[ys, xs] * opacity)
        else:
            self._blend(ys, xs, target, mask[ys, xs] * opacity)

    def _blend(self, ys: slice, xs: slice, color: np.ndarray, alpha: np.ndarray) -> None:
        """Alpha-blend ``color`` (RGB triple or a field the size of the box) into the box ys x xs."""
        box = (xs.start, ys.start, xs.stop, ys.stop)
        mask = Image.fromarray((alpha * 255.0 + 0.5).clip(0, 255).astype(np.uint8), mode="L")
        if color.ndim == 1:
            fill: tuple[int, ...] | Image.Image = tuple(int(c + 0.5) for c in color.clip(0, 255))
        else:
            fill = Image.fromarray((color + 0.5).clip(0, 255).astype(np.uint8), mode="RGB")
        self.image.paste(fill, box, mask)

    def paint_chromatin(self, mask: np.ndarray, dark: Color, light: Color, kind: str) -> None:
        """Paint nuclear texture into ``mask``: 'dense', 'clumped' (coarse blocks), 'fine' or 'lacy'."""
        box = bounding_box(mask)
        if box is None:
            return
        ys, xs = box
        shape = (ys.stop - ys.start, xs.stop - xs.start)
        scale = self.size / 250
        if kind == "dense":
            mix = 0.85 + 0.15 * self.noise(3 * scale, shape)
        elif kind == "clumped":
            coarse = self.noise(self.size / 22, shape)
            mix = 0.55 + 0.45 * np.clip((coarse - 0.45) * 4, 0, 1)
        elif kind == "lacy":
            mix = 0.45 + 0.4 * self.noise(self.size / 40, shape) + 0.15 * self.grain(shape)
        elif kind == "fine":
            mix = 0.35 + 0.35 * self.noise(2.5 * scale, shape) + 0.15 * self.noise(self.size / 12, shape)
        else:
            raise ValueError(f"unknown chromatin kind {kind!r}")
        d = np.asarray(dark, dtype=np.float32)
        lt = np.asarray(light, dtype=np.float32)
        field = lt + (d - lt) * np.clip(mix, 0, 1)[..., None]
        self._blend(ys, xs, field, mask[ys, xs])

    def dots(
        self,
        region: np.ndarray,
        count: int,
        radius: tuple[float, float],
        color: Color,
        opacity: float = 0.9,
        elongation: float = 1.0,
    ) -> None:
        """Scatter ``count`` small dots (granules, vacuoles, nucleoli) uniformly inside ``region``."""
        candidates = np.flatnonzero(region > 0.5)
        if count <= 0 or candidates.size == 0:
            return
        picks = self.rng.choice(candidates, size=count)
        ys, xs = np.divmod(picks, self.size)
        radii = self.rng.uniform(*radius, size=count)
        strength = self.rng.integers(160, 256, size=count)
        img = Image.new("L", (self.size, self.size), 0)
        draw = ImageDraw.Draw(img)
        for x, y, r, s in zip(xs.tolist(), ys.tolist(), radii.tolist(), strength.tolist(), strict=True):
            rx = r * elongation
            draw.ellipse((x - rx, y - r, x + rx, y + r), fill=int(s))
        self.paint(np.asarray(img, dtype=np.float32) / 255.0 * region, color, opacity)

    def red_cells(self, count: int) -> None:
        """Background erythrocytes: pink discs with a paler centre, some cut by the frame."""
        s = self.size
        discs, centers = Shape(), Shape()
        for _ in range(count):
            r = self.uniform(0.09, 0.13) * s
            x, y = self.uniform(-0.05, 1.05) * s, self.uniform(-0.05, 1.05) * s
            discs.polygons.append(
                blob(x, y, r, r * self.uniform(0.85, 1.0), self.uniform(0, 3.2), self.rng, 0.03, 32)
            )
            centers.circles.append((x, y, r * 0.45))
        self.paint(self.mask(discs), self.jitter(RBC, 8), self.uniform(0.75, 0.95))
        self.paint(self.mask(centers, blur=0.02 * s), RBC_CENTER, 0.6)

    # --- placement and output ---------------------------------------------------------------
    def place(self, radius: tuple[float, float], aspect: tuple[float, float] = (0.88, 1.0)) -> Cell:
        """A cell near the centre with random position, size, rotation and elongation."""
        s = self.size
        return Cell(
            cx=s / 2 + self.uniform(-0.07, 0.07) * s,
            cy=s / 2 + self.uniform(-0.07, 0.07) * s,
            r=self.uniform(*radius) * s,
            angle=self.uniform(0, 2 * math.pi),
            aspect=self.uniform(*aspect),
        )

    def finish(self, blur: float | None = None) -> Image.Image:
        """Stain/brightness jitter, grain and a soft blur; returns the 8-bit RGB image."""
        # Per-channel gain (stain), global contrast and brightness as one lookup table.
        gain = self.rng.uniform(0.95, 1.05, size=3) * self.uniform(0.9, 1.1)
        offset = 128.0 + self.uniform(-12, 12) - 128.0 * gain
        levels = np.arange(256, dtype=np.float64)
        lut = np.concatenate([levels * g + o for g, o in zip(gain, offset, strict=True)])
        img = self.image.point(np.clip(lut + 0.5, 0, 255).astype(np.uint8).tolist())
        dy, dx = (int(v) for v in self.rng.integers(0, self.size, size=2))
        grain = _grain_tile(self.size).crop((dx, dy, dx + self.size, dy + self.size))
        img = ImageChops.add(img, grain, offset=-_GRAIN)
        if blur is not None:
            return img.filter(ImageFilter.GaussianBlur(blur))
        # A fractional box blur: as soft as a small Gaussian at a third of the cost.
        return img.filter(ImageFilter.BoxBlur(self.uniform(0.4, 0.9) * self.size / 250))
