"""An import-linter contract for names inside external packages (used by `make lint`).

import-linter sees an external package only as a whole (`aiogram`, never `aiogram.Dispatcher`),
yet the core may use aiogram's Bot to send and must never hold aiogram's Dispatcher or
aiohttp's web server: those belong to handlers/. This contract reads every import statement of
the source modules, function-level ones too, and names each one that reaches a forbidden name.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class ForbiddenNamesContract(Contract):
    """The source modules import none of `forbidden_names` (dotted prefixes, e.g.
    `aiohttp.web` or `aiogram.Dispatcher`), nor the bare root package of one, which would
    reach every name in it (`import aiohttp`).
    """

    type_name = "forbidden_names"

    source_modules = fields.ListField(subfield=fields.StringField())
    forbidden_names = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        """Every import statement of every source module, against the forbidden names."""
        forbidden: list[str] = list(self.forbidden_names)  # type: ignore[call-overload]
        roots = {name.split(".", 1)[0] for name in forbidden}
        modules: set[str] = set()
        for source in self.source_modules:  # type: ignore[attr-defined]
            modules |= {source} | graph.find_descendants(source)
        violations: list[str] = []
        for module in sorted(modules):
            for line, imported in _imports(module):
                if imported in roots or any(
                    imported == name or imported.startswith(f"{name}.") or _prefix(imported, name)
                    for name in forbidden
                ):
                    violations.append(f"{module} -> {imported} (l.{line})")
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        """One line per import that reaches a forbidden name."""
        for violation in check.metadata["violations"]:
            output.print_error(f"- {violation}", bold=False)
        output.new_line()


def _prefix(imported: str, name: str) -> bool:
    # "aiohttp.web" also forbids aiohttp's web_* modules (web_app, web_request, ...).
    return imported.startswith(name) and name.rpartition(".")[2].islower()


def _imports(module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of everything `module` imports; `from a import b` gives "a.b"."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return []
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"), filename=spec.origin)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found
