"""The documentation (README.md, docs/, mkdocs.yml): no placeholders, no links to files
that do not exist or lie outside the repository, and the site builds with warnings as
errors."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGE_IDS = [str(p.relative_to(ROOT)) for p in PAGES]

PLACEHOLDERS = ("MEASURED_", "TODO", "XXX")
FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), an optional "title" after the target
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M)
HTML_LINK = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
PARENT_PATH = re.compile(r"(?<![\w/.])\.\./[\w./-]*")


def _prose(text: str) -> str:
    """Text without fenced code blocks and code spans (whose brackets are not links)."""
    return CODE_SPAN.sub("``", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading (mkdocs' toc gives the same for ASCII headings)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[`*_]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    anchors, seen = set(), {}
    for heading in HEADING.findall(_prose(page.read_text())):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    prose = _prose(page.read_text())
    return [m for pattern in (INLINE_LINK, REFERENCE_DEF, HTML_LINK)
            for m in pattern.findall(prose)]


def _line_of(text: str, needle: str) -> int:
    return text[:text.find(needle)].count("\n") + 1


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_no_placeholders(page):
    text = page.read_text()
    found = [f"line {n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
             if any(p in line for p in PLACEHOLDERS)]
    assert not found, f"placeholders ({', '.join(PLACEHOLDERS)}) in {page.name}:\n" + "\n".join(found)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_relative_links_resolve(page):
    """Every relative link or image names a file (and a heading, for .md#anchor) inside
    the repository; web links are not followed."""
    text, bad = page.read_text(), []
    for target in _links(page):
        if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        if target.startswith("/"):
            bad.append(f"{target}: absolute path; links must be relative")
            continue
        path = (page.parent / path_part).resolve() if path_part else page
        where = f"line {_line_of(text, target)}: {target}"
        if not path.is_relative_to(ROOT):
            bad.append(f"{where}: outside the repository")
        elif not path.exists():
            bad.append(f"{where}: {path.relative_to(ROOT)} does not exist")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            bad.append(f"{where}: no heading with anchor #{anchor} in {path.relative_to(ROOT)}")
    assert not bad, f"broken links in {page.relative_to(ROOT)}:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=PAGE_IDS)
def test_no_paths_outside_repository(page):
    """The docs are self-contained: no path, linked or quoted, leaves the repository
    (the README once sent readers to ../shared/paper-notes.md for the notation)."""
    text = page.read_text()
    outside = [f"line {_line_of(text, p)}: {p}" for p in PARENT_PATH.findall(text)
               if not (page.parent / p).resolve().is_relative_to(ROOT)]
    assert not outside, f"paths outside the repository in {page.name}:\n" + "\n".join(outside)


def test_site_builds_strict(tmp_path):
    """mkdocs (material theme, mkdocstrings API page) builds with warnings as errors:
    every page in the nav, every link and anchor found, every docstring parsed."""
    reason = "the docs extra is not installed (pip install -e '.[docs]')"
    pytest.importorskip("mkdocs", reason=reason)
    pytest.importorskip("material", reason=reason)
    pytest.importorskip("mkdocstrings", reason=reason)
    pytest.importorskip("mkdocstrings_handlers.python", reason=reason)
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    api = (site / "api" / "index.html").read_text()
    for name in ("load_run", "analyze"):
        assert name in api, f"the API reference does not document toymodels.{name}"
