"""mkdocs hook: links from docs/ to files elsewhere in the repository.

The pages link to figures and logs with paths that work on GitHub and in an editor,
e.g. `../figures/fig1_feature_geometry.png`. mkdocs only serves files under docs/, so
this hook copies each such target into the site under `repo/` and rewrites the link to
point there. A link to a file that does not exist is left alone, so that
`mkdocs build --strict` still fails on it.
"""

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

LINK = re.compile(r"(\]\()([^)\s]+)(\))")
SITE_DIR = "repo"


def _outside(src_uri: str, target: str, docs: Path, root: Path) -> str | None:
    """The repository path a relative link points to, if it leaves docs/ and exists."""
    if "://" in target or target.startswith(("#", "/", "mailto:")):
        return None
    path = (docs / posixpath.dirname(src_uri) / target.split("#")[0]).resolve()
    if path.is_relative_to(docs) or not path.is_relative_to(root) or not path.is_file():
        return None
    return path.relative_to(root).as_posix()


def _dirs(config) -> tuple[Path, Path]:
    return Path(config.docs_dir).resolve(), Path(config.config_file_path).parent.resolve()


def on_files(files, config):
    docs, root = _dirs(config)
    seen = set()
    for page in files.documentation_pages():
        for _, target, _ in LINK.findall(Path(page.abs_src_path).read_text()):
            rel = _outside(page.src_uri, target, docs, root)
            if rel and rel not in seen:
                seen.add(rel)
                files.append(File.generated(config, f"{SITE_DIR}/{rel}",
                                            abs_src_path=str(root / rel)))
    return files


def on_page_markdown(markdown, page, config, files):
    docs, root = _dirs(config)

    def rewrite(match):
        rel = _outside(page.file.src_uri, match[2], docs, root)
        if rel is None:
            return match[0]
        new = posixpath.relpath(f"{SITE_DIR}/{rel}", posixpath.dirname(page.file.src_uri) or ".")
        return match[1] + new + match[3]

    return LINK.sub(rewrite, markdown)
