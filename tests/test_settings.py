"""ssagan_tf/settings.py: flags generated from config fields (kind, default, help, choices, the
module `--help` lists them under), old spellings, and run_train.py's flags all read into its config."""

import dataclasses

import pytest
from absl import flags

from ssagan_tf import precision, settings
from ssagan_tf.settings import setting


@dataclasses.dataclass(frozen=True)
class Toy:
    path: str                                        # no help: not a flag
    where: str = setting(help="Where; required.")
    size: int = setting(4, "How many.")
    rate: float = setting(0.5, "How fast.")
    on: bool = setting(True, "Whether.")
    names: tuple = setting(("a", "b"), "Which.")
    kind: str = setting("x", "What kind.", choices=("x", "y"))
    judge: str = setting("", "The judge.", aliases=("judge_dir",))


def fresh():
    return flags.FlagValues()


def test_flags_take_kind_default_help_and_choices_from_the_fields():
    values = fresh()
    names = settings.define_flags(Toy, flag_values=values)
    assert names == ("where", "size", "rate", "on", "names", "kind", "judge")
    assert "path" not in values
    assert isinstance(values["size"], flags.Flag) and values["size"].default == 4 and values["size"].help == "How many."
    assert isinstance(values["on"], flags.BooleanFlag) and values["on"].default is True
    assert values["rate"].default == 0.5 and values["names"].default == ["a", "b"] and values["where"].default is None
    assert values["kind"].parser.enum_values == ["x", "y"]
    values(["prog", "--size=7", "--rate=2.5", "--noon", "--names=c,d,e", "--kind=y", "--where=/w"])
    assert settings.read_flags(names, values) == {"where": "/w", "size": 7, "rate": 2.5, "on": False,
                                                  "names": ("c", "d", "e"), "kind": "y", "judge": ""}
    with pytest.raises(flags.IllegalFlagValueError):
        values(["prog", "--kind=z"])


def test_flags_are_listed_under_the_calling_module():
    values = fresh()
    settings.define_flags(Toy, ["size"], flag_values=values)
    assert [f.name for f in values.get_flags_for_module(__name__)] == ["size"]
    precision.define_flag("of the toy", "A note.", flag_values=values)
    listed = {f.name: f for f in values.get_flags_for_module(__name__)}
    assert set(listed) == {"size", "precision"}
    assert listed["precision"].help.startswith("<auto|fp32|bf16|fp16>: Compute precision of the toy. fp32: float32 everywhere")
    assert listed["precision"].help.endswith("A note.") and listed["precision"].default == "auto"
    assert listed["precision"].parser.enum_values == list(precision.PRECISIONS)


def test_an_old_spelling_sets_the_setting_and_says_once_it_is_old(capsys):
    values = fresh()
    names = settings.define_flags(Toy, ["judge"], flag_values=values)
    values(["prog", "--judge_dir=/j"])
    assert settings.read_flags(names, values) == {"judge": "/j"}
    err = capsys.readouterr().err
    assert err.count("--judge_dir is an old spelling of --judge") == 1
    values = fresh()
    settings.define_flags(Toy, ["judge"], flag_values=values)
    values(["prog", "--judge=/j"])
    assert settings.read_flags(names, values) == {"judge": "/j"} and capsys.readouterr().err == ""


def test_a_setting_without_help_or_of_an_unknown_kind_is_refused():
    @dataclasses.dataclass
    class Bad:
        quiet: int = setting(1, "")
        odd: dict = setting(default_factory=dict, help="A dict.")

    with pytest.raises(ValueError, match="--quiet: a setting without help text"):
        settings.define_flags(Bad, ["quiet"], flag_values=fresh())
    with pytest.raises(TypeError, match="--odd: no flag kind"):
        settings.define_flags(Bad, ["odd"], flag_values=fresh())


PROBE_TRAIN = """
import json
from absl import flags
from ssagan_tf import settings
from ssagan_tf.commands import train
from ssagan_tf.models.config import ModelConfig
from ssagan_tf.training.config import RunConfig

defaults = {}
for cls, names in ((RunConfig, train.RUN_FLAGS), (ModelConfig, train.MODEL_FLAGS)):
    for name in names:
        field = settings.field_of(cls, name)
        default = settings.default_of(field)
        flag = flags.FLAGS[settings.flag_name(field)]
        defaults[flag.name] = flag.default == (list(default) if isinstance(default, tuple) else default)
print(json.dumps({"defined": sorted(f.name for f in flags.FLAGS.get_flags_for_module(train.__name__)),
                  "own": list(train.OWN_SETTINGS), "defaults": defaults}))
"""


