"""The shipped BraTS recipe (brain.flags) reads what the README's BraTS conversion writes, names the
judge its header trains, and carries the departures from the paper that made normal->tumor draw on
real MRI (lgg.flags)."""

import os
import re
import shlex

from conftest import REPO_ROOT


def _flags(name):
    """{flag: value} of a flagfile's lines, and its comment lines."""
    values, comments = {}, []
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                comments.append(line.lstrip("# "))
            elif line:
                flag, _, value = line[2:].partition("=")
                values[flag] = value
    return values, comments


def _commands(text, module):
    """The `python -m module ...` commands in `text` (continued lines joined) as {flag: value}."""
    joined = re.sub(r"\\\s*\n\s*(#\s*)?", " ", text)
    found = []
    for match in re.finditer(rf"python -m {re.escape(module)} ([^\n]*)", joined):
        words = shlex.split(match.group(1).split("  #")[0])
        found.append(dict(w[2:].partition("=")[::2] for w in words if w.startswith("--")))
    return found


def test_brain_flags_reads_what_the_readme_converts():
    values, comments = _flags("brain.flags")
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    brats = [c for c in _commands(readme, "data_prep.convert") if c.get("format") == "brats" and
             c.get("modalities") == "t1ce"]
    assert brats and brats[0]["output_dir"] == values["data_dir"] == "data/brats19_t1ce"
    assert brats[0]["image_size"] == values["image_size"]
    header = "\n".join(comments)
    (convert,) = _commands(header.replace("Convert:", ""), "data_prep.convert")
    assert convert == brats[0]
    (judge,) = _commands(header, "ssagan_tf.judge")
    assert judge == {"data_dir": values["data_dir"], "output_dir": values["judge"]}


def test_brain_flags_carries_lgg_flags_departures():
    brain, comments = _flags("brain.flags")
    lgg, _ = _flags("lgg.flags")
    for flag in ("cycle_attention", "upsample", "d_mode", "mask_loss_type", "attention_area"):
        assert brain[flag] == lgg[flag], flag
    assert (brain["cycle_attention"], brain["upsample"], brain["d_mode"]) == ("source", "resize", "full")
    assert float(brain["attention_area"]) > 0
    assert "Not yet run on BraTS here" in " ".join(comments)
