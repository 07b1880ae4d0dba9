"""The shape of the code base, measured (ARCHITECTURE.md's rules, kept by tests).

- Code outside ``robustbench_gcp/suites/`` does not branch on a suite kind name.
- No import cycle between the modules of ``robustbench_gcp`` and ``corruptions``; imports
  inside functions (lazy imports) count.
- No source file over 700 lines.
- No two modules share a name, except the command modules of ``cli/`` among themselves.

``python tests/test_architecture.py`` prints the figures.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("robustbench_gcp", "corruptions")
KIND_NAMES = {"clean", "imagenet-c", "imagenet-p", "adversarial", "landscape"}
MAX_LINES = 700


def source_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _constant_strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _constant_strings(element)]
    return []


def kind_branches(path: Path) -> list[int]:
    """Line numbers of comparisons (==, !=, in, match cases) against a suite kind name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(s in KIND_NAMES for operand in operands for s in _constant_strings(operand)):
                lines.append(node.lineno)
        elif isinstance(node, ast.MatchValue) and _constant_strings(node.value):
            if set(_constant_strings(node.value)) & KIND_NAMES:
                lines.append(node.lineno)
    return lines


def kind_branches_outside_suites() -> dict[str, list[int]]:
    out = {}
    for path in source_files():
        relative = path.relative_to(ROOT)
        if relative.parts[:2] == ("robustbench_gcp", "suites"):
            continue
        found = kind_branches(path)
        if found:
            out[str(relative)] = found
    return out


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports, anywhere in the file.

    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b``.
    Relative imports are resolved against the file's package.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                if candidate in modules:
                    found.add(candidate)
                elif base in modules:
                    found.add(base)
    found.discard(own)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in source_files()}
    modules = set(paths)
    return {name: _imports(path, modules) for name, path in paths.items()}


def import_cycles(graph: dict[str, set[str]] | None = None) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = graph if graph is not None else import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def long_files() -> dict[str, int]:
    out = {}
    for path in source_files():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            out[str(path.relative_to(ROOT))] = lines
    return out


def repeated_module_names() -> dict[str, list[str]]:
    """Module file names used more than once where one of them is outside ``cli/``
    (``__init__`` aside): a command module may not share its name with a library module."""
    names: dict[str, list[str]] = {}
    for path in source_files():
        if path.name != "__init__.py":
            names.setdefault(path.stem, []).append(str(path.relative_to(ROOT)))
    return {name: paths for name, paths in names.items()
            if len(paths) > 1 and any("/cli/" not in f"/{p}" for p in paths)}


def test_no_kind_branches_outside_suites():
    found = kind_branches_outside_suites()
    assert sum(map(len, found.values())) <= 1, found


def test_no_import_cycles():
    assert import_cycles() == []


def test_no_file_over_700_lines():
    assert long_files() == {}


def test_module_names_are_unique_outside_cli():
    assert repeated_module_names() == {}


def test_one_benchmarks_yaml():
    """The configuration the package reads is the file users edit: a link in a checkout (a wheel
    copies its content)."""
    from robustbench_gcp.config import default_config_path

    resource = ROOT / "robustbench_gcp" / "resources" / "benchmarks.yaml"
    assert resource.is_symlink() and resource.resolve() == (ROOT / "benchmarks.yaml").resolve()
    assert default_config_path() == (ROOT / "benchmarks.yaml").resolve()


def test_the_measures_can_fail(tmp_path):
    """The detectors find what they look for (a test that cannot fail proves nothing)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f(kind):\n    if kind == 'imagenet-c' or kind in ('clean', 'x'):\n"
                      "        return 1\n    match kind:\n        case 'adversarial':\n"
                      "            return 2\n")
    assert kind_branches(sample) == [2, 2, 5]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":
    branches = kind_branches_outside_suites()
    print(f"kind comparisons outside suites/: {sum(map(len, branches.values()))}")
    for file, lines in sorted(branches.items()):
        print(f"  {file}: {len(lines)} (lines {', '.join(map(str, lines))})")
    cycles = import_cycles()
    print(f"import cycles: {len(cycles)}")
    for cycle in cycles:
        print("  " + " <-> ".join(cycle))
    print(f"files over {MAX_LINES} lines: {len(long_files())}")
    for file, lines in long_files().items():
        print(f"  {file}: {lines}")
    repeated = repeated_module_names()
    print(f"module names used twice outside cli/: {len(repeated)}")
    for name, paths in sorted(repeated.items()):
        print(f"  {name}: {', '.join(paths)}")
