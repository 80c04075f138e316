"""The apps depend in one direction (README, "How the code is laid out").

    kameng  ←  shop  ←  cardpool, payments  ←  delivery (listens)

An app's domain modules (models, services, selectors, builders, tasks, ...) import only the
apps below it: shop asks cardpool for stock through ``shop.fulfilment``, and delivery reacts to
order events (``shop.events``) and to the key pool's signals instead of being called. The
interface modules (views, admin, forms, urls, management commands, context processors,
template tags) compose everything and may import any app; no domain module imports them.
No module imports another app inside a function, but an ``AppConfig.ready``, where Django
wires apps together once the models are loaded.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("kameng", "shop", "cardpool", "payments", "delivery")
# What each app's domain modules may import, besides themselves.
ALLOWED: dict[str, set[str]] = {
    "kameng": set(),
    "shop": {"kameng"},
    "cardpool": {"kameng", "shop"},
    "payments": {"kameng", "shop"},
    "delivery": {"kameng", "shop", "cardpool", "payments"},
}
INTERFACE = {"views", "admin", "forms", "urls", "context_processors", "admin_mixins"}
INTERFACE_PACKAGES = {"management", "templatetags"}
COMPOSITION_ROOTS = {"kameng.urls"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _is_interface(module: str) -> bool:
    parts = module.split(".")
    return parts[-1] in INTERFACE or any(part in INTERFACE_PACKAGES for part in parts[1:])


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in the file."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno, in_function))
                found.extend((f"{child.module}.{alias.name}", child.lineno, in_function) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def _app_modules() -> list[Path]:
    return sorted(path for app in APPS for path in (ROOT / app).rglob("*.py") if "migrations" not in path.parts)


def _violations() -> list[str]:
    modules = {_module_name(path) for path in _app_modules()}
    problems = []
    for path in _app_modules():
        module = _module_name(path)
        app = module.split(".")[0]
        for imported, line, in_function in _imports(ast.parse(path.read_text(), filename=str(path))):
            target_app = imported.split(".")[0]
            if target_app not in APPS or target_app == app:
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {imported}"
            if in_function and path.name != "apps.py":  # ready() runs once the models are loaded
                problems.append(f"{where} inside a function (hides a dependency: move the code or import at the top)")
            target = next((m for m in (imported, imported.rsplit(".", 1)[0]) if m in modules), imported)
            if _is_interface(target) and not _is_interface(module) and module not in COMPOSITION_ROOTS:
                problems.append(f"{where}: a domain module imports an interface module")
            elif not _is_interface(module) and module not in COMPOSITION_ROOTS and target_app not in ALLOWED[app]:
                problems.append(f"{where}: {app} may import only {sorted(ALLOWED[app]) or 'no app'}")
    first: dict[str, str] = {}  # one problem per import line (``from a import b`` names a and a.b)
    for problem in problems:
        first.setdefault(problem.split(" imports ")[0], problem)
    return list(first.values())


def test_apps_import_only_in_the_intended_direction():
    assert _violations() == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from delivery.services import order_deliver\n", "payments may import only"),
        ("def f():\n    from delivery import tasks\n", "inside a function"),
        ("from shop.views import order_page\n", "imports an interface module"),
    ],
)
def test_an_import_against_the_direction_is_reported(tmp_path, monkeypatch, source, expected):
    bad = ROOT / "payments" / "_architecture_probe.py"
    bad.write_text(source)
    try:
        assert any(expected in problem for problem in _violations())
    finally:
        bad.unlink()
