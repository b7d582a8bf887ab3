"""The code cites only what the repository holds or a public source it names: no design documents outside the
repository (they are not shipped; a kernel package's own `DESIGN.md` beside the citing file, or named by its repository path, is in it), and every
source tag of the emulator's family (S-ISA, S-A2, ...) defined in the emulator package's docstring."""

import re
from pathlib import Path

import nkilab.harness.emulator as emulator
import nkilab.kernels as kernels

ROOT = Path(kernels.__file__).parent.parent  # the repository root: kernels/, harness/, reference/, tests/
OUTSIDE = re.compile(r"DESIGN §|STYLE §|STYLE\.md|anchors(-2026-12)?\.md|nki-api\.md|"
                     r"hardware-and-energy\.md|shared/design")
DESIGN_MD = re.compile(r"DESIGN\.md")
IN_REPO_DESIGN = re.compile(r"[\w/]+/DESIGN\.md")  # a DESIGN.md named by its path in the repository
TAG = re.compile(r"\bS-[A-Z][A-Z0-9]*\b")


def _files():
    for folder in ("kernels", "reference", "harness", "tests"):
        yield from (ROOT / folder).rglob("*.py")
    yield ROOT / "README.md"
    yield ROOT / "pyproject.toml"


def _cites_outside(path, line):
    """True if `line` of `path` names a design document the repository does not hold beside it."""
    if OUTSIDE.search(line):
        return True
    if not DESIGN_MD.search(line) or path.suffix != ".py" or (path.parent / "DESIGN.md").is_file():
        return False
    return not any((ROOT / m.group(0)).is_file() for m in IN_REPO_DESIGN.finditer(line))


def test_no_citation_of_a_design_document_outside_the_repository():
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}" for path in _files()
            for i, line in enumerate(path.read_text().splitlines(), 1)
            if _cites_outside(path, line) and path.name != "test_design_citations.py"]
    assert hits == []


def test_a_design_md_citation_needs_the_file_beside_it(tmp_path):
    (tmp_path / "kernel.py").write_text("")
    assert _cites_outside(tmp_path / "kernel.py", "see DESIGN.md, 'Decode'")
    (tmp_path / "DESIGN.md").write_text("# Decode")
    assert not _cites_outside(tmp_path / "kernel.py", "see DESIGN.md, 'Decode'")
    assert _cites_outside(tmp_path / "kernel.py", "DESIGN §3.1")


def test_every_source_tag_is_defined_in_the_repository():
    defined = set(TAG.findall(emulator.__doc__.split("cite by tag", 1)[1]))  # the docstring's legend
    used = {tag for path in _files() for tag in TAG.findall(path.read_text())}
    assert defined and used - defined == set()
