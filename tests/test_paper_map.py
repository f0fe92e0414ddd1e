"""docs/paper_map.md against the code and the paper.

- every `path::symbol` the map names exists (found with `ast`, nothing is imported);
- the map uses the StyleGAN-V paper's real numbering and covers the parts of the model it must;
- every "eq. N" / "section N.M" cited in a comment or string of core/, training/, projection/, editing/
  and studio/ is listed in the map for the code that cites it (rule in docs/paper_map.md);
- every `docs/<page>.md, 'Heading'` cited in the code names a heading that exists.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAPER_MAP = DOCS / "paper_map.md"
CITING_PACKAGES = ("core", "training", "projection", "editing", "studio")

# The StyleGAN-V paper's numbering, read from its text: sections 1-5 with 3.1-3.3 and 4.1-4.3, eqs. (1)-(5).
PAPER_SECTIONS = {"1", "2", "3", "3.1", "3.2", "3.3", "4", "4.1", "4.2", "4.3", "5"}
PAPER_EQUATIONS = {1, 2, 3, 4, 5}

SYMBOL_RE = re.compile(r"`([\w./-]+\.py)::([A-Za-z_][\w.]*)`")
_LIST_TAIL = r"((?:\s*(?:-|–|,|and|to|&)\s*\(?\d+(?:\.\d+)*\)?)*)"
EQ_RE = re.compile(r"\b(?:eqs?|equations?)\.?\s*\(?(\d+)\)?" + _LIST_TAIL, re.IGNORECASE)
SECTION_RE = re.compile(r"(?:\bsections?\b|\bsec\.|§)\s*(\d+(?:\.\d+)*)" + _LIST_TAIL, re.IGNORECASE)
DOC_CITE_RE = re.compile(r"docs/(\w+)\.md,?\s+((?:'[^'\n]+'(?:\s*(?:,|and|or)\s*)?)+)")


# ----------------------------------------------------------------------------------------- the map


@dataclass
class Row:
    paper: str
    sections: set[str]
    eqs: set[int]
    symbols: list[tuple[str, str]] = field(default_factory=list)  # (path, dotted name)


def _numbers(text: str, *, ints: bool):
    """'2-5' -> {2, 3, 4, 5}; '3.1, 3.3' -> {'3.1', '3.3'}; '' -> set()."""
    out: set = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, _, hi = part.partition("-")
        if ints:
            out.update(range(int(lo), int(hi or lo) + 1))
        else:
            out.update({lo.strip(), hi.strip()} - {""})
    return out


def _tables(text: str) -> list[list[dict[str, str]]]:
    """The markdown tables of a page, each a list of {header: cell} rows."""
    lines, tables, i = text.splitlines(), [], 0
    while i < len(lines) - 1:
        if lines[i].startswith("|") and re.match(r"^\|[\s:|-]+\|$", lines[i + 1].strip()):
            header = [c.strip() for c in lines[i].strip().strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                assert len(cells) == len(header), f"docs/paper_map.md: malformed row {lines[i]!r}"
                rows.append(dict(zip(header, cells)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def load_map(text: str | None = None) -> tuple[list[Row], list[dict[str, str]]]:
    """(mapping rows, numbering rows) of docs/paper_map.md."""
    text = PAPER_MAP.read_text() if text is None else text
    rows, numbering = [], []
    for table in _tables(text):
        for r in table:
            if "Kind" in r:
                numbering.append(r)
            elif "Paper" in r:
                rows.append(Row(r["Paper"], _numbers(r["Section"], ints=False), _numbers(r["Eq."], ints=True),
                                SYMBOL_RE.findall(r["Code"])))
    return rows, numbering


# ----------------------------------------------------------------------------------------- symbols


def _members(body: list[ast.stmt]) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            names.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def symbol_exists(path: str, dotted: str) -> bool:
    """Whether module `path` defines `dotted` (class, function, method, module or class attribute)."""
    node: ast.AST = ast.parse((ROOT / path).read_text())
    for name in dotted.split("."):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or name not in _members(body):
            return False
        node = _members(body)[name]
    return True


# ----------------------------------------------------------------------------------------- citations


@dataclass(frozen=True)
class Citation:
    line: int
    kind: str  # "eq" or "section"
    number: int | str
    text: str


def _expand(first: str, tail: str, kind: str) -> set:
    """The numbers of one citation: "3.1, 3.3" -> {"3.1", "3.3"}; "2-5" -> {2, 3, 4, 5}; "1, 3" -> {1, 3}."""
    nums = [first, *re.findall(r"\d+(?:\.\d+)*", tail)]
    if kind == "section":
        return set(nums)
    values = [int(n) for n in nums]
    if re.search(r"[-–]|\bto\b", tail):
        return set(range(min(values), max(values) + 1))
    return set(values)


def citations(source: str) -> list[Citation]:
    """Equation and section citations in the comments and strings of a Python source."""
    kinds = {tokenize.COMMENT, tokenize.STRING}
    if hasattr(tokenize, "FSTRING_MIDDLE"):
        kinds.add(tokenize.FSTRING_MIDDLE)
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in kinds:
            continue
        for kind, regex in (("eq", EQ_RE), ("section", SECTION_RE)):
            for m in regex.finditer(tok.string):
                line = tok.start[0] + tok.string[:m.start()].count("\n")
                for n in sorted(_expand(m.group(1), m.group(2), kind), key=str):
                    found.append(Citation(line, kind, n, m.group(0).strip()))
    return found


def _scopes(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, dotted name) of every class and function, outer before inner."""
    out = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                out.append((first, node.end_lineno, prefix + node.name))
                visit(node.body, prefix + node.name + ".")

    visit(ast.parse(source).body, "")
    return out


