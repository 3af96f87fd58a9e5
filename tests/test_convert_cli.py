"""Every converter flag reaches the ConvertConfig, and bad values are refused before any work."""

import pytest
from absl import flags

from data_prep import convert_cli
from ssagan_tf.settings import ConfigError


@pytest.fixture
def parse(tmp_path):
    def _parse(*extra):
        flags.FLAGS.unparse_flags()
        (tmp_path / "in").mkdir(exist_ok=True)      # the output lies beside the input, never inside it
        flags.FLAGS(["convert", f"--input={tmp_path / 'in'}", "--format=pairs", f"--output_dir={tmp_path / 'out'}",
                     "--mask_replace=_img:_seg", *extra])
        return convert_cli.config_from_flags()
    yield _parse
    flags.FLAGS.unparse_flags()


def test_every_flag_lands_in_the_config(parse):
    config = parse("--modalities=flair,t1ce", "--modality_replace=t1ce=_img:_t1ce", "--image_size=128",
                   "--image_glob=*/*_img.nrrd", "--patient_level=2",
                   "--class_folders=tumor=1,healthy=0", "--mask_suffix=_seg", "--min_tumor_pixels=5",
                   "--normal_margin=3", "--slice_range=10:", "--min_brain_fraction=0.2", "--percentiles=1,99",
                   "--train_fraction=0.5", "--val_fraction=0.2", "--labelled_fraction=0.25", "--seed=7",
                   "--num_shards=4", "--workers=1", "--strict", "--overwrite", "--nomatch_anatomy",
                   "--dedupe=drop", "--keep_splits", "--min_brain_ratio=0.3", "--brain_length_mm=100",
                   "--field_of_view=pad", "--storage=uint8", "--compression=none", "--no_masks", "--assume_normal",
                   "--stack_slices=off")
    reader, prep = config.reader, config.prep
    assert reader.no_masks and prep.assume_normal and reader.stack_slices == "off"
    assert (config.storage, config.compression) == ("uint8", "none")
    assert reader.modalities == ("flair", "t1ce") and reader.image_glob == "*/*_img.nrrd"
    assert reader.modality_replace == (("t1ce", "_img", "_t1ce"),) and reader.keep_splits
    assert not config.match_anatomy and config.dedupe == "drop" and prep.min_brain_ratio == 0.3
    assert prep.brain_length_mm == 100.0 and prep.field_of_view == "pad"
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
    (("--modalities=t1ce,flair",), "--modality_replace"),
    (("--modality_replace=flair=_img",), "--modality_replace"),
    (("--channel_names=t1,flair",), "--channel_names"),
    (("--workers=-1",), "--workers"),
    (("--min_brain_fraction=1.5",), "--min_brain_fraction"),
    (("--min_brain_fraction=-0.1",), "--min_brain_fraction"),
    (("--slice_range=5:2",), "--slice_range"),
    (("--slice_range=-3:",), "--slice_range"),
    (("--min_tumor_pixels=0",), "--min_tumor_pixels"),
    (("--min_tumor_pixels=70000",), "--min_tumor_pixels"),
    (("--no_masks",), "--assume_normal"),
    (("--assume_normal",), "--assume_normal"),
    (("--labelled_fraction=1.5",), "--labelled_fraction"),
    (("--num_shards=0",), "--num_shards"),
    (("--brain_length_mm=-5",), "--brain_length_mm"),
])
def test_bad_values_are_refused(parse, extra, message):
    with pytest.raises(ValueError, match=message):
        parse(*extra)


def test_every_flag_that_does_not_parse_is_named_in_one_error(parse):
    with pytest.raises(ConfigError, match=r"^--class_folders=yes=2: 'yes=2': the label must be 0 or 1; "
                                          r"--slice_range=a:b: must be START:STOP .*; --percentiles=1: must be two "
                                          r"numbers$"):
        parse("--class_folders=yes=2", "--slice_range=a:b", "--percentiles=1")


def test_the_folders_and_the_format_are_required_all_at_once():
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["convert"])
    try:
        with pytest.raises(ConfigError, match="^--input is required; --format is required; --output_dir is required$"):
            convert_cli.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()


def test_field_of_view_defaults_to_fit_and_refuses_other_values(parse):
    assert parse().prep.field_of_view == "fit" and parse().prep.brain_length_mm == 120.0
    with pytest.raises(flags.IllegalFlagValueError):
        parse("--field_of_view=zoom")


def test_default_modalities_follow_the_format(parse):
    from data_prep.convert import _modalities

    assert parse().reader.modalities == ("image",)
    assert parse("--modalities=flair").reader.modalities == ("flair",)
    folders = parse("--format=folders", "--channel_names=t1,flair,t1ce")
    assert folders.reader.modalities == ("t1", "flair", "t1ce") and _modalities(folders, 3) == ["t1", "flair", "t1ce"]
    assert _modalities(parse("--format=folders", "--channel_names=rgb"), 1) == ["image"]
    assert _modalities(parse("--format=figshare", "--channel_names=t1ce"), 1) == ["t1ce"]
    with pytest.raises(ValueError, match="--channel_names"):
        parse("--format=figshare", "--channel_names=t1,flair")


def _help(module):
    import os
    import subprocess
    import sys

    from conftest import HANG_TIMEOUT, REPO_ROOT

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=HANG_TIMEOUT)


@pytest.mark.slow
def test_help_lists_every_flag_and_exits_0():
    done = _help("data_prep.convert")
    assert done.returncode == 0, done.stderr
    for name in ("input", "format", "output_dir", "channel_names", "modalities", "stack_slices", "match_anatomy",
                 "dedupe", "keep_splits", "modality_replace", "min_brain_ratio", "workers", "slice_range",
                 "brain_length_mm", "field_of_view"):
        assert f"--{name}:" in done.stdout or f"--[no]{name}:" in done.stdout, name
    text = " ".join(done.stdout.split())
    assert "in proportion to the tumor slices' positions" in text   # --match_anatomy says how it matches
    assert "0.9 of the frame" in text and "the earlier behaviour" in text   # --field_of_view
    phantom = _help("data_prep.phantom")
    assert phantom.returncode == 0 and "--cases" in phantom.stdout and "--seed" in phantom.stdout


@pytest.mark.slow
def test_cli_refuses_the_input_as_output_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from test_convert_ownership import snapshot, write_keep_splits_pairs

    data = write_keep_splits_pairs(tmp_path / "in")
    before = snapshot(data)
    proc = subprocess.run([sys.executable, "-m", "data_prep.convert", f"--input={data}", "--format=pairs",
                           f"--output_dir={data}", "--image_glob=*/*/scan_flair.nii.gz", "--mask_replace=_flair:_seg",
                           "--keep_splits", "--overwrite", "--image_size=24"], cwd=REPO_ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    lines = proc.stderr.strip().splitlines()      # refused before any work: a usage error, exit 2
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr
    assert "--output_dir" in lines[0] and "is --input" in lines[0]
    assert snapshot(data) == before
