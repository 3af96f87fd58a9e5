"""ssagan_tf/training/summaries.py: the console line, TensorBoard events readable as scalars and
images, the translation grid's layout, sample PNGs."""

import glob
import os

import numpy as np
import tensorflow as tf

from ssagan_tf import figures
from ssagan_tf.models import ModelConfig, build_models
from ssagan_tf.training import summaries


def test_progress_line_shows_the_named_terms_throughput_and_eta():
    line = summaries.ProgressLine(total_steps=100, steps_per_epoch=40).line(
        20, {"generator_total": 1.5, "cycle_normal": 0.25, "not_shown": 9.0}, 4.0, 0.5)
    assert line == "step 20/100 (epoch 0.50) | G 1.5000 cyc_n 0.2500 | 4.0 slices/s, 0.500 s/step | ETA 0:00:40"


def test_scalars_and_images_are_written_as_tensorboard_reads_them(tmp_path):
    board = summaries.Summaries(str(tmp_path))
    board.scalars(3, {"cycle_normal": 0.5}, prefix="loss/")
    board.image(3, "translations", np.full((4, 8, 1), 0.5, np.float32))
    board.close()
    events = [e for path in glob.glob(str(tmp_path / "events*")) for e in tf.compat.v1.train.summary_iterator(path)]
    values = {v.tag: (e.step, v) for e in events for v in e.summary.value}
    assert values["loss/cycle_normal"][0] == 3 and float(tf.make_ndarray(values["loss/cycle_normal"][1].tensor)) == 0.5
    width, height, png = tf.make_ndarray(values["translations"][1].tensor)
    assert (width, height) == (b"8", b"4") and tf.io.decode_png(png).shape == (4, 8, 1)
    summaries.Summaries(None).scalars(1, {"x": 1.0})               # non-chief workers: a no-op writer


def test_translation_grid_rows_and_columns(tmp_path):
    models = build_models(ModelConfig.for_system("ssa_cyclegan", image_size=32, channels=1, ngf=4, ndf=4,
                                                 n_res_blocks=0))
    normal = np.full((2, 32, 32, 1), -1.0, np.float32)
    tumor = np.ones((2, 32, 32, 1), np.float32)
    grid = summaries.translation_grid(models, normal, tumor, tau=0.1)
    assert grid.shape == (4 * 32, 4 * 32, 1) and grid.min() >= 0 and grid.max() <= 1
    # Column 0 is the input, shown in [0, 1]: normal rows first (all -1 -> 0), then tumor (1 -> 1).
    assert np.all(grid[:64, :32] == 0.0) and np.all(grid[64:, :32] == 1.0)
    rows = summaries.translation_rows(models, normal, tumor, tau=0.1)
    np.testing.assert_array_equal(summaries.grid_image(rows), grid)
    words = figures.texts(summaries.translation_figure(rows, 7))
    assert {"input", "attention", "translation", "reconstruction", "Translations at step 7"} <= set(words)
    assert words.count("normal -> tumor") == 2 and words.count("tumor -> normal") == 2
    path = os.path.join(tmp_path, "step_00000007.png")
    figures.save(summaries.translation_figure(rows, 7), path)
    image = tf.io.decode_png(open(path, "rb").read()).numpy()
    assert image.shape[2] in (3, 4) and 200 < image.shape[0] < 2000 and 200 < image.shape[1] < 2000
    assert os.listdir(tmp_path) == ["step_00000007.png"]


def _events(log_dir):
    events = [e for path in glob.glob(os.path.join(log_dir, "events*")) for e in tf.compat.v1.train.summary_iterator(path)]
    return {v.tag: v for e in events for v in e.summary.value}


def _config(tmp_path, **kw):
    from ssagan_tf.training.config import RunConfig

    model = ModelConfig.for_system(kw.pop("system", "ssa_cyclegan"), image_size=32, channels=1, ngf=4, ndf=4)
    return RunConfig(data_dir="data", model_dir=str(tmp_path), model=model, **kw)


