"""The parts of ``idp/`` import downward only, and the protocol core imports no page.

The import graph is built from the source, every ``import`` counted wherever it stands (inside
functions too: a deferred import hides a cycle, it does not remove it). A part is a top-level
package or module of ``idp`` (``idp.auth``, ``idp.oidc``, ``idp.audit``...).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "idp"

#: Each part's layer: a part may import parts of its own layer or below, never above. Within a layer
#: the parts still may not form a cycle. Pages sit on the protocol and the domain, which sit on the
#: infrastructure; the composition root on top knows everything.
LAYERS = {
    # infrastructure
    "config": 0, "clock": 0, "models": 0, "merkle": 0, "signed_note": 0, "metrics": 0,
    "db": 1, "store": 1, "i18n": 1, "logs": 1, "security": 1, "useragents": 1,
    "state": 2,
    "audit": 2, "cache": 2, "outbox": 2, "codes": 3, "interaction": 3, "errors": 2, "revocation": 3,
    # domain
    "identity": 4, "auth": 5, "consent": 6,
    # protocol
    "oidc": 7,
    # pages that stand on their own part
    "registration": 8, "account": 8, "health": 8, "helpdesk": 8, "services": 8,
    "transparency": 8,
    # composition root and operator commands
    "cli": 9, "app": 10, "idp": 11,
}


@dataclass(frozen=True)
class Import:
    source: str   # importing module, e.g. idp.auth.views
    target: str   # imported idp module, e.g. idp.identity.nik
    where: str    # file:line

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The idp module an import names (a package, or the module a ``from`` names inside it)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports() -> list[Import]:
    known = modules()
    found = []
    for source, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name == "idp" or name.startswith("idp."):
                    target = resolve(name, known)
                    if target and target != source:
                        found.append(Import(source, target, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


def part(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def page_modules() -> set[str]:
    """Modules that define a blueprint of pages (or build one), outside the protocol core."""
    pages = set()
    for name, path in modules().items():
        if name.startswith("idp.oidc"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Blueprint"
               for n in ast.walk(tree)):
            pages.add(name)
    return pages


def test_the_graph_sees_deferred_imports() -> None:
    found = {(i.source, i.target) for i in imports()}
    assert ("idp", "idp.app") in found  # create_app's import sits inside the function


def test_parts_form_no_import_cycle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for i in imports():
        a, b = part(i.source), part(i.target)
        if a != b:
            edges[a].add(b)
            by_edge[(a, b)].append(i)
    problems = []
    for component in cycles(edges):
        lines = [str(i) for a in component for b in component for i in by_edge.get((a, b), [])]
        problems.append(f"cycle between {', '.join(component)}:\n  " + "\n  ".join(lines))
    assert not problems, "\n".join(problems)


def test_parts_import_only_their_layer_or_below() -> None:
    unknown = sorted({part(m) for m in modules()} - set(LAYERS))
    assert not unknown, f"parts without a layer in LAYERS: {unknown}"
    upward = [str(i) for i in imports()
              if LAYERS[part(i.target)] > LAYERS[part(i.source)]]
    assert not upward, "imports from a lower layer to a higher one:\n  " + "\n  ".join(upward)


def test_protocol_core_imports_no_page_module() -> None:
    pages = page_modules()
    assert "idp.auth.views" in pages and "idp.consent.views" in pages  # the detector works
    offending = [str(i) for i in imports() if i.source.startswith("idp.oidc") and i.target in pages]
    assert not offending, "idp/oidc imports page modules:\n  " + "\n  ".join(offending)


def test_no_module_keeps_a_registry_other_modules_append_to() -> None:
    """A module-level list or dict that another module appends to is a hidden registry: the
    composition root lists what the app is made of instead."""
    mutating = {"append", "extend", "insert", "update", "setdefault", "add"}
    offending = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            # other_module.REGISTRY.append(...)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in mutating and isinstance(node.func.value, ast.Attribute) \
                    and isinstance(node.func.value.value, ast.Name) \
                    and node.func.value.attr.isupper():
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            # app.extensions["..."] = a behaviour (only the composition root installs ports)
            if isinstance(node, ast.Assign) and name not in ("idp.app", "idp.db", "idp.oidc.server"):
                for target in node.targets:
                    if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute) \
                            and target.value.attr == "extensions":
                        offending.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offending, "registries filled from outside their module:\n  " + "\n  ".join(offending)
