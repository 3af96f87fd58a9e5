"""The contact sheet: for each direction a few examples, one row each, columns input | attention |
translation, every row labelled with its direction and every column titled, so a person can look
before trusting the data (drawn by `ssagan_tf.figures`)."""

from __future__ import annotations

import numpy as np

from ssagan_tf import figures

COLUMN_TITLES = ("input", "attention", "translation")


def direction_label(direction: str) -> str:
    """`normal_to_tumor` -> `normal -> tumor`."""
    return direction.replace("_to_", " -> ")


def sheet_row(image: np.ndarray, attention: np.ndarray, translated: np.ndarray) -> tuple:
    """Three [0, 1] tiles: the first channel of input and translation (in [-1, 1]), the attention."""
    return figures.to_unit(image), figures.to_unit(attention, 0.0, 1.0), figures.to_unit(translated)


def contact_sheet(groups: list):
    """`groups`: (direction, rows from `sheet_row`) per direction -> the labelled figure."""
    tiles, labels = [], []
    for direction, rows in groups:
        tiles += [list(row) for row in rows]
        labels += [direction_label(direction)] * len(rows)
    return figures.labelled_grid(tiles, list(COLUMN_TITLES), labels,
                                 title="Synthetic slices: input | attention (0 black, 1 white) | translation")


def write_png(path: str, figure) -> str:
    figures.save(figure, path)
    return path