def test_tags_carry_descriptions_the_config_is_text_and_hparams_are_written(tmp_path):
    board = summaries.Summaries(str(tmp_path / "logs"))
    board.scalars(1, {"cycle_normal": 0.5}, prefix="loss/")
    board.image(1, "translations", np.zeros((4, 8, 1), np.float32), description=summaries.grid_description(2))
    board.run_settings(0, _config(tmp_path, lambda_cycle=7.0), fresh=True)
    board.close()
    tags = _events(str(tmp_path / "logs"))
    assert tags["loss/cycle_normal"].metadata.summary_description.startswith("lambda_cycle x L1")
    assert "Columns: input | attention" in tags["translations"].metadata.summary_description
    assert "2 normal->tumor example(s), then 2 tumor->normal" in tags["translations"].metadata.summary_description
    text = tf.make_ndarray(tags["config"].tensor).item().decode()
    assert tags["config"].metadata.plugin_data.plugin_name == "text" and "| lambda_cycle | `7.0` |" in text
    assert "| model.ngf | `4` |" in text
    from tensorboard.plugins.hparams import metadata as hparams_metadata, plugin_data_pb2

    session = plugin_data_pb2.HParamsPluginData.FromString(
        tags[hparams_metadata.SESSION_START_INFO_TAG].metadata.plugin_data.content).session_start_info
    assert session.hparams["lambda_cycle"].number_value == 7.0
    assert session.hparams["model.system"].string_value == "ssa_cyclegan"
    assert "model_dir" not in session.hparams


def test_zero_weight_terms_are_not_logged_and_attention_means_go_under_attention(tmp_path):
    from types import SimpleNamespace

    from ssagan_tf.training import actions
    from ssagan_tf.training.schedule import Schedule

    config = _config(tmp_path, system="attention_cyclegan", log_every=1)      # no mask loss, no identity, no area
    assert summaries.zero_weight_terms(config) == {"identity", "attention_area", "attention_mask"}
    assert summaries.zero_weight_terms(_config(tmp_path, lambda_identity=0.5, attention_area=0.2)) == set()
    board = summaries.Summaries(str(tmp_path / "logs"))
    state = SimpleNamespace(generator_optimizer=SimpleNamespace(learning_rate=2e-4))
    throughput = actions.Throughput()
    throughput.add(0.5)
    lines = []
    log = actions.LogProgress(config, Schedule.from_config(config, 10), state, board, throughput,
                              SimpleNamespace(write=lines.append, flush=lambda: None))
    log(1, {"generator_total": 1.0, "cycle_normal": 0.5, "identity": 0.0, "attention_mask": 0.0,
            "attention_area": 0.0, "attention_normal_mean": 0.3, "attention_tumor_mean": 0.2})
    board.close()
    tags = set(_events(str(tmp_path / "logs")))
    assert {"loss/generator_total", "loss/cycle_normal", "attention/attention_normal_mean",
            "attention/attention_tumor_mean", "train/learning_rate"} <= tags
    assert not tags & {"loss/identity", "loss/attention_mask", "loss/attention_area", "loss/attention_normal_mean"}
    assert " mask " not in "".join(lines) and "A_n 0.3000" in "".join(lines)


def test_the_attention_freeze_is_announced_once_when_the_warm_up_ends(tmp_path):
    from ssagan_tf.training import actions
    from ssagan_tf.training.schedule import Schedule

    schedule = Schedule.from_config(_config(tmp_path, attention_epochs=2, epochs=4), 10)
    lines = []
    announce = actions.AnnounceFreeze(schedule, lines.append)
    for step in range(1, 41):
        if announce.due(step):
            announce(step, {})
    assert lines == ["attention frozen at epoch 2 (step 20); from here A_n and A_t no longer change"]
    never = actions.AnnounceFreeze(Schedule.from_config(_config(tmp_path, system="cyclegan"), 10), lines.append)
    assert not any(never.due(step) for step in range(1, 1001))
