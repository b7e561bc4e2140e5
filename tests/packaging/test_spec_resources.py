"""The PyInstaller spec bundles every resource the app loads at run time.

The app's code is scanned for the files it reads from ``resources/`` (path
expressions that start from a name containing "resource", string literals
that name ``resources/...``) and for data files inside ``app/``; each must
exist and lie under one of the spec's ``APP_DATAS`` entries, so a frozen
Strata never misses an icon or a data file.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

from tests.conftest import ROOT

SPEC = ROOT / "packaging" / "strata.spec"
RESOURCE_EXT = re.compile(r"\.(svg|png|jpe?g|ico|icns|gif|qss|css|json|ya?ml|npz|npy|tiff?|ttf|otf|txt|csv|zip|desktop)$", re.I)


def spec_assignment(name: str):
    """The literal value assigned to ``name`` at the top of the spec."""
    tree = ast.parse(SPEC.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{SPEC} has no literal {name} = ...")


def covered(path: Path, datas: list[tuple[str, str]]) -> bool:
    rel = path.relative_to(ROOT)
    return any(rel == Path(src) or Path(src) in rel.parents for src, _dest in datas)


def _path_parts(node: ast.AST) -> tuple[ast.AST, list[str]] | None:
    """For ``BASE / "a" / "b"`` (or ``BASE.joinpath("a", "b")``): (BASE, ["a", "b"])."""
    parts: list[str] = []
    while True:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if not (isinstance(node.right, ast.Constant) and isinstance(node.right.value, str)):
                return None
            parts.insert(0, node.right.value)
            node = node.left
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "joinpath":
            if not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in node.args):
                return None
            parts[:0] = [a.value for a in node.args]
            node = node.func.value
        else:
            return (node, parts) if parts else None


def _mentions_resources(node: ast.AST) -> bool:
    text = ast.unparse(node).lower()
    return "resource" in text


ICONS = re.compile(r"\.(svg|png|jpe?g|ico|icns|gif)$", re.I)


def _optional_in(function: ast.AST | None) -> bool:
    """Whether the code around a reference checks that the file exists first."""
    text = ast.unparse(function) if function is not None else ""
    return ".exists()" in text or ".is_file()" in text


@functools.lru_cache(maxsize=1)
def referenced_resources() -> dict[Path, tuple[str, bool]]:
    """Files under resources/ that app/ refers to: where, and whether the code treats them as optional.

    Icons are never optional: a missing icon is a bug even where the code copes.
    """
    found: dict[Path, tuple[str, bool]] = {}
    for source in sorted((ROOT / "app").rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]

        def note(rel: str, node: ast.AST) -> None:
            enclosing = None
            for fn in functions:
                if fn.lineno <= node.lineno <= (fn.end_lineno or fn.lineno):
                    enclosing = fn  # innermost wins: functions come outer first
            optional = _optional_in(enclosing) and not ICONS.search(rel)
            found.setdefault(ROOT / "resources" / rel, (f"{source.relative_to(ROOT)}:{node.lineno}", optional))

        for node in ast.walk(tree):
            split = _path_parts(node)
            if split and _mentions_resources(split[0]) and RESOURCE_EXT.search(split[1][-1]):
                note(str(Path(*split[1])), node)
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                match = re.search(r"(?:^|/)resources/([\w./-]+)", node.value)
                if match and RESOURCE_EXT.search(match.group(1)):
                    note(match.group(1), node)
                elif RESOURCE_EXT.search(node.value) and (ROOT / "resources" / node.value).is_file():
                    note(node.value, node)  # a bare name such as "strata.svg" in a list of candidates
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func).lower()
                if "resource" in name and node.args and isinstance(node.args[0], ast.Constant):
                    value = node.args[0].value
                    if isinstance(value, str) and RESOURCE_EXT.search(value):
                        note(value, node)
    return found


def test_spec_is_valid_python_with_app_datas():
    datas = spec_assignment("APP_DATAS")
    assert ("resources", "resources") in datas
    for src, _dest in datas:
        assert (ROOT / src).exists(), f"the spec bundles {src}, which does not exist"


def test_every_referenced_resource_exists_and_is_bundled():
    datas = spec_assignment("APP_DATAS")
    missing, unbundled = [], []
    for path, (where, optional) in referenced_resources().items():
        if not path.exists():
            if not optional:
                missing.append(f"{path.relative_to(ROOT)} (used at {where})")
        elif not covered(path, datas):
            unbundled.append(f"{path.relative_to(ROOT)} (used at {where})")
    assert not missing, f"resources the app loads but that do not exist: {missing}"
    assert not unbundled, f"resources the app loads but the spec does not bundle: {unbundled}"


def test_every_file_in_resources_and_every_data_file_in_app_is_bundled():
    datas = spec_assignment("APP_DATAS")
    files = [p for p in (ROOT / "resources").rglob("*") if p.is_file()]
    files += [
        p for p in (ROOT / "app").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    unbundled = [str(p.relative_to(ROOT)) for p in files if not covered(p, datas)]
    assert not unbundled, f"data files the spec does not bundle: {unbundled}"


def test_spec_collects_the_data_of_packages_that_load_files():
    packages = spec_assignment("DATA_PACKAGES")
    for needed in ("napari", "napari_resources", "napari_builtins", "vispy", "superqt", "skimage"):
        assert needed in packages, f"{needed} loads icons, shaders or stubs at run time"


def test_scanner_finds_the_app_icon():
    """The scanner itself finds a real reference: the window's icon."""
    refs = referenced_resources()
    icons = [p for p in refs if ICONS.search(p.name)]
    assert icons or not (ROOT / "resources").is_dir(), "no icon reference found in app/"


def test_scanner_finds_a_resource_path():
    """The scanner itself: a BASE / "icons" / "x.svg" expression is found."""
    tree = ast.parse('RESOURCES_DIR / "icons" / "strata.svg"', mode="eval")
    base, parts = _path_parts(tree.body)
    assert _mentions_resources(base) and parts == ["icons", "strata.svg"]


def test_qt_modules_the_viewers_need_are_not_excluded():
    """napari's canvas (VisPy's Qt backend) imports QtTest, QtOpenGL and QtSvg when it starts."""
    unused = spec_assignment("UNUSED_QT")
    for needed in ("QtCore", "QtGui", "QtWidgets", "QtOpenGL", "QtOpenGLWidgets", "QtSvg", "QtTest"):
        assert needed not in unused, f"the spec leaves out PySide6.{needed}, which the app needs"
