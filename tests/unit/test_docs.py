"""The documentation a clone holds is whole (issue #20 item 18): every relative link in the README and in
docs/ points at a file of the repository, nothing points outside it, and every `docs/methods.md §N` the
code, the jobs and the README cite is a section of docs/methods.md."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CITE = re.compile(r"docs/methods\.md (?:§(\d+(?:\.\d+)?))")


def tracked() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_relative_links_in_the_readme_and_docs_resolve_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            path = (page.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{page.name}: link '{target}' leaves the repository"
            assert path.exists(), f"{page.name}: link '{target}' is dead"


def test_every_cited_section_of_the_methods_reference_exists():
    text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))
    cited = {}
    for name in tracked():
        if name.endswith((".py", ".yaml", ".md")) and not name.startswith("docs/"):
            for section in CITE.findall((ROOT / name).read_text(encoding="utf-8", errors="replace")):
                cited.setdefault(section, name)
    assert cited, "the code cites the reference"
    missing = {s: where for s, where in cited.items() if s not in sections}
    assert not missing, f"cited but absent from docs/methods.md: {missing}"


def test_nothing_points_at_the_shared_folder_outside_the_repository():
    offenders = [name for name in tracked() if name.endswith((".py", ".yaml", ".md"))
                 and ("../shared" in (ROOT / name).read_text(encoding="utf-8", errors="replace")
                      or re.search(r"(?<![/\w])METHODS\.md", (ROOT / name).read_text(encoding="utf-8", errors="replace")))
                 and name != "tests/unit/test_docs.py"]
    assert offenders == []
