"""Sources of the hardware table and of the calibration points, read from where each is written once.

`nkilab.harness.chips` gives every field its source in the field's comment (tags such as [A3], [HW], [FIT], defined
in its module docstring's "Sources" list) and each chip row its own in the row's comments; the calibration points
cite [KO] / [AT], defined in `nkilab.harness.perf.calibration`'s docstring. This module reads those comments and
legends, so `nkilab targets --sources` and the calibration tables show them without a second copy:
  field_sources(cls)        {field: its comment} for the fields a dataclass declares (comment lines just above
                            the field count, as in chips.py)
  row_sources(module, name) {key: the comments on its lines} for a module-level dict literal (chips.TARGETS)
  tag_legend(doc)           {tag: definition} from a docstring's "[TAG] text" lines
  tags_in(text, legend)     the legend's tags a comment or source string cites, in order
"""

from __future__ import annotations

import ast
import inspect
import io
import re
import sys
import tokenize

_TAG_LINE = re.compile(r"^(\s*)((?:\[[^\]]+\]\s*)+)(.*)$")
_BRACKETS = re.compile(r"\[([^\]]+)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def _comments(source: str) -> dict[int, str]:
    """{line number: comment text without '#'} of a module's source."""
    out = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string.lstrip("#").strip()
    return out


def _module_source(module) -> tuple[str, ast.Module, dict[int, str]]:
    source = inspect.getsource(module)
    return source, ast.parse(source), _comments(source)


def _comment_block(comments: dict[int, str], lines: list[str], first: int, last: int) -> str:
    """The comments on lines first..last, preceded by the comment-only lines right above `first`."""
    above = []
    n = first - 1
    # comment-only lines right above, up to a section rule ("# ---- what the model costs ----")
    while n >= 1 and lines[n - 1].strip().startswith("#") and not comments[n].startswith("--"):
        above.insert(0, comments[n])
        n -= 1
    own = [comments[i] for i in range(first, last + 1) if i in comments]
    return " ".join(above + own).strip(" —-")


def field_sources(cls) -> dict[str, str]:
    """{field: the comment that gives its source} for each annotated field declared in `cls`'s own body ('' when
    the field carries no comment)."""
    source, tree, comments = _module_source(sys.modules[cls.__module__])
    lines = source.splitlines()
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    out: dict[str, str] = {}
    # (name, last line) of the field above: a field on the next line without a comment of its own shares the
    # comment of the one above it (pe_rows / pe_cols)
    previous = None
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        text = _comment_block(comments, lines, stmt.lineno, stmt.end_lineno)
        if not text and previous and previous[1] == stmt.lineno - 1 and out[previous[0]]:
            text = f"as {previous[0]}: {out[previous[0]]}"
        out[stmt.target.id] = text
        previous = (stmt.target.id, stmt.end_lineno)
    return out


def row_sources(module, name: str) -> dict[str, str]:
    """{key: the comments on the lines of its entry} of the module-level dict literal `name` in `module`."""
    source, tree, comments = _module_source(module)
    for node in tree.body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(t, ast.Name) and t.id == name for t in targets) and isinstance(node.value, ast.Dict):
            return {ast.literal_eval(k): " ".join(comments[i] for i in range(k.lineno, v.end_lineno + 1)
                                                  if i in comments)
                    for k, v in zip(node.value.keys, node.value.values)}
    raise ValueError(f"name: {module.__name__} has no dict literal named {name!r}")


def tag_legend(doc: str) -> dict[str, str]:
    """{tag: definition} from the lines of `doc` that start with one or more "[TAG]"s; a definition runs on over
    the following lines indented deeper, up to a blank line or the next tag line."""
    legend: dict[str, str] = {}
    current: list[str] | None = None
    indent = 0
    for line in (doc or "").splitlines():
        match = _TAG_LINE.match(line)
        if match:
            indent, tags, text = len(match.group(1)), _BRACKETS.findall(match.group(2)), match.group(3).strip()
            current = [text]
            for tag in tags:
                legend[tag.strip()] = current  # tags listed together share one definition
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            current.append(line.strip())
        else:
            current = None
    return {tag: " ".join(parts) for tag, parts in legend.items()}


def tags_in(text: str, legend: dict[str, str]) -> list[str]:
    """The tags of `legend` cited inside the brackets of `text` ("[A2: 2.8 GHz; A3/A4: 2.4 GHz]" cites A2, A3,
    A4), in order of first appearance."""
    found: list[str] = []
    for inside in _BRACKETS.findall(text or ""):
        if inside.strip() in legend:
            words = [inside.strip()]
        else:
            words = _WORD.findall(inside)
        found += [w for w in words if w in legend and w not in found]
    return found
