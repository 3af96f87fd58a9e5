"""Every converter flag reaches the ConvertConfig, and bad values are refused before any work."""

import pytest
from absl import flags

from data_prep import convert_cli


@pytest.fixture
def parse(tmp_path):
    def _parse(*extra):
        flags.FLAGS.unparse_flags()
        flags.FLAGS(["convert", f"--input={tmp_path}", "--format=pairs", f"--output_dir={tmp_path / 'out'}",
                     "--mask_replace=_img:_seg", *extra])
        return convert_cli.config_from_flags()
    yield _parse
    flags.FLAGS.unparse_flags()


def test_every_flag_lands_in_the_config(parse):
    config = parse("--modalities=flair,t1ce", "--image_size=128", "--image_glob=*/*_img.nrrd", "--patient_level=2",
                   "--class_folders=tumor=1,healthy=0", "--mask_suffix=_seg", "--min_tumor_pixels=5",
                   "--normal_margin=3", "--slice_range=10:", "--min_brain_fraction=0.2", "--percentiles=1,99",
                   "--train_fraction=0.5", "--val_fraction=0.2", "--labelled_fraction=0.25", "--seed=7",
                   "--num_shards=4", "--workers=1", "--strict", "--overwrite")
    reader, prep = config.reader, config.prep
    assert reader.modalities == ("flair", "t1ce") and reader.image_glob == "*/*_img.nrrd"
    assert reader.mask_replace == ("_img", "_seg") and reader.patient_level == 2
    assert reader.class_folders == (("tumor", 1), ("healthy", 0)) and reader.mask_suffix == "_seg"
    assert prep.image_size == 128 and prep.min_tumor_pixels == 5 and prep.normal_margin == 3
    assert prep.slice_range == (10, None) and prep.min_brain_fraction == 0.2 and prep.percentiles == (1.0, 99.0)
    assert (config.train_fraction, config.val_fraction, config.labelled_fraction) == (0.5, 0.2, 0.25)
    assert (config.seed, config.num_shards, config.workers, config.strict, config.overwrite) == (7, 4, 1, True, True)


def test_slice_range_forms(parse):
    assert parse("--slice_range=:20").prep.slice_range == (None, 20)
    assert parse("--slice_range=5:20").prep.slice_range == (5, 20)


@pytest.mark.parametrize("extra, message", [
    (("--slice_range=a:b",), "--slice_range"),
    (("--class_folders=yes=2",), "--class_folders"),
    (("--percentiles=1",), "--percentiles"),
    (("--percentiles=99,1",), "--percentiles"),
    (("--modalities=dwi",), "--modalities"),
    (("--assume_normal",), "--assume_normal"),
    (("--labelled_fraction=1.5",), "--labelled_fraction"),
    (("--num_shards=0",), "--num_shards"),
])
def test_bad_values_are_refused(parse, extra, message):
    with pytest.raises(ValueError, match=message):
        parse(*extra)
