"""Measure the shape of the ``unet_lib`` package against the rules in ARCHITECTURE.md.

Reports (and, with ``--strict``, fails on):

* total lines, modules over ``MAX_MODULE_LINES``, functions over ``MAX_FUNCTION_LINES``;
* private names (``_name``) imported from another module, or read as ``module._name``;
* import cycles between modules, and imports that break the layer rules;
* blocks of six or more lines that repeat, to the letter or in shape (names, strings and
  numbers replaced by placeholders).

Usage: ``python scripts/check_structure.py [--strict] [--package unet_lib]``.
``tests/test_structure.py`` runs the same checks in the test suite.
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import tokenize
from collections import defaultdict
from pathlib import Path

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_TOTAL_LINES = 8000
DUPLICATE_LINES = 6

#: Layers, lowest first. A module may import its own layer or lower ones, never a higher one.
#: The first matching prefix decides a module's layer.
LAYERS = (
    (
        "core",
        ("unet_lib", "unet_lib.lazy", "unet_lib.checks", "unet_lib.targets", "unet_lib.fileio"),
    ),
    ("model", ("unet_lib.model", "unet_lib.metrics", "unet_lib.losses")),
    ("data", ("unet_lib.data", "unet_lib.runtime", "unet_lib.weightmap")),
    ("analysis", ("unet_lib.evaluation", "unet_lib.viz", "unet_lib.inference")),
    ("workflow", ("unet_lib.training",)),
    ("interface", ("unet_lib.cli", "unet_lib.__main__")),
)
#: The backend-neutral core: these may import only keras, numpy, the standard library, each
#: other, the package root (``IGNORE_LABEL``), ``checks`` and ``fileio`` (standard library only).
NEUTRAL = ("unet_lib.model", "unet_lib.metrics", "unet_lib.losses", "unet_lib.targets")
NEUTRAL_THIRD_PARTY = {"keras", "numpy"}  # and the standard library


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return 0 if best is None else best


class Module:
    """One parsed source file: its lines, functions and imports."""

    def __init__(self, path: Path, root: Path):
        self.path = path
        self.name = module_name(path, root)
        self.is_package = path.name == "__init__.py"
        self.text = path.read_text()
        self.tree = ast.parse(self.text)
        self.lines = len(self.text.splitlines())

    def resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.name.split(".")
        if not self.is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    def imports(self):
        """Yield (line, imported module, imported name or None) for every import."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name, None
            elif isinstance(node, ast.ImportFrom):
                source = self.resolve(node)
                for alias in node.names:
                    yield node.lineno, source, alias.name

    def functions(self):
        for node in ast.walk(self.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def load(package: Path) -> dict[str, Module]:
    modules = {}
    for path in sorted(package.rglob("*.py")):
        module = Module(path, package)
        modules[module.name] = module
    return modules


def internal_target(name: str, imported: str | None, modules: dict) -> str | None:
    """The internal module an import depends on (``from pkg import sub`` -> ``pkg.sub``)."""
    if imported and f"{name}.{imported}" in modules:
        return f"{name}.{imported}"
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict) -> dict[str, set[str]]:
    graph = defaultdict(set)
    for module in modules.values():
        for _, source, imported in module.imports():
            if not source.startswith("unet_lib"):
                continue
            target = internal_target(source, imported, modules)
            if target and target != module.name and not module.name.startswith(target + "."):
                graph[module.name].add(target)
    return graph


def private_imports(modules: dict) -> list[str]:
    problems = []
    module_aliases = {}
    for module in modules.values():
        aliases = {}
        for line, source, imported in module.imports():
            if not source.startswith("unet_lib"):
                continue
            if imported and imported.startswith("_") and imported != "__version__":
                problems.append(f"{module.path}:{line} imports {source}.{imported}")
            target = internal_target(source, imported, modules)
            if target:
                aliases[imported or source.split(".")[-1]] = target
        module_aliases[module.name] = aliases
        for node in ast.walk(module.tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != module.name
            ):
                problems.append(
                    f"{module.path}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}"
                )
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    return found


