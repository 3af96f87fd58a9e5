"""`pip install .` as a user does it: a wheel built from the package sources alone (pyproject.toml,
README, requirements.txt, ssagan_tf/, data_prep/), installed into a fresh venv, answers `ssagan
--help`, `ssagan convert --help` and `python -m data_prep.convert --help` from a folder outside the
repository. The venv reuses this interpreter's installed dependencies through a .pth file (no
download); the wheel is installed with --no-deps and no index."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import HANG_TIMEOUT, REPO_ROOT

SOURCES = ("pyproject.toml", "README.md", "requirements.txt", "ssagan_tf", "data_prep")


def _run(args, cwd, **kwargs):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=HANG_TIMEOUT, env=env, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv directory, a working folder outside the repository), the wheel installed."""
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this venv")
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    for name in SOURCES:
        src = os.path.join(REPO_ROOT, name)
        if os.path.isdir(src):
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy(src, source / name)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(root / "wheel"), str(source)], cwd=root)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (root / "wheel").glob("ssagan_tf-*.whl")
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip()
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    with open(os.path.join(site, "reused_dependencies.pth"), "w") as f:
        f.write("\n".join(sorted(ours)) + "\n")
    done = _run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], cwd=root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return venv, elsewhere, wheel


@pytest.mark.slow
def test_the_wheel_holds_the_packages_and_the_console_script(installed):
    _, _, wheel = installed
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith("METADATA"))
    for module in ("ssagan_tf/commands/train.py", "ssagan_tf/commands/augment.py", "ssagan_tf/commands/evaluate.py",
                   "ssagan_tf/commands/export.py", "ssagan_tf/commands/judge.py", "ssagan_tf/judge/__main__.py",
                   "data_prep/convert_cli.py", "data_prep/readers/brats.py"):
        assert module in names
    assert not [n for n in names if n.startswith(("tests/", "runs/", "scripts/"))]
    assert "ssagan = ssagan_tf.commands:main" in entry_points
    with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
        pins = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    for pin in pins:
        assert f"Requires-Dist: {pin}\n" in metadata, pin
    assert 'Requires-Dist: tensorflow[and-cuda]==2.21.0; extra == "gpu"' in metadata


@pytest.mark.slow
def test_ssagan_help_and_convert_help_from_another_folder(installed):
    venv, elsewhere, _ = installed
    listed = _run([str(venv / "bin" / "ssagan"), "--help"], cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr[-2000:]
    for verb in ("convert", "judge", "train", "export", "augment", "evaluate", "demo"):
        assert f"\n  {verb} " in listed.stdout, listed.stdout
    for args in ([str(venv / "bin" / "ssagan"), "convert", "--help"],
                 [str(venv / "bin" / "python"), "-m", "data_prep.convert", "--help"]):
        done = _run(args, cwd=elsewhere)
        assert done.returncode == 0 and "--modalities:" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_the_installed_package_is_imported_not_the_repository(installed):
    venv, elsewhere, _ = installed
    done = _run([str(venv / "bin" / "python"), "-c", "import ssagan_tf, data_prep; print(ssagan_tf.__file__); "
                 "print(data_prep.__file__)"], cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    for path in done.stdout.split():
        assert path.startswith(str(venv)), done.stdout


@pytest.mark.slow
def test_ssagan_demo_outside_a_checkout_says_where_to_run_it(installed):
    venv, elsewhere, _ = installed
    done = _run([str(venv / "bin" / "ssagan"), "demo"], cwd=elsewhere)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (f"ssagan demo: error: run it in the root of a source checkout of ssagan_tf "
                                   f"(scripts/demo.py, demo.flags, run_train.py not found in {elsewhere})")
