"""Labelled figures, drawn with matplotlib on its Agg backend (no display needed): the one image
grid every sheet of slices uses (conversion, augmentation, training samples, evaluation samples),
with row labels and column titles, and the writing of a figure as PNG (and PDF) atomically. Also
the one way images become grey levels (`to_unit`; `to_uint8` for PNG bytes) and the one plain
tiling, without labels (`tile`: TensorBoard's sample grid).

Figures are `matplotlib.figure.Figure` objects with their own Agg canvas, never pyplot: nothing is
global, nothing opens a window, and a figure is freed when it is dropped. `texts(figure)` lists
every label a figure carries, so tests can check a figure's words before it is written.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from skimage.util import montage

from ssagan_tf import io as durable

OUTLINE_COLOR = "red"


def new_figure(width: float, height: float) -> Figure:
    """A figure of `width` x `height` inches on an Agg canvas."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def to_unit(image: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """The first channel of an image [H, W, C] or of a batch of them [..., H, W, C] (a 2-D map
    [H, W] as it is) in [low, high], as [0, 1] grey levels, float32."""
    image = np.asarray(image, np.float32)
    if image.ndim >= 3:
        image = image[..., 0]
    return np.clip((image - low) / (high - low), 0.0, 1.0)


def to_uint8(grey: np.ndarray) -> np.ndarray:
    """[0, 1] grey levels as 0..255 bytes (rounded to the nearest level, halves to even; clipped)."""
    return np.round(np.clip(grey, 0, 1) * 255).astype(np.uint8)


def labelled_grid(tiles: list, column_titles: list, row_labels: list, title: str | None = None,
                  outlines: list | None = None, tile_inches: float = 1.3) -> Figure:
    """`tiles[r][c]`: a 2-D image in [0, 1] (grey) or None (left blank); one row label per row
    (on the left), one title per column (above the first row); `outlines[r][c]`: an optional
    boolean mask drawn as a red contour on its tile."""
    rows, columns = len(tiles), max(len(row) for row in tiles)
    figure = new_figure(tile_inches * columns + 1.2, tile_inches * rows + 0.5 + 0.3 * bool(title))
    axes = figure.subplots(rows, columns, squeeze=False)
    for r in range(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            tile = tiles[r][c] if c < len(tiles[r]) else None
            if tile is None:
                ax.set_frame_on(False)
            else:
                ax.imshow(tile, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
                outline = outlines[r][c] if outlines is not None and c < len(outlines[r]) else None
                if outline is not None and np.any(outline) and not np.all(outline):
                    ax.contour(np.asarray(outline, np.float32), levels=[0.5], colors=OUTLINE_COLOR, linewidths=0.8)
            if r == 0 and c < len(column_titles):
                ax.set_title(column_titles[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def texts(figure: Figure) -> list:
    """Every non-empty text on the figure: its title, the axes' titles and labels, tick labels,
    legend entries and free text."""
    from matplotlib.text import Text

    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def save(figure: Figure, path: str, vector: bool = False) -> list:
    """Write `figure` to `path` (a .png) atomically, and with `vector` also as PDF beside it (the
    same name with .pdf). Returns the paths written."""
    stem, _ = os.path.splitext(path)
    written = []
    for extension in (".png", ".pdf") if vector else (".png",):
        with durable.atomic_output(stem + extension, suffix=extension) as temp:
            figure.savefig(temp, dpi=150 if extension == ".png" else None)
        written.append(stem + extension)
    return written


def tile(images: np.ndarray, columns: int, padding: int = 2) -> np.ndarray:
    """A plain tiling, no labels (`skimage.util.montage`): [K, H, W] images, row by row,
    `columns` per row, white (1.0) between and around them and in the slots of a last row left
    short; returns float32 [rows * (H + padding) + padding, columns * (W + padding) + padding]."""
    images = np.asarray(images, np.float32)
    rows = int(np.ceil(len(images) / columns))
    return montage(images, grid_shape=(rows, columns), padding_width=padding, fill=1.0)