def layer_violations(modules: dict, graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for name, targets in graph.items():
        for target in targets:
            if target == "unet_lib" or name == "unet_lib":
                continue  # the package face re-exports lazily; it imports nothing eagerly
            if layer_of(target) > layer_of(name):
                problems.append(
                    f"{name} ({LAYERS[layer_of(name)][0]}) imports higher layer "
                    f"{target} ({LAYERS[layer_of(target)][0]})"
                )
    for module in modules.values():
        if not module.name.startswith(NEUTRAL):
            continue
        for line, source, _ in module.imports():
            top = source.split(".")[0]
            if top == "unet_lib":
                if source not in (
                    "unet_lib",
                    "unet_lib.checks",
                    "unet_lib.fileio",
                ) and not source.startswith(NEUTRAL):
                    problems.append(f"{module.path}:{line} (backend-neutral) imports {source}")
            elif top not in NEUTRAL_THIRD_PARTY and top not in sys.stdlib_module_names:
                problems.append(f"{module.path}:{line} (backend-neutral) imports {source}")
    return problems


_SKIP_LINE = re.compile(r"^(import |from \S+ import |[\])}:,(\[{]+$|\"\"\"|''')")


def shape_lines(text: str) -> list[tuple[int, str, str]]:
    """(line number, exact text, shape) of each line that counts for duplicate blocks.

    Comments, docstring lines, blank lines, imports and lone punctuation do not count; the
    shape replaces names, strings and numbers with placeholders (keywords stay).
    """
    import keyword

    shapes = defaultdict(list)
    exact = defaultdict(list)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError):
        return []
    for tok in tokens:
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT):
            continue
        if tok.type in (tokenize.DEDENT, tokenize.ENDMARKER):
            continue
        if tok.type == tokenize.STRING and tok.start[0] != tok.end[0]:
            continue  # docstrings and other multi-line strings
        line = tok.start[0]
        exact[line].append(tok.string)
        if tok.type == tokenize.NAME and not keyword.iskeyword(tok.string):
            shapes[line].append("N")
        elif tok.type == tokenize.STRING:
            shapes[line].append("S")
        elif tok.type == tokenize.NUMBER:
            shapes[line].append("0")
        else:
            shapes[line].append(tok.string)
    out = []
    for line in sorted(exact):
        text_line = " ".join(exact[line])
        if _SKIP_LINE.match(text_line) or len(shapes[line]) < 3:
            continue
        out.append((line, text_line, " ".join(shapes[line])))
    return out


def duplicate_blocks(modules: dict, size: int = DUPLICATE_LINES) -> list[str]:
    """Pairs of places sharing ``size`` consecutive counted lines (exact or same shape).

    Blocks whose every line is thin (a call with keyword arguments of one shape, as in a
    table of options) still count: they are the kind of repetition a table should replace.
    """
    seen = {}
    found = []
    reported = set()
    for module in modules.values():
        lines = shape_lines(module.text)
        for start in range(len(lines) - size + 1):
            window = lines[start : start + size]
            key = tuple(shape for _, _, shape in window)
            if len(set(key)) < 3:
                continue  # a run of one repeated shape (a literal table), not logic
            place = (module.name, window[0][0], window[-1][0])
            if key in seen:
                other = seen[key]
                tag = (other[0], module.name, other[1] // 20, place[1] // 20)
                if other[0] == module.name and place[1] <= other[2]:
                    continue  # overlapping windows of one run
                if tag not in reported:
                    reported.add(tag)
                    found.append(
                        f"{other[0]}:{other[1]}-{other[2]} ~ {module.name}:{place[1]}-{place[2]}"
                    )
            else:
                seen[key] = place
    return found


def measure(package: Path) -> dict:
    modules = load(package)
    graph = import_graph(modules)
    long_functions = [
        f"{module.path}:{line} {name} ({length} lines)"
        for module in modules.values()
        for name, line, length in module.functions()
        if length > MAX_FUNCTION_LINES
    ]
    return {
        "modules": len(modules),
        "total_lines": sum(m.lines for m in modules.values()),
        "long_modules": [
            f"{m.path} ({m.lines} lines)" for m in modules.values() if m.lines > MAX_MODULE_LINES
        ],
        "long_functions": long_functions,
        "private_imports": private_imports(modules),
        "cycles": [" -> ".join(c) for c in cycles(graph)],
        "layer_violations": layer_violations(modules, graph),
        "duplicates": duplicate_blocks(modules),
    }


def problems(report: dict) -> list[str]:
    out = []
    if report["total_lines"] > MAX_TOTAL_LINES:
        out.append(f"total lines {report['total_lines']} > {MAX_TOTAL_LINES}")
    for key in (
        "long_modules",
        "long_functions",
        "private_imports",
        "cycles",
        "layer_violations",
        "duplicates",
    ):
        out.extend(f"{key}: {item}" for item in report[key])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default=str(Path(__file__).parents[1] / "unet_lib"))
    parser.add_argument("--strict", action="store_true", help="exit 1 on any problem")
    args = parser.parse_args(argv)
    report = measure(Path(args.package))
    print(f"{report['modules']} modules, {report['total_lines']} lines")
    for key, value in report.items():
        if isinstance(value, list):
            print(f"{key}: {len(value)}")
            for item in value:
                print(f"  {item}")
    found = problems(report)
    print("OK" if not found else f"{len(found)} problems")
    return 1 if (found and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
