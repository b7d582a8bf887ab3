"""The code cites only what the repository holds or a public source it names: no design documents outside the
repository (they are not shipped), and every source tag of the emulator's family (S-ISA, S-A2, ...) defined in the
emulator package's docstring."""

import re
from pathlib import Path

import nkilab.harness.emulator as emulator
import nkilab.kernels as kernels

ROOT = Path(kernels.__file__).parent.parent  # the repository root: kernels/, harness/, reference/, tests/
OUTSIDE = re.compile(r"DESIGN §|DESIGN\.md|STYLE §|STYLE\.md|anchors(-2026-12)?\.md|nki-api\.md|"
                     r"hardware-and-energy\.md|shared/design")
TAG = re.compile(r"\bS-[A-Z][A-Z0-9]*\b")


def _files():
    for folder in ("kernels", "reference", "harness", "tests"):
        yield from (ROOT / folder).rglob("*.py")
    yield ROOT / "README.md"
    yield ROOT / "pyproject.toml"


def test_no_citation_of_a_design_document_outside_the_repository():
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for path in _files()
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if OUTSIDE.search(line) and path.name != "test_design_citations.py"]
    assert hits == []


def test_every_source_tag_is_defined_in_the_repository():
    defined = set(TAG.findall(emulator.__doc__.split("cite by tag", 1)[1]))  # the docstring's legend
    used = {tag for path in _files() for tag in TAG.findall(path.read_text())}
    assert defined and used - defined == set()