def test_run_train_reads_every_flag_it_defines_into_its_config():
    """In a process of its own: the commands define their flags on absl's global FLAGS."""
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", PROBE_TRAIN], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    cross_validation = {"folds", "fold", "fold_seed", "tumor_fraction"}     # the entry point's own, read apart
    old_spellings = {"model", "judge_dir"}
    assert set(found["defined"]) - cross_validation - old_spellings == set(found["own"]) | set(found["defaults"])
    assert {"judge", "ngf", "epochs"} <= set(found["defaults"]) and "system" in found["own"]
    assert all(found["defaults"].values()), found["defaults"]              # each flag's default is its field's


def test_a_list_setting_without_a_default_says_its_kind():
    @dataclasses.dataclass
    class Listed:
        names: tuple = setting(("x",), "Which, by default the caller's choice.", flag_default=None, kind=tuple)

    values = fresh()
    names = settings.define_flags(Listed, flag_values=values)
    assert values["names"].default is None and values["names"].flag_type() == "comma separated list of strings"
    values(["prog"])
    assert settings.read_fields(Listed, names, values) == {"names": None}
    values(["prog", "--names=a,b"])
    assert settings.read_fields(Listed, names, values) == {"names": ("a", "b")}


PROBE_CONVERT = """
import dataclasses
import json
from absl import flags
from data_prep import convert_cli
from ssagan_tf import settings

defaults = {}
for cls, names in convert_cli.SETTINGS.items():
    for name in names:
        field = settings.field_of(cls, name)
        default = field.metadata[settings.FLAG_DEFAULT]
        default = settings.default_of(field) if default is dataclasses.MISSING else default
        flag = flags.FLAGS[settings.flag_name(field)]
        defaults[flag.name] = flag.default == (list(default) if isinstance(default, tuple) else default)
print(json.dumps({"defined": sorted(f.name for f in flags.FLAGS.get_flags_for_module(convert_cli.__name__)),
                  "defaults": defaults}))
"""


def test_run_convert_reads_every_flag_it_defines_into_its_config():
    """Every flag `python -m data_prep.convert` defines is a field of ConvertConfig, ReaderOptions or
    PrepOptions that config_from_flags reads, with its field's default (or the flag's spelling of
    it); in a process of its own, as the command defines its flags on absl's global FLAGS."""
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT

    done = subprocess.run([sys.executable, "-c", PROBE_CONVERT], cwd=REPO_ROOT, capture_output=True, text=True,
                          check=True)
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["defined"] == sorted(found["defaults"]) and len(found["defined"]) == 36
    assert {"input", "modalities", "percentiles", "slice_range", "class_folders"} <= set(found["defined"])
    assert "input_dir" not in found["defined"]                     # the field keeps its name, the flag its own
    assert all(found["defaults"].values()), found["defaults"]


def test_problems_collects_every_message_into_one_error():
    problems = settings.Problems()
    problems.need(True, "never")
    problems.need(False, "a must be 1")
    problems.add("b must be 2")
    assert problems
    with pytest.raises(settings.ConfigError, match="^a must be 1; b must be 2$"):
        problems.raise_any()
    settings.Problems().raise_any()                 # nothing wrong: no error


