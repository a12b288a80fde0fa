"""``gen.yaml``, typed: the distribution, the one list of targets, the templates, and the release
lines (each an upstream release pinned by version and sdist sha256, with its own fork revision,
feature switches per target and relied-on units).

:func:`load_config` reads and validates the whole file; :meth:`Config.line` picks the line to
build (``--upstream``, else ``$MISTRALAI_PATCHED_UPSTREAM``, else ``default_line``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import RegenError
from .paths import GEN_YAML, ROOT, TEMPLATES, UPSTREAM_ENV

HTTP_LIBRARIES = ("httpx", "httpx2")
"""HTTP libraries a line's upstream may be generated against (same API, distinct classes)."""


@dataclass(frozen=True)
class FileSpec:
    """One upstream module of a target that a template replaces units in."""

    path: str  # relative to the target's package directory, e.g. "utils/retries.py"
    template: str  # file name under .speakeasy/templates
    # Methods the template adds to a class of upstream's module ("Class.method"). Upstream has no
    # such unit, so the lock fingerprints the whole class instead.
    adds: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """A generated SDK inside the upstream sdist (e.g. ``mistralai.azure.client``), as one line
    builds it: the files our templates replace units in, and the line's feature switches for it
    (which upstream variant of each replaced unit the target has; see the templates' headers)."""

    package: str
    files: Tuple[FileSpec, ...]
    features: Mapping[str, bool] = field(default_factory=dict)

    @property
    def rel_dir(self) -> str:
        return self.package.replace(".", "/")

    def rendered_key(self, path: str) -> str:
        """Key of a rendered file in the build record's ``rendered`` table (``mistralai/client/
        basesdk.py``): the target's directory and the file's path inside it."""
        return rendered_key(self.package, path)


def rendered_key(package: str, path: str) -> str:
    """Key of ``path`` of target ``package`` in the build record's ``rendered`` table."""
    return f"{package.replace('.', '/')}/{path}"


@dataclass(frozen=True)
class Line:
    """One release line: everything needed to build it.

    Attributes:
        name: The line's name in gen.yaml (``"3.x"``).
        upstream_name, upstream_version, sdist_sha256: The pinned upstream sdist.
        http_library: The HTTP library upstream's code of this line is generated against
            (``httpx`` or ``httpx2``); checked against upstream's own dependencies.
        fork_revision: Our revision on this upstream base (``>= 1``).
        targets: The targets, with this line's feature switches.
        relies_on: Upstream units our own code assumes without replacing them, by module path
            relative to the import package; fingerprinted in the lock like replaced units.
    """

    name: str
    upstream_name: str
    upstream_version: str
    sdist_sha256: str
    http_library: str
    fork_revision: int
    dist_name: str
    import_package: str
    drop_in_name: str
    targets: Tuple[Target, ...]
    relies_on: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()

    @property
    def version(self) -> str:
        """PEP 440 version of our distribution: upstream base + ``.post<fork revision>``."""
        return f"{self.upstream_version}.post{self.fork_revision}"

    @property
    def drop_in_version(self) -> str:
        """PEP 440 version of the drop-in variant (distribution named like upstream's).

        A local version label on upstream's own version, ``<upstream>+patched.<fork revision>``:
        it sorts after the upstream release (so ``mistralai>=2.8,<3`` picks it over upstream's
        2.10.1), it still matches ``mistralai==<upstream>`` pins (PEP 440 ignores the local label
        when the specifier has none), its public part is what ``mistralai.client.__version__``
        and the User-Agent report, and it can never collide with a release upstream publishes
        (package indexes refuse local labels, which is why this variant is for a private index
        or a ``--find-links`` directory).
        """
        return f"{self.upstream_version}+patched.{self.fork_revision}"

    def variant(self, distribution: str) -> Tuple[str, str]:
        """``(variant, version)`` for a distribution name we build: ``"patched"`` for
        ``mistralai-patched``, ``"drop-in"`` for the distribution named like upstream's.

        Raises:
            RegenError: the name is neither (pyproject.toml and gen.yaml disagree).
        """
        key = normalize(distribution)
        if key == normalize(self.dist_name):
            return "patched", self.version
        if key == normalize(self.drop_in_name):
            return "drop-in", self.drop_in_version
        raise RegenError(
            f"pyproject.toml names the distribution {distribution!r}, but gen.yaml builds "
            f"{self.dist_name!r} (and its drop-in variant {self.drop_in_name!r}). Fix the name in "
            "pyproject.toml, or build the drop-in variant with scripts/build-drop-in."
        )


