"""ssagan_tf/augment/config.py: values checked at construction with every problem in one message,
the folders by check_inputs(); the ratio and direction parsers."""

import os

import pytest

from ssagan_tf.augment.config import AugmentConfig, parse_directions, parse_ratio
from ssagan_tf.data.schema import DIRECTIONS


def test_every_bad_value_is_named_in_one_message_without_touching_the_disk():
    with pytest.raises(ValueError, match=r"ratio must be > 0 .*; format must be one of .*; batch_size must be >= 1"):
        AugmentConfig(model="nowhere", data_dir="nowhere", output_dir="out", ratio=0, format="jpeg", batch_size=0)
    AugmentConfig(model="nowhere", data_dir="nowhere", output_dir="out")      # values fine; folders not read yet


def test_check_inputs_refuses_missing_folders_and_outputs_inside_the_data(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="model 'nowhere': no such directory"):
        AugmentConfig(model="nowhere", data_dir=tiny_dataset, output_dir=str(tmp_path / "out")).check_inputs()
    with pytest.raises(ValueError, match="is inside the input dataset"):
        AugmentConfig(model=str(tmp_path), data_dir=tiny_dataset,
                      output_dir=os.path.join(tiny_dataset, "aug")).check_inputs()
    AugmentConfig(model=str(tmp_path), data_dir=tiny_dataset, output_dir=str(tmp_path / "out")).check_inputs()


def test_parsers():
    assert parse_directions("both") == DIRECTIONS
    assert parse_directions("tumor_to_normal,normal_to_tumor") == DIRECTIONS
    assert parse_ratio("all") is None and parse_ratio("0.5") == 0.5
    with pytest.raises(ValueError, match="ratio must be a positive number"):
        parse_ratio("-1")