def citation_errors(path: str, source: str, rows: list[Row]) -> list[str]:
    """Citations of `path` (its text `source`) that docs/paper_map.md does not allow there."""
    mine = [(r, name) for r in rows for p, name in r.symbols if p == path]
    scopes = _scopes(source)
    errors = []
    for c in citations(source):
        enclosing = [name for first, last, name in scopes if first <= c.line <= last]  # outer -> inner
        allowed_rows, where = [r for r, _ in mine], "anywhere in the file"
        for name in reversed(enclosing):
            listed = [r for r, sym in mine if sym == name or sym.startswith(name + ".")]
            if listed:
                allowed_rows, where = listed, f"in {name}"
                break
        allowed = set().union(*(r.eqs if c.kind == "eq" else r.sections for r in allowed_rows))
        if c.number not in allowed:
            shown = ", ".join(map(str, sorted(allowed, key=str))) or "nothing"
            errors.append(f"{path}:{c.line}: {c.text!r} cites {c.kind} {c.number}; docs/paper_map.md lists "
                          f"{shown} for this code ({where})")
    return errors


def _python_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


# ----------------------------------------------------------------------------------------- tests


def test_map_parses_and_names_symbols():
    rows, numbering = load_map()
    assert len(rows) >= 25 and numbering
    assert all(r.symbols for r in rows), [r for r in rows if not r.symbols]


def test_map_symbols_exist():
    rows, _ = load_map()
    missing = []
    for path, name in {s for r in rows for s in r.symbols}:
        if not (ROOT / path).is_file():
            missing.append(f"{path} (no such file)")
        elif not symbol_exists(path, name):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/paper_map.md names symbols that do not exist: {sorted(missing)}"


def test_map_uses_the_papers_numbering():
    rows, numbering = load_map()
    listed_sections = {r["Number"] for r in numbering if r["Kind"] == "section"}
    listed_eqs = {int(r["Number"]) for r in numbering if r["Kind"] == "eq."}
    assert listed_sections == PAPER_SECTIONS and listed_eqs == PAPER_EQUATIONS
    for r in rows:
        if r.paper == "StyleGAN-V":
            assert r.sections and r.sections <= PAPER_SECTIONS, (r.sections, r.symbols)
            assert r.eqs <= PAPER_EQUATIONS, (r.eqs, r.symbols)
        else:
            assert r.eqs or r.sections, f"a row for {r.paper} cites no number: {r.symbols}"
    # Equations (1)-(5) all sit in section 3.1 (Generator structure).
    assert all(r.sections == {"3.1"} for r in rows if r.paper == "StyleGAN-V" and r.eqs)


