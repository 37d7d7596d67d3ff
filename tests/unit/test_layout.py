"""The code's shape, kept: no module over ~400 lines, `harness` never imports `analysis` (the CLI names
analysis verbs by string), and no module imports another module's private names."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "analysis")


def modules(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) for every import statement of `path`, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [alias.name for alias in node.names]))
    return out


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in modules(*PACKAGES) if (n := len(p.read_text().splitlines())) > 410}
    assert not long


def test_harness_never_imports_analysis():
    offenders = [str(p.relative_to(ROOT)) for p in modules("harness")
                 if any(m == "analysis" or m.startswith("analysis.") for m, _ in imports(p))]
    assert not offenders


def test_nothing_imports_a_private_name_of_a_loco_module():
    offenders = [(str(p.relative_to(ROOT)), m, n) for p in modules(*PACKAGES, "tests", "bench")
                 for m, names in imports(p) if m.split(".")[0] in PACKAGES
                 for n in names if n.startswith("_") and not n.startswith("__")]
    assert not offenders