def test_every_config_names_all_its_bad_values_in_one_config_error(tmp_path):
    from data_prep.convert import ConvertConfig
    from data_prep.readers import ReaderOptions
    from ssagan_tf.augment.config import AugmentConfig
    from ssagan_tf.evaluation.config import EvaluationConfig
    from ssagan_tf.models.config import ModelConfig
    from ssagan_tf.training.config import RunConfig

    cases = [
        (lambda: ModelConfig(ngf=0, n_res_blocks=-1), ["ngf must be >= 1", "n_res_blocks must be >= 0"]),
        (lambda: RunConfig(data_dir="d", model_dir="m", batch_size=0, tau=2.0),
         ["batch_size must be >= 1", "tau must be in [0, 1)"]),
        (lambda: AugmentConfig(model="m", data_dir="d", output_dir="o", batch_size=0, chunk_size=0),
         ["batch_size must be >= 1", "chunk_size must be >= 1"]),
        (lambda: EvaluationConfig(data_dir="d", output_dir="o", epochs=0, width=0),
         ["epochs=0: must be an integer >= 1", "width=0: must be an integer >= 1"]),
        (lambda: ConvertConfig(input_dir=str(tmp_path / "absent"), format="brats", output_dir=str(tmp_path / "o"),
                               num_shards=0, workers=-1), ["--num_shards must be >= 1", "--workers must be >= 0"]),
        (lambda: ConvertConfig(input_dir="", format=None, output_dir=""),
         ["--input is required", "--format is required", "--output_dir is required"]),
        (lambda: ReaderOptions(patient_level=-1, mask_suffix=""),
         ["--patient_level must be >= 0", "--mask_suffix is empty"]),
    ]
    for build, messages in cases:
        with pytest.raises(settings.ConfigError) as caught:
            build()
        assert all(m in str(caught.value) for m in messages), str(caught.value)


def test_a_convert_config_checks_its_folders_in_check_inputs_not_at_construction(tmp_path):
    from data_prep.convert import ConvertConfig

    config = ConvertConfig(input_dir=str(tmp_path / "absent"), format="brats", output_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="--input: .*absent is not a directory"):
        config.check_inputs()
    assert not (tmp_path / "o").exists()


def test_run_evaluate_flags_are_the_config_fields_and_parse_into_them():
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from ssagan_tf.evaluation.config import EvaluationConfig

    probe = ("import json; from absl import flags; from ssagan_tf.commands import evaluate as e; "
             "print(json.dumps([sorted(f.name for f in flags.FLAGS.get_flags_for_module(e.__name__)), "
             "sorted(e.CONFIG_FLAGS), flags.FLAGS['seeds'].default, flags.FLAGS['augmenters'].default]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    defined, generated, seeds, augmenters = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(defined) == set(generated) | {"precision"} and "judge" in generated
    assert seeds == ["0", "1", "2"] and augmenters == ""
    values = flags.FlagValues()
    names = settings.define_flags(EvaluationConfig, ["seeds", "ratios", "augmenters", "arms"], flag_values=values)
    values(["prog", "--seeds=3,4", "--ratios=0.5,2", "--augmenters=ssa=/e/ssa,copy_paste", "--arms=none, classic"])
    assert settings.read_fields(EvaluationConfig, names, values) == {
        "seeds": (3, 4), "ratios": (0.5, 2.0), "augmenters": (("ssa", "/e/ssa"), ("copy_paste", "")),
        "arms": ("none", "classic")}
    values(["prog", "--seeds=3,x", "--ratios=a"])
    with pytest.raises(settings.ConfigError, match=r"^--seeds=3,x: expected comma-separated int values; "
                                                   r"--ratios=a: expected comma-separated float values$"):
        settings.read_fields(EvaluationConfig, names, values)


def test_run_augment_flags_are_the_config_fields_and_parse_into_them():
    import json
    import subprocess
    import sys

    from conftest import REPO_ROOT
    from ssagan_tf.augment.config import AugmentConfig

    probe = ("import json; from absl import flags; from ssagan_tf.commands import augment as a; "
             "print(json.dumps([sorted(f.name for f in flags.FLAGS.get_flags_for_module(a.__name__)), "
             "sorted(a.CONFIG_FLAGS), flags.FLAGS['mask_threshold'].flag_type()]))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    defined, generated, threshold_kind = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(defined) == set(generated) | {"precision"} and "judge_slices" not in defined
    assert threshold_kind == "float"                # kind=float: its default (None, the model's tau) says nothing
    values = flags.FlagValues()
    names = settings.define_flags(AugmentConfig, ["ratio", "directions", "mask_threshold"], flag_values=values)
    values(["prog", "--ratio=all", "--directions=tumor_to_normal", "--mask_threshold=0.3"])
    assert settings.read_fields(AugmentConfig, names, values) == {
        "ratio": None, "directions": ("tumor_to_normal",), "mask_threshold": 0.3}
    values(["prog", "--ratio=2", "--directions=both"])
    assert settings.read_fields(AugmentConfig, names, values)["directions"] == ("normal_to_tumor", "tumor_to_normal")
