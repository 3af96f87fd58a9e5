"""ssagan_tf/figures.py by value: images to grey levels (`to_unit`) and to PNG bytes (`to_uint8`),
the plain tiling (`tile`), and a figure written whole or not at all (`save`). The labelled grids
are tested through their users (tests/README.md)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ssagan_tf import figures


def test_to_unit_maps_minus_one_to_one_onto_grey_levels_and_clips_beyond():
    np.testing.assert_array_equal(figures.to_unit(np.array([[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]])),
                                  np.array([[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]], np.float32))
    attention = np.array([[-0.1, 0.0, 0.3, 1.0, 1.2]])
    np.testing.assert_array_equal(figures.to_unit(attention, 0.0, 1.0),
                                  np.array([[0.0, 0.0, 0.3, 1.0, 1.0]], np.float32))
    assert figures.to_unit(np.zeros((2, 2), np.float64)).dtype == np.float32


def test_to_unit_takes_the_first_channel_of_an_image_and_of_a_batch():
    image = np.stack([np.full((2, 3), -1.0), np.full((2, 3), 1.0)], axis=-1)      # [H, W, 2]
    np.testing.assert_array_equal(figures.to_unit(image), np.zeros((2, 3), np.float32))
    batch = np.stack([image, -image])                                              # [2, H, W, 2]
    np.testing.assert_array_equal(figures.to_unit(batch), np.stack([np.zeros((2, 3)), np.ones((2, 3))]))


def test_to_uint8_by_value_at_the_ends_the_middle_and_beyond():
    grey = figures.to_unit(np.array([-1.5, -1.0, 0.0, 1.0, 1.5], np.float32)[None])
    np.testing.assert_array_equal(figures.to_uint8(grey), [[0, 0, 128, 255, 255]])     # 127.5 to even
    levels = figures.to_uint8(np.array([-0.2, 0.0, 0.5 / 255, 1.49 / 255, 1.51 / 255, 254.5 / 255, 1.0, 7.0]))
    np.testing.assert_array_equal(levels, [0, 0, 0, 1, 2, 254, 255, 255])
    assert levels.dtype == np.uint8


def test_tile_lays_images_out_row_by_row_with_white_between_and_around():
    images = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    expected = np.array([[1, 1, 1, 1, 1, 1, 1],
                         [1, 0, 1, 1, 4, 5, 1],
                         [1, 2, 3, 1, 6, 7, 1],
                         [1, 1, 1, 1, 1, 1, 1],
                         [1, 8, 9, 1, 1, 1, 1],        # the third image; its row's second slot white
                         [1, 10, 11, 1, 1, 1, 1],
                         [1, 1, 1, 1, 1, 1, 1]], np.float32)
    tiled = figures.tile(images, columns=2, padding=1)
    np.testing.assert_array_equal(tiled, expected)
    assert tiled.dtype == np.float32
    np.testing.assert_array_equal(figures.tile(images[:2], columns=2, padding=0), [[0, 1, 4, 5], [2, 3, 6, 7]])
    np.testing.assert_array_equal(figures.tile(images[:2], columns=1, padding=0), [[0, 1], [2, 3], [4, 5], [6, 7]])


def test_save_writes_png_and_pdf_whole_and_a_failing_draw_leaves_the_old_files(tmp_path, monkeypatch):
    figure = figures.labelled_grid([[np.zeros((4, 4)), None]], ["a", "b"], ["row"])
    written = figures.save(figure, str(tmp_path / "sheet.png"), vector=True)
    assert written == [str(tmp_path / "sheet.png"), str(tmp_path / "sheet.pdf")]
    assert sorted(os.listdir(tmp_path)) == ["sheet.pdf", "sheet.png"]
    old = (tmp_path / "sheet.png").read_bytes()
    assert old.startswith(b"\x89PNG") and (tmp_path / "sheet.pdf").read_bytes().startswith(b"%PDF")

    def cut(path, **kw):                     # half a file, then the process is stopped
        with open(path, "wb") as f:
            f.write(old[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(figure, "savefig", cut)
    with pytest.raises(KeyboardInterrupt):
        figures.save(figure, str(tmp_path / "sheet.png"))
    assert (tmp_path / "sheet.png").read_bytes() == old and sorted(os.listdir(tmp_path)) == ["sheet.pdf", "sheet.png"]