@pytest.mark.parametrize("symbol, sections, eqs", [
    ("core/motion.py::AlignedTimeEncoder", {"3.1"}, {1, 3}),  # the encoding, amplitude alpha_l = 1
    ("core/motion.py::AlignedTimeEncoder.wave_parameters", {"3.1"}, {3, 5}),  # frequencies and phases
    ("core/motion.py::AlignedTimeEncoder.__init__", {"3.1"}, {3, 5}),  # W_omega, W_rho, sigma
    ("core/motion.py::AlignedTimeEncoder.forward", {"3.1"}, {2, 4}),  # raw code and stitching
    ("core/motion.py::MotionMappingNetwork.codes", {"3.1"}, set()),  # conv1d F_m
    ("core/mapping.py::MappingNetwork", {"3.1"}, set()),  # content mapping F_c
    ("core/synthesis.py::TemporalInput", {"3.1"}, set()),  # v_t at the 4x4 constant
    ("core/discriminator.py::Discriminator.forward", {"3.2"}, set()),  # per-frame trunk, temporal concat
    ("core/discriminator.py::TemporalDifferenceEncoder", {"3.2"}, set()),  # time-gap conditioning
    ("core/discriminator.py::DiscriminatorEpilogue.forward", {"3.2"}, set()),  # projection
    ("training/dataset.py::sample_clip_times", {"3.3"}, set()),  # sparse training, k frames per clip
    ("training/batches.py::ClipBatches", {"3.3"}, set()),
    ("training/loss.py::StyleGANVLoss.accumulate", {"3.3", "4.1"}, set()),  # R1, StyleGAN2 loss
    ("training/augment.py::AugmentPipe.forward", {"4.1"}, set()),  # ADA
    ("training/metrics/protocol.py::select_real_clips", {"4"}, set()),  # FVD protocol
    ("projection/projector.py::project", {"4.3"}, set()),
    ("editing/styleclip.py::latent_edit", {"4.3"}, set()),
])
def test_map_covers(symbol, sections, eqs):
    rows, _ = load_map()
    path, name = symbol.split("::")
    naming = [r for r in rows if (path, name) in r.symbols]
    assert naming, f"docs/paper_map.md does not list {symbol}"
    assert set().union(*(r.sections for r in naming)) == sections
    assert set().union(*(r.eqs for r in naming)) == eqs


def test_code_citations_agree_with_the_map():
    rows, _ = load_map()
    errors = []
    for f in _python_files(*CITING_PACKAGES):
        errors += citation_errors(f.relative_to(ROOT).as_posix(), f.read_text(), rows)
    assert not errors, "\n".join(errors)


def test_the_check_catches_wrong_citations():
    """The citation check itself: the wrong numbers this map was written to fix are caught again."""
    rows, _ = load_map()
    cases = [
        ("core/motion.py", "# eq. (4): aligners", "# eq. (5): aligners"),
        ("core/discriminator.py", "(paper section 3.2, Fig. 6)", "(paper section 3.3, Fig. 6)"),
        ("core/synthesis.py", "(paper section 3.1, Fig. 5", "(paper section 3.2, Fig. 5"),
        ("training/dataset.py", "sparse training (section 3.3)", "sparse training (section 3.1)"),
        ("core/config.py", "(paper section 3.1, eqs. 2-5)", "(paper section 3.1, eqs. 2-6)"),
    ]
    for path, good, bad in cases:
        source = (ROOT / path).read_text()
        assert good in source, f"{path} no longer contains {good!r}: update this test"
        assert not citation_errors(path, source, rows)
        assert citation_errors(path, source.replace(good, bad), rows), f"{path}: {bad!r} was not caught"


def test_citation_parsing():
    found = citations('"""Acyclic encoding (paper section 3.1, eqs. 2-5), StyleGAN2 eq. (3); Sec. 4.1 and §3.2."""\n'
                      "x = 1  # eqs. 1, 3 and section 3.3\n")
    eqs = {(c.line, c.number) for c in found if c.kind == "eq"}
    sections = {(c.line, c.number) for c in found if c.kind == "section"}
    assert eqs == {(1, 2), (1, 3), (1, 4), (1, 5), (2, 1), (2, 3)}
    assert sections == {(1, "3.1"), (1, "4.1"), (1, "3.2"), (2, "3.3")}
    assert not citations("frequencies = 2  # freq. 3, sec/kimg 4, requested 5\n")


def test_docs_citations_in_code_resolve():
    headings = {p.stem: {line.lstrip("#").strip() for line in p.read_text().splitlines() if line.startswith("#")}
                for p in DOCS.glob("*.md")}
    errors = []
    for f in _python_files(*CITING_PACKAGES) + [ROOT / "launch.py"]:
        text, rel = f.read_text(), f.relative_to(ROOT).as_posix()
        for old in ("DESIGN.md", "REFERENCE.md"):
            if old in text:
                errors.append(f"{rel} cites {old}, which is not in the repository (use docs/)")
        for m in DOC_CITE_RE.finditer(text):
            page = m.group(1)
            for heading in re.findall(r"'([^'\n]+)'", m.group(2)):
                if heading not in headings.get(page, set()):
                    errors.append(f"{rel}: docs/{page}.md has no heading {heading!r}")
    assert not errors, "\n".join(errors)
