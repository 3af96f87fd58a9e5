"""The documentation points somewhere: every `docs/<page>.md, "Section"` reference in the code,
the recipes and the docs names a page and a heading that exist, and the project cites no document
outside the repository (its method is docs/method.md; a design card kept beside the repository is
not cited) and uses no tracker words ("issue 11", "the issue's")."""

import glob
import os
import re

import pytest

from conftest import REPO_ROOT

TEXT_GLOBS = ("README.md", "docs/*.md", "tests/README.md", "*.flags", "run_*.py", "Makefile", "Dockerfile",
              "ssagan_tf/**/*.py", "data_prep/**/*.py", "scripts/*.py", "benchmarks/*.py")


def _files():
    paths = set()
    for pattern in TEXT_GLOBS:
        paths.update(glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True))
    return sorted(paths)


def _text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _headings(page):
    return {re.sub(r"\s+", " ", line.lstrip("#").strip()) for line in _text(os.path.join(REPO_ROOT, page)).splitlines()
            if line.startswith("#")}


# `docs/training.md`, "When normal->tumor draws nothing" (the comma, quotes and line breaks vary)
REFERENCE = re.compile(r"(docs/[a-z_]+\.md)`?\s*(?:#\s*)?,\s*(?:#\s*)?(?:'|\")([^'\"]*?\w[^'\"]*?)(?:'|\")", re.S)


def test_section_references_name_existing_headings():
    missing = []
    for path in _files():
        for page, section in REFERENCE.findall(_text(path)):
            if not os.path.isfile(os.path.join(REPO_ROOT, page)):
                missing.append((os.path.relpath(path, REPO_ROOT), page))
                continue
            section = re.sub(r"\s*\n\s*#?\s*", " ", section).strip()
            if not any(h == section or h.startswith((section + " (", section + ":")) for h in _headings(page)):
                missing.append((os.path.relpath(path, REPO_ROOT), page, section))
    assert missing == []


@pytest.mark.parametrize("word", [r"DESIGN" + r"\.md", r"\bissue\s+\d+", r"\bthe issue\b", r"\bissue's\b"])
def test_no_outside_documents_or_tracker_words(word):
    this = os.path.abspath(__file__)
    found = [os.path.relpath(path, REPO_ROOT) for path in _files() + glob.glob(os.path.join(REPO_ROOT, "tests/*.py"))
             if os.path.abspath(path) != this and re.search(word, _text(path), re.I)]
    assert found == []


def test_the_method_document_covers_each_loss_and_departure():
    method = _text(os.path.join(REPO_ROOT, "docs/method.md"))
    for needed in ("## Networks", "## The composition", "## Losses", "## The schedule", "## Attention-guided "
                   "discriminators", "## Departures from the paper", "L_cyc =", "L_mask =", "L_area =", "L(D_t) ="):
        assert needed in method, needed
    from ssagan_tf.choices import CYCLE_ATTENTIONS, D_MODES, MASK_LOSS_TYPES, UPSAMPLING

    for choice in CYCLE_ATTENTIONS + D_MODES + MASK_LOSS_TYPES + UPSAMPLING:
        assert f"`{choice}`" in method or f"={choice}`" in method, choice
