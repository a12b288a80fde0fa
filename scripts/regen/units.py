"""Units of upstream modules (top-level functions, methods of top-level classes and top-level
classes without methods, such as dataclasses, plus the ``<imports>`` pseudo-unit): their text and
fingerprints, and the splicing of rendered template units over them."""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from .config import Target, FileSpec
from .errors import RegenError
from .paths import TEMPLATES


def _units(source: str, filename: str) -> Dict[str, ast.AST]:
    """Top-level functions, methods of top-level classes (``Class.method``) and top-level classes
    that define no method (a dataclass: the class is the unit), by qualified name."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise RegenError(f"{filename} does not parse as Python ({exc}).") from exc
    found: Dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            methods = [sub for sub in node.body if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for sub in methods:
                found[f"{node.name}.{sub.name}"] = sub
            if not methods:
                found[node.name] = node
    return found


def _classes(source: str, filename: str) -> Dict[str, ast.ClassDef]:
    """Top-level classes of a module, by name."""
    return {n.name: n for n in ast.parse(source, filename=filename).body if isinstance(n, ast.ClassDef)}


IMPORTS_UNIT = "<imports>"
"""The lock's pseudo-unit for a module's import statements: every unit of the module runs
against them, so ``import httpx`` becoming ``import httpx2 as httpx`` changes what each unit
calls although no unit body changed. Locked for every file we replace units in or rely on."""


def _import_nodes(tree: ast.Module) -> List[ast.stmt]:
    """A module's import statements: top level, and inside top-level ``if``/``try`` blocks
    (``if TYPE_CHECKING:``, ``try: import x except ImportError: ...``), in source order."""
    found: List[ast.stmt] = []

    def walk(body: List[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, ast.If):
                walk(node.body)
                walk(node.orelse)
            elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
                for block in (node.body, node.orelse, node.finalbody):  # type: ignore[attr-defined]
                    walk(block)
                for handler in node.handlers:  # type: ignore[attr-defined]
                    walk(handler.body)

    walk(tree.body)
    return found


def imports_text(source: str, filename: str) -> str:
    """The text the ``<imports>`` pseudo-unit covers: each import statement of the module, one
    per line, in source order."""
    tree = ast.parse(source, filename=filename)
    return "".join((ast.get_source_segment(source, n) or "") + "\n" for n in _import_nodes(tree))


def unit_label(unit: str) -> str:
    return "the module's imports" if unit == IMPORTS_UNIT else unit


def locked_text(source: str, filename: str, unit: str, added: bool) -> Optional[str]:
    """The upstream text a unit's fingerprint covers: the unit itself, or for a method our
    template adds, the whole class it is added to, or for :data:`IMPORTS_UNIT` the module's
    import statements. None when upstream has no such unit or class."""
    if unit == IMPORTS_UNIT:
        return imports_text(source, filename)
    if added:
        node: Optional[ast.AST] = _classes(source, filename).get(unit.split(".")[0])
    else:
        node = _units(source, filename).get(unit)
    return unit_source(source, node) if node is not None else None


def _span(node: ast.AST) -> Tuple[int, int]:
    """0-based [start, end) line span of a unit (a def or class statement), decorators included."""
    assert isinstance(node, ast.stmt) and node.end_lineno is not None
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno


def unit_source(source: str, node: ast.AST) -> str:
    start, end = _span(node)
    return "".join(source.splitlines(keepends=True)[start:end])


def fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _template_env():
    try:
        import jinja2
    except ImportError as exc:  # pragma: no cover
        raise RegenError("Jinja2 is not installed; `pip install jinja2` (a build requirement).") from exc
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


@dataclass
class Rendered:
    """A template rendered for one target file: its units and the imports it adds."""

    units: Dict[str, str]
    imports: List[str]


def render_template(spec: FileSpec, target: Target) -> Rendered:
    """Render ``spec``'s template for ``target`` (with the line's feature switches for it).

    Raises:
        RegenError: Jinja2 is missing, the template asks for a switch the line does not set, or
            the result does not parse.
    """
    text = (
        _template_env()
        .get_template(spec.template)
        .render(pkg=target.package, features=_Features(target.features), target=target.package)
    )
    nodes = _units(text, f"{spec.template} (rendered for {target.package})")
    tree = ast.parse(text)
    imports = [ast.get_source_segment(text, n) or "" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return Rendered({name: unit_source(text, node) for name, node in nodes.items()}, imports)


class _Features(Dict[str, bool]):
    """Feature switches; asking for one gen.yaml does not set is an error, not False."""

    def __getattr__(self, name: str) -> bool:
        if name not in self:
            raise RegenError(
                f"A template asks for feature switch {name!r}, which gen.yaml does not set for "
                "this target in this line. Add it under the line's `features:` (true or false)."
            )
        return self[name]


MODIFIED_MARK = "# Modified by mistralai-patched"


def splice(source: str, rendered: Rendered, relpath: str, revision: int, adds: Tuple[str, ...] = ()) -> str:
    """Replace each rendered unit in ``source`` (or, for the methods in ``adds``, append it to
    its class), add the template's imports and the notice."""
    nodes = _units(source, relpath)
    classes = _classes(source, relpath)
    lines = source.splitlines(keepends=True)
    edits = []
    for name, text in rendered.units.items():
        if name in adds and name not in nodes and name.split(".")[0] in classes:
            end = classes[name.split(".")[0]].end_lineno or 0
            edits.append((end, end, ["\n"] + text.splitlines(keepends=True)))
            continue
        if name not in nodes:
            raise RegenError(
                f"The template for {relpath} replaces {name}, which upstream no longer defines. "
                "Review the upstream change and update the template."
            )
        start, end = _span(nodes[name])
        edits.append((start, end, text.splitlines(keepends=True)))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = new
    out = "".join(lines)
    tree = ast.parse(out)
    last_import = max((n.end_lineno or 0 for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), default=0)
    # Present means the same statement (names and aliases), not the same text somewhere:
    # `import httpx` is not present in `import httpx2 as httpx`.
    present = {ast.dump(n) for n in _import_nodes(tree)}
    missing = [imp + "\n" for imp in rendered.imports if ast.dump(ast.parse(imp).body[0]) not in present]
    lines = out.splitlines(keepends=True)
    lines[last_import:last_import] = missing
    header_end = 0
    while header_end < len(lines) and (header_end == 0 or lines[header_end].startswith("#")):
        header_end += 1
    replaced = sorted(u for u in rendered.units if u not in adds or u in nodes)
    added_units = sorted(u for u in rendered.units if u in adds and u not in nodes)
    if rendered.units:
        what = "; ".join(
            part
            for part in (
                f"replaced {', '.join(replaced)}" if replaced else "",
                f"added {', '.join(added_units)}" if added_units else "",
            )
            if part
        )
    else:  # an import-only template rebinds names of the module (see _check_rebinds)
        what = "added " + "; ".join(rendered.imports)
    notice = f"{MODIFIED_MARK} (fork revision {revision}): {what}; see NOTICE.\n"
    lines[header_end:header_end] = [notice]
    out = "".join(lines)
    _check_rebinds(out, rendered, relpath)
    return out


def _bound_names(node: ast.AST) -> List[str]:
    """Names a top-level statement binds (imports, defs, classes, plain assignments)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    return []


def _check_rebinds(source: str, rendered: Rendered, relpath: str) -> None:
    """A template import may rebind a name of upstream's module (``get_type_hints``, ``asdict``):
    make sure no later top-level statement of the module binds it again, or the import would
    have no effect."""
    ours = {ast.dump(n) for imp in rendered.imports for n in ast.parse(imp).body}
    names = {name for imp in rendered.imports for n in ast.parse(imp).body for name in _bound_names(n)}
    last: Dict[str, bool] = {}
    for node in ast.parse(source).body:
        for name in _bound_names(node):
            if name in names:
                last[name] = ast.dump(node) in ours
    stale = sorted(name for name in names if not last.get(name))
    if stale:
        raise RegenError(
            f"Upstream's {relpath} binds {', '.join(stale)} after the import our template adds, so "
            "the template would have no effect. Review the upstream change and update the template."
        )


# --------------------------------------------------------------------------- lock
