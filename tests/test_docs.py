"""The README and docs/ name only what exists: result files, tests, links, and files of the tree."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# docs/forensics.md says why the script is not named so.
NOT_FILES = {"scripts/inspect.py"}


def defined_tests() -> set[str]:
    text = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))
    return set(re.findall(r"def (test_\w+)", text))


@pytest.mark.parametrize("doc", DOCS, ids=[path.name for path in DOCS])
def test_a_doc_names_only_what_exists(doc):
    text = doc.read_text()
    # A figure's result file (NAME.json is a pattern, not a file).
    results = {name for name in re.findall(r"results/([\w.\-]+\.json)", text) if name != "NAME.json"}
    assert sorted(name for name in results if not (ROOT / "docs" / "results" / name).is_file()) == []
    # The test that shows a promise holds.
    assert sorted(set(re.findall(r"`(test_\w+)`", text)) - defined_tests()) == []
    links = [link for link in re.findall(r"\]\(([^)#]+)", text) if not link.startswith("http")]
    assert [link for link in links if not (doc.parent / link).exists()] == []
    paths = set(re.findall(r"`((?:camlit|scripts|tests)/[\w/.\-]+)`", text)) - NOT_FILES
    assert sorted(path for path in paths if not (ROOT / path).exists()) == []