@dataclass(frozen=True)
class Config:
    """The whole of gen.yaml."""

    default_line: str
    lines: Mapping[str, Line]
    target_packages: Tuple[str, ...]

    def line(self, selector: Optional[str] = None) -> Line:
        """The line to build: ``selector`` (a line name such as ``2.x``, or the upstream version a
        line pins, such as ``2.10.1``), else ``$MISTRALAI_PATCHED_UPSTREAM``, else the default.

        Raises:
            RegenError: the selector names no line of gen.yaml.
        """
        chosen = selector or os.environ.get(UPSTREAM_ENV, "").strip() or self.default_line
        for line in self.lines.values():
            if chosen in (line.name, line.upstream_version):
                return line
        known = ", ".join(f"{line.name} (upstream {line.upstream_version})" for line in self.lines.values())
        where = "--upstream" if selector else UPSTREAM_ENV
        raise RegenError(
            f"{where}={chosen!r} names no release line of gen.yaml; its lines are: {known}. Give "
            "a line's name or the upstream version it pins (or unset it for the default line, "
            f"{self.default_line}). Nothing was written."
        )


def normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def yaml_module() -> Any:
    """PyYAML, or a RegenError saying how to get it."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RegenError(
            "PyYAML is not installed, and the regeneration needs it to read gen.yaml. "
            "Install the build requirements (`pip install jinja2 pyyaml`) or build "
            "through pip/`python -m build`, which install them for you."
        ) from exc
    return yaml


def _need(mapping: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise RegenError(
            f"gen.yaml is malformed: `{where}.{key}` is missing. Add it (see the README section "
            "'gen.yaml') and run the regeneration again; nothing was written."
        )
    value = mapping[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise RegenError(
            f"gen.yaml is malformed: `{where}.{key}` must be a {kind.__name__}, got "
            f"{type(value).__name__} ({value!r}). Fix it (quote strings that YAML could read as "
            "numbers) and run the regeneration again; nothing was written."
        )
    return value


def _malformed(what: str) -> RegenError:
    return RegenError(f"gen.yaml is malformed: {what}. Fix it and run the regeneration again; nothing was written.")


def _relies_on(raw: Any, where: str) -> List[Tuple[str, Tuple[str, ...]]]:
    raw = raw or {}
    if not isinstance(raw, dict) or not all(
        isinstance(rel, str)
        and rel.endswith(".py")
        and isinstance(units, list)
        and units
        and all(isinstance(u, str) and u for u in units)
        for rel, units in raw.items()
    ):
        raise _malformed(
            f"`{where}` must map module paths (relative to the import package, ending in .py) to "
            'non-empty lists of unit names ("function" or "Class.method")'
        )
    return [(rel, tuple(units)) for rel, units in raw.items()]


def _files(raw: Any, where: str = "templates") -> Tuple[FileSpec, ...]:
    if not isinstance(raw, dict) or not raw:
        raise _malformed(f"`{where}` must map target file paths to {{template: NAME}} entries")
    files = []
    for rel, spec in raw.items():
        template = _need(spec, "template", str, f"{where}.{rel}")
        if not (TEMPLATES / template).is_file():
            raise RegenError(
                f"gen.yaml names template {template!r} for {rel}, but .speakeasy/templates/{template} "
                "does not exist. Fix the name or add the template."
            )
        adds = spec.get("adds", []) or []
        if not isinstance(adds, list) or not all(isinstance(a, str) and a.count(".") == 1 for a in adds):
            raise _malformed(f'`{where}.{rel}.adds` must list methods as "Class.method" strings')
        files.append(FileSpec(rel, template, tuple(adds)))
    return tuple(files)


def load_config(path: Path = GEN_YAML) -> Config:
    """Read and validate ``gen.yaml``.

    Raises:
        RegenError: the file is missing, not YAML, or lacks/mistypes a field.
    """
    yaml = yaml_module()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegenError(f"{path} does not exist. Restore it from git (`git checkout -- gen.yaml`).") from exc
    except yaml.YAMLError as exc:
        raise RegenError(
            f"gen.yaml is not valid YAML ({exc}). Fix the syntax at the position shown and run "
            "the regeneration again; nothing was written."
        ) from exc
    dist = _need(raw, "distribution", dict, "gen")
    dist_name = _need(dist, "name", str, "distribution")
    import_package = _need(dist, "import_package", str, "distribution")
    drop_in_name = _need(dist, "drop_in_name", str, "distribution")
    packages = _need(raw, "targets", list, "gen")
    if not packages or not all(isinstance(p, str) and p for p in packages) or len(set(packages)) != len(packages):
        raise _malformed("`targets` must list the targets' import packages, each once")
    files = _files(_need(raw, "templates", dict, "gen"))
    common_relies = _relies_on(raw.get("relies_on"), "relies_on")
    lines_raw = _need(raw, "lines", dict, "gen")
    lines: Dict[str, Line] = {}
    for name, spec in lines_raw.items():
        where = f"lines.{name}"
        if not isinstance(name, str):
            raise _malformed(f"the line name {name!r} must be a string (quote it)")
        up = _need(spec, "upstream", dict, where)
        sha = _need(up, "sdist_sha256", str, f"{where}.upstream").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise RegenError(
                f"gen.yaml is malformed: `{where}.upstream.sdist_sha256` must be 64 hex digits, got "
                f"{sha!r}. Copy the sha256 of the sdist from the package index's file listing."
            )
        revision = _need(spec, "fork_revision", int, where)
        if revision < 1:
            raise _malformed(f"`{where}.fork_revision` must be >= 1")
        library = _need(spec, "http_library", str, where)
        if library not in HTTP_LIBRARIES:
            raise _malformed(f"`{where}.http_library` must be one of {', '.join(HTTP_LIBRARIES)}, got {library!r}")
        features_raw = _need(spec, "features", dict, where)
        if sorted(features_raw) != sorted(packages):
            raise _malformed(
                f"`{where}.features` must give feature switches for exactly the targets "
                f"({', '.join(packages)}); it has {', '.join(map(str, features_raw)) or 'none'}"
            )
        # Templates of this line only, per target: a module only some targets of the line have.
        extra_raw = spec.get("templates") or {}
        if not isinstance(extra_raw, dict) or any(package not in packages for package in extra_raw):
            raise _malformed(
                f"`{where}.templates` must map targets ({', '.join(packages)}) to templates of that "
                "target only, as the top-level `templates` maps file paths"
            )
        extra = {package: _files(raw_files, f"{where}.templates.{package}") for package, raw_files in extra_raw.items()}
        for package, own in extra.items():
            twice = {f.path for f in own} & {f.path for f in files}
            if twice:
                raise _malformed(
                    f"`{where}.templates.{package}` names {', '.join(sorted(twice))}, which `templates` has"
                )
        targets = []
        for package in packages:
            switches = features_raw[package] or {}
            if not isinstance(switches, dict) or not all(
                isinstance(k, str) and isinstance(v, bool) for k, v in switches.items()
            ):
                raise _malformed(f"`{where}.features.{package}` must map feature names to true/false")
            targets.append(Target(package, files + extra.get(package, ()), dict(switches)))
        lines[name] = Line(
            name=name,
            upstream_name=_need(up, "name", str, f"{where}.upstream"),
            upstream_version=_need(up, "version", str, f"{where}.upstream"),
            sdist_sha256=sha,
            http_library=library,
            fork_revision=revision,
            dist_name=dist_name,
            import_package=import_package,
            drop_in_name=drop_in_name,
            targets=tuple(targets),
            relies_on=tuple(common_relies + _relies_on(spec.get("relies_on"), f"{where}.relies_on")),
        )
    if not lines:
        raise _malformed("`lines` must name at least one release line")
    default = _need(raw, "default_line", str, "gen")
    if default not in lines:
        raise _malformed(f"`default_line` is {default!r}, which is not a key of `lines` ({', '.join(lines)})")
    return Config(default_line=default, lines=lines, target_packages=tuple(packages))


def in_sdist() -> bool:
    """True when running from an unpacked sdist of this project (it carries PKG-INFO)."""
    return (ROOT / "PKG-INFO").is_file()
