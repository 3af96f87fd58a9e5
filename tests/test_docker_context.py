"""The Docker build context (.dockerignore, read with Docker's rules: patterns match a path or one of
its parent folders, `*` stays within a path segment, `**` spans any number of them, the last rule
that matches decides, `!` lets back in) holds the package sources and what the Dockerfile copies,
and none of .venv/, runs/, data/, .git/, caches or dataset outputs. (Docker itself does not run on
the test machines.) And the image runs as an unprivileged user with the `ssagan` command as its
entry point."""

import os
import re
import subprocess

import pytest

from conftest import REPO_ROOT


def _rules(lines):
    """.dockerignore lines -> [(lets back in, regex of a path)]."""
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = ""
        for i, part in enumerate(pattern.split("/")):
            if part == "**":
                regex += "(?:.*/)?" if i == 0 else "(?:/.*)?"
                continue
            sep = "" if i == 0 or regex.endswith("/)?") else "/"
            regex += sep + re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((negate, re.compile(regex + "$")))
    return rules


with open(os.path.join(REPO_ROOT, ".dockerignore")) as _f:
    RULES = _rules(_f)


def in_context(path: str, rules=None) -> bool:
    """Whether Docker sends `path` (relative to the repository) to the build."""
    parts = path.split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negate, regex in RULES if rules is None else rules:
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negate
    return not excluded


def test_the_rule_reader_follows_dockers_semantics():
    """The reader itself, on rules whose outcome Docker's documentation gives."""
    rules = _rules(["# a comment", "*", "!pkg/", "**/*.pyc", "pkg/sub/x?.txt", "", "!README*"])
    assert in_context("pkg/a.py", rules) and in_context("pkg/sub/b.py", rules) and in_context("README.md", rules)
    assert not in_context("pkg/sub/b.pyc", rules) and not in_context("pkg/b.pyc", rules)
    assert not in_context("pkg/sub/x1.txt", rules) and in_context("pkg/sub/x10.txt", rules)
    assert not in_context("other/a.py", rules) and not in_context(".venv", rules) and not in_context("a/README", rules)


@pytest.mark.parametrize("path", [
    ".venv/lib/python3.11/site-packages/tensorflow/__init__.py", ".venv/bin/python", "runs/demo/train/config.json",
    "runs/lgg/data128/train/tumor-00000-of-00001.tfrecord", "data/brats19_t1ce/manifest.json", ".git/HEAD",
    ".git/objects/ab/cdef", ".pytest_cache/v/cache/nodeids", "ssagan_tf/__pycache__/cli.cpython-311.pyc",
    "data_prep/readers/__pycache__/brats.cpython-311.pyc", "ssagan_tf.egg-info/PKG-INFO",
    "exports/ssagan/1/saved_model.pb",
    "ssagan_tf/out/train/normal-00000-of-00002.tfrecord", "scripts/case/BraTS19_1_t1ce.nii.gz", "tests/test_cli.py",
    "benchmarks/bench_train.py", "build/lib/ssagan_tf/cli.py", "dist/ssagan_tf-0.1.0-py3-none-any.whl",
])
def test_left_out(path):
    assert not in_context(path)


def _tracked():
    done = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip("not a git checkout")
    return [line for line in done.stdout.splitlines() if os.path.exists(os.path.join(REPO_ROOT, line))]


def _copied_sources():
    """The sources of the Dockerfile's COPY lines (every argument but the destination)."""
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as f:
        lines = [line.split()[1:-1] for line in f if line.startswith("COPY ")]
    return [source for line in lines for source in line]


def test_everything_the_dockerfile_copies_is_in_the_context():
    sources = _copied_sources()
    assert {"ssagan_tf", "data_prep", "pyproject.toml", "requirements.txt", "brain.flags"} <= set(sources)
    tracked = _tracked()
    for source in sources:
        files = [path for path in tracked if path == source or path.startswith(source + "/")]
        assert files, source
        assert [path for path in files if not in_context(path)] == [], source
    assert in_context("ssagan_tf/commands/train.py") and in_context("data_prep/readers/brats.py")


def test_the_image_runs_ssagan_as_an_unprivileged_user():
    with open(os.path.join(REPO_ROOT, "Dockerfile")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(f"USER {users[-1]}") < lines.index('ENTRYPOINT ["ssagan"]')
