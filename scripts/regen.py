"""Regenerate ``src/mistralai/`` from the pinned upstream sdist with our templates rendered in.

Steps (see README "Maintainers"): read ``gen.yaml`` → fetch the pinned sdist with pip into a
cache outside the tree → verify its sha256 → extract to a temporary directory → map it into the
import package the way upstream's wheel does (``[tool.hatch.build.targets.wheel.sources]`` of the
upstream pyproject) → for each target and replaced unit, fingerprint the pristine upstream code
and compare with ``.speakeasy/gen.lock`` → render our templates and splice their units over the
upstream ones → write the tree atomically (temporary directory + rename).

Any failure raises :class:`RegenError` with one paragraph naming the cause and the fix; nothing
in the output location is touched until the whole tree has been built.

Build-time dependencies: Jinja2, PyYAML, packaging (and tomli on Python < 3.11).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import email.parser
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
GEN_YAML = ROOT / "gen.yaml"
SPEAKEASY = ROOT / ".speakeasy"
TEMPLATES = SPEAKEASY / "templates"
LOCK = SPEAKEASY / "gen.lock"
DEFAULT_OUT = ROOT / "src" / "mistralai"
BUILD_INFO = ROOT / "src" / "mistralai_patched" / "_build_info.json"
NAMESPACE_INIT = TEMPLATES / "namespace__init__.py"
LOCK_FORMAT = 1


class RegenError(Exception):
    """A regeneration failure; ``str()`` is a paragraph saying what is wrong and what to do."""


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FileSpec:
    """One upstream module of a target that a template replaces units in."""

    path: str  # relative to the target's package directory, e.g. "utils/retries.py"
    template: str  # file name under .speakeasy/templates
    features: Dict[str, bool] = field(default_factory=dict)
    # Methods the template adds to a class of upstream's module ("Class.method"). Upstream has no
    # such unit, so the lock fingerprints the whole class instead.
    adds: Tuple[str, ...] = ()


@dataclass(frozen=True)
class Target:
    """A generated SDK inside the upstream sdist (e.g. ``mistralai.azure.client``)."""

    package: str
    files: Tuple[FileSpec, ...]

    @property
    def rel_dir(self) -> str:
        return self.package.replace(".", "/")


@dataclass(frozen=True)
class Config:
    upstream_name: str
    upstream_version: str
    sdist_sha256: str
    dist_name: str
    import_package: str
    fork_revision: int
    targets: Tuple[Target, ...]
    drop_in_name: str
    # Upstream units our own code assumes without replacing them (gen.yaml `relies_on`), by file
    # path relative to the import package: fingerprinted in the lock like replaced units.
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
        key = _normalize(distribution)
        if key == _normalize(self.dist_name):
            return "patched", self.version
        if key == _normalize(self.drop_in_name):
            return "drop-in", self.drop_in_version
        raise RegenError(
            f"pyproject.toml names the distribution {distribution!r}, but gen.yaml builds "
            f"{self.dist_name!r} (and its drop-in variant {self.drop_in_name!r}). Fix the name in "
            "pyproject.toml, or build the drop-in variant with scripts/build-drop-in."
        )


def _normalize(name: str) -> str:
    """PEP 503 normalized distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _yaml():
    try:
        import yaml  # type: ignore
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RegenError(
            "PyYAML is not installed, and the regeneration needs it to read gen.yaml. "
            "Install the build requirements (`pip install jinja2 pyyaml packaging`) or build "
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


def load_config(path: Path = GEN_YAML) -> Config:
    """Read and validate ``gen.yaml``.

    Raises:
        RegenError: the file is missing, not YAML, or lacks/mistypes a field.
    """
    yaml = _yaml()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RegenError(f"{path} does not exist. Restore it from git (`git checkout -- gen.yaml`).") from exc
    except yaml.YAMLError as exc:
        raise RegenError(
            f"gen.yaml is not valid YAML ({exc}). Fix the syntax at the position shown and run "
            "the regeneration again; nothing was written."
        ) from exc
    up = _need(raw, "upstream", dict, "gen")
    dist = _need(raw, "distribution", dict, "gen")
    sha = _need(up, "sdist_sha256", str, "upstream").lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise RegenError(
            f"gen.yaml is malformed: `upstream.sdist_sha256` must be 64 hex digits, got {sha!r}. "
            "Copy the sha256 of the sdist from the package index's file listing."
        )
    targets_raw = _need(raw, "targets", dict, "gen")
    targets: List[Target] = []
    for package, spec in targets_raw.items():
        files_raw = _need(spec, "files", dict, f"targets.{package}")
        files = []
        for rel, fspec in files_raw.items():
            template = _need(fspec, "template", str, f"targets.{package}.files.{rel}")
            features = fspec.get("features", {}) or {}
            if not isinstance(features, dict) or not all(isinstance(v, bool) for v in features.values()):
                raise RegenError(
                    f"gen.yaml is malformed: `targets.{package}.files.{rel}.features` must map "
                    "feature names to true/false. Fix it and run the regeneration again."
                )
            if not (TEMPLATES / template).is_file():
                raise RegenError(
                    f"gen.yaml names template {template!r} for {package}/{rel}, but "
                    f".speakeasy/templates/{template} does not exist. Fix the name or add the template."
                )
            adds = fspec.get("adds", []) or []
            if not isinstance(adds, list) or not all(isinstance(a, str) and a.count(".") == 1 for a in adds):
                raise RegenError(
                    f"gen.yaml is malformed: `targets.{package}.files.{rel}.adds` must list methods "
                    "as \"Class.method\" strings. Fix it and run the regeneration again."
                )
            files.append(FileSpec(rel, template, dict(features), tuple(adds)))
        targets.append(Target(package, tuple(files)))
    relies_raw = raw.get("relies_on", {}) or {}
    if not isinstance(relies_raw, dict) or not all(
        isinstance(rel, str) and rel.endswith(".py") and isinstance(units, list) and units
        and all(isinstance(u, str) and u for u in units)
        for rel, units in relies_raw.items()
    ):
        raise RegenError(
            "gen.yaml is malformed: `relies_on` must map module paths (relative to the import "
            "package, ending in .py) to non-empty lists of unit names (\"function\" or "
            "\"Class.method\"). Fix it and run the regeneration again."
        )
    relies_on = tuple((rel, tuple(units)) for rel, units in relies_raw.items())
    revision = _need(dist, "fork_revision", int, "distribution")
    if revision < 1:
        raise RegenError("gen.yaml is malformed: `distribution.fork_revision` must be >= 1.")
    return Config(
        upstream_name=_need(up, "name", str, "upstream"),
        upstream_version=str(_need(up, "version", str, "upstream")),
        sdist_sha256=sha,
        dist_name=_need(dist, "name", str, "distribution"),
        import_package=_need(dist, "import_package", str, "distribution"),
        fork_revision=revision,
        targets=tuple(targets),
        drop_in_name=_need(dist, "drop_in_name", str, "distribution"),
        relies_on=relies_on,
    )


# --------------------------------------------------------------------------- sdist


def cache_dir() -> Path:
    """Where downloaded sdists are kept: ``$MISTRALAI_PATCHED_CACHE`` or ~/.cache/mistralai-patched."""
    env = os.environ.get("MISTRALAI_PATCHED_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mistralai-patched"
    return base / "sdists"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# uv's index settings and the pip settings that mean the same (uv runs our build backend with its
# environment, but the download below is pip's): carried over only where pip's own is unset.
UV_TO_PIP = (
    ("UV_DEFAULT_INDEX", "PIP_INDEX_URL"),
    ("UV_INDEX_URL", "PIP_INDEX_URL"),
    ("UV_INDEX", "PIP_EXTRA_INDEX_URL"),
    ("UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"),
    ("UV_FIND_LINKS", "PIP_FIND_LINKS"),
    ("UV_INSECURE_HOST", "PIP_TRUSTED_HOST"),
)


def pip_environment(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment for the ``pip download`` of the upstream sdist.

    pip reads its own configuration (pip.conf, ``PIP_INDEX_URL``, ``PIP_EXTRA_INDEX_URL``, …).
    A build run by uv has uv's settings instead (``UV_DEFAULT_INDEX``, ``UV_INDEX_URL``,
    ``UV_INDEX``, ``UV_EXTRA_INDEX_URL``, ``UV_FIND_LINKS``, ``UV_INSECURE_HOST``): each is
    carried over to the pip variable of the same meaning when that one is unset, with the
    ``name=`` prefix of a named uv index dropped and lists joined by spaces, as pip reads them.

    Args:
        environ: The environment to start from (default ``os.environ``); it is not modified.
    """
    env = dict(os.environ if environ is None else environ)
    carried: Dict[str, List[str]] = {}
    for uv_name, pip_name in UV_TO_PIP:
        value = env.get(uv_name, "").strip()
        if not value or env.get(pip_name, "").strip():
            continue
        items = [item.split("=", 1)[1] if re.match(r"^[A-Za-z0-9_.-]+=", item) else item
                 for item in re.split(r"[\s,]+", value) if item]
        carried.setdefault(pip_name, [])
        carried[pip_name] += [i for i in items if i not in carried[pip_name]]
    if "PIP_INDEX_URL" in carried:  # pip has one default index: the first uv setting listed wins
        carried["PIP_INDEX_URL"] = carried["PIP_INDEX_URL"][:1]
    env.update({name: " ".join(items) for name, items in carried.items()})
    return env


def _download_remedy(name: str, version: str, sha256: Optional[str], cached: Path) -> str:
    pin = f" (sha256 {sha256})" if sha256 else ""
    return (
        "What to do: make the package index reachable from this machine, through pip's own "
        "configuration (pip.conf, PIP_INDEX_URL, PIP_EXTRA_INDEX_URL; under uv, UV_DEFAULT_INDEX, "
        "UV_INDEX_URL, UV_INDEX and UV_EXTRA_INDEX_URL are passed on to pip where pip's are unset), "
        f"or download {name}-{version}.tar.gz{pin} on a machine that can reach it and place it at "
        f"{cached}; it is verified before use. Nothing was written."
    )


def fetch_sdist(name: str, version: str, sha256: Optional[str]) -> Path:
    """Return the path of the verified upstream sdist, downloading it with pip if not cached.

    The download is ``python -m pip download --no-deps --no-binary :all:`` run by the current
    interpreter, so it honours the user's pip configuration (and uv's index settings, see
    :func:`pip_environment`). pip is one of our build requirements (pyproject.toml), so it is
    importable inside PEP 517 build isolation, where nothing else is. The file is cached under
    :func:`cache_dir` only once its sha256 matches.

    Raises:
        RegenError: pip is missing, cannot reach the index or find the release (the message
            names the command, pip's own error output and the remedy), the download took more
            than 10 minutes, or the sha256 differs from the pin.
    """
    cdir = cache_dir()
    fname = f"{name}-{version}.tar.gz"
    cached = cdir / fname
    if cached.is_file() and (sha256 is None or _sha256_file(cached) == sha256):
        return cached
    remedy = _download_remedy(name, version, sha256, cached)
    if os.environ.get("MISTRALAI_PATCHED_OFFLINE"):
        raise RegenError(
            f"MISTRALAI_PATCHED_OFFLINE is set and {cached} is not cached, so the upstream sdist "
            f"{name}=={version} cannot be fetched. Unset it, or place the verified sdist there."
        )
    import importlib.util

    if importlib.util.find_spec("pip") is None:
        raise RegenError(
            f"pip is not importable by {sys.executable}, and the regeneration downloads the "
            f"upstream sdist {name}=={version} with it. pip is a build requirement of this project "
            "(pyproject.toml [build-system] requires): build with build isolation (the default of "
            "pip, build and uv), or install pip into the environment you build in. " + remedy
        )
    with tempfile.TemporaryDirectory(prefix="mistralai-patched-dl-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--no-input", "-d", tmp, f"{name}=={version}"]
        shown = " ".join(cmd)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=pip_environment(),
                                  stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RegenError(f"Could not download the upstream sdist {name}=={version}: `{shown}` failed "
                             f"to run or finish ({exc}).\n{remedy}") from exc
        files = sorted(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not files:
            # Where pip looked (stdout, "Looking in indexes: …") and its errors (stderr).
            where = [line for line in proc.stdout.splitlines() if line.startswith("Looking in ")]
            lines = where + proc.stderr.strip().splitlines()[-20:]
            said = "\n".join("    " + line for line in lines or ["(no output)"])
            raise RegenError(
                f"pip could not download the upstream sdist {name}=={version} from the package index.\n"
                f"  command: {shown}\n  exit status: {proc.returncode}\n  pip said:\n{said}\n{remedy}"
            )
        got = _sha256_file(files[0])
        if sha256 is not None and got != sha256:
            raise RegenError(
                f"The sdist downloaded for {name}=={version} has sha256 {got}, but gen.yaml pins "
                f"{sha256}. The index served different bytes than the ones reviewed: do not build "
                "from it. If the release was legitimately re-uploaded, review it and update "
                "`upstream.sdist_sha256` in gen.yaml. Nothing was written."
            )
        cdir.mkdir(parents=True, exist_ok=True)
        staging = cdir / (fname + f".{os.getpid()}.part")
        shutil.copyfile(files[0], staging)
        os.replace(staging, cached)
    return cached


def extract_sdist(sdist: Path, dest: Path) -> Path:
    """Extract ``sdist`` under ``dest`` and return its top directory."""
    with tarfile.open(sdist, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python < 3.10.12
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise RegenError(f"Unsafe path {member.name!r} in {sdist.name}; refusing to extract.")
            tar.extractall(dest)
    tops = [p for p in dest.iterdir() if p.is_dir()]
    if len(tops) != 1:
        raise RegenError(f"{sdist.name} does not have a single top directory; it is not an sdist we know.")
    return tops[0]


def _load_toml(path: Path) -> Dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib  # type: ignore
    return tomllib.loads(path.read_text(encoding="utf-8"))


def wheel_sources(sdist_root: Path, import_package: str) -> List[Tuple[str, str]]:
    """Upstream's mapping of sdist directories to wheel paths, outermost first."""
    meta = _load_toml(sdist_root / "pyproject.toml")
    sources = (
        meta.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
        .get("wheel", {}).get("sources")
    )
    if not isinstance(sources, dict) or not sources:
        raise RegenError(
            "The upstream pyproject.toml no longer declares [tool.hatch.build.targets.wheel.sources], "
            "which the regeneration uses to lay the sdist out as upstream's wheel does. Upstream "
            "changed its build: update wheel_sources() in scripts/regen.py after reviewing it."
        )
    pairs = sorted(sources.items(), key=lambda kv: kv[1].count("/"))
    if pairs[0][1] != import_package:
        raise RegenError(f"Upstream's wheel does not map a directory to {import_package!r}: {sources}.")
    return pairs


def upstream_metadata(sdist_root: Path) -> Dict[str, Any]:
    """Requires-Python, base dependencies and extras from the sdist's PKG-INFO."""
    msg = email.parser.Parser().parsestr((sdist_root / "PKG-INFO").read_text(encoding="utf-8"))
    extras: Dict[str, List[str]] = {e: [] for e in msg.get_all("Provides-Extra") or []}
    deps: List[str] = []
    for req in msg.get_all("Requires-Dist") or []:
        spec, _, marker = req.partition(";")
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if not found:
            deps.append(req.strip())
            continue
        rest = marker[: found.start()] + marker[found.end():]
        rest = re.sub(r"^\s*and\s+|\s+and\s*$", "", rest.strip()).strip()
        extras.setdefault(found.group(1), []).append(spec.strip() + (f"; {rest}" if rest else ""))
    return {
        "requires_python": msg.get("Requires-Python"),
        "dependencies": deps,
        "optional_dependencies": extras,
    }


# --------------------------------------------------------------------------- units


def _units(source: str, filename: str) -> Dict[str, ast.AST]:
    """Top-level functions and methods of top-level classes, by qualified name."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        raise RegenError(f"{filename} does not parse as Python ({exc}).") from exc
    found: Dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
        elif isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{sub.name}"] = sub
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


def _unit_label(unit: str) -> str:
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
    """0-based [start, end) line span of a unit, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno  # type: ignore[attr-defined]


def unit_source(source: str, node: ast.AST) -> str:
    start, end = _span(node)
    return "".join(source.splitlines(keepends=True)[start:end])


def fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _template_env():
    try:
        import jinja2  # type: ignore
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
    text = _template_env().get_template(spec.template).render(
        pkg=target.package, features=_Features(spec.features), target=target.package
    )
    nodes = _units(text, f"{spec.template} (rendered for {target.package})")
    tree = ast.parse(text)
    imports = [ast.get_source_segment(text, n) or "" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return Rendered({name: unit_source(text, node) for name, node in nodes.items()}, imports)


class _Features(dict):
    """Feature switches; asking for one gen.yaml does not set is an error, not False."""

    def __getattr__(self, name: str) -> bool:
        if name not in self:
            raise RegenError(
                f"A template asks for feature switch {name!r}, which gen.yaml does not set for "
                "this target file. Add it under `features:` (true or false)."
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
            end = classes[name.split(".")[0]].end_lineno  # type: ignore[attr-defined]
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
    last_import = max((n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))), default=0)
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
        what = "; ".join(part for part in (
            f"replaced {', '.join(replaced)}" if replaced else "",
            f"added {', '.join(added_units)}" if added_units else "") if part)
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


def read_lock() -> Dict[str, Any]:
    if not LOCK.is_file():
        return {}
    try:
        data = _yaml().safe_load(LOCK.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        raise RegenError(f".speakeasy/gen.lock is not valid YAML ({exc}). Restore it from git.") from exc
    if not isinstance(data, dict) or data.get("lock_format") != LOCK_FORMAT:
        raise RegenError(
            ".speakeasy/gen.lock has an unknown format. Restore it from git, or rebuild it with "
            "`scripts/regenerate --accept-upstream` after reviewing the templates."
        )
    return data


def write_lock(data: Dict[str, Any]) -> None:
    text = "# Pristine fingerprints of the upstream units our templates replace (and of those our\n" \
           "# code relies on), and the hashes of what we rendered. Written by\n" \
           "# `scripts/regenerate --accept-upstream`; do not edit.\n"
    text += _yaml().safe_dump(data, sort_keys=True, default_flow_style=False)
    tmp = LOCK.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, LOCK)


# --------------------------------------------------------------------------- build


@dataclass
class Result:
    config: Config
    out: Path
    rendered_hashes: Dict[str, str]  # wheel path -> sha256 hex
    fingerprints: Dict[str, Dict[str, Dict[str, str]]]
    metadata: Dict[str, Any]
    relied: Dict[str, Dict[str, str]] = field(default_factory=dict)  # relies_on path -> unit -> fingerprint


def inputs_hash() -> str:
    """Hash of everything the rendered tree depends on besides the sdist itself."""
    digest = hashlib.sha256()
    paths = [GEN_YAML, LOCK, Path(__file__).resolve()] + sorted(TEMPLATES.glob("*"))
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def _lay_out(sdist_root: Path, config: Config, tree: Path) -> None:
    """Copy the sdist's packages into ``tree`` the way upstream's wheel maps them."""
    for src_rel, dest_rel in wheel_sources(sdist_root, config.import_package):
        src = sdist_root / src_rel
        if not src.is_dir():
            raise RegenError(f"Upstream's wheel maps {src_rel}, which is not in the sdist.")
        shutil.copytree(src, tree / dest_rel, dirs_exist_ok=True)


def _diff_against_locked(config: Config, lock: Dict[str, Any], package: str, relpath: str, unit: str, new_text: str,
                         added: bool = False) -> str:
    old_version = lock.get("upstream", {}).get("version")
    old_sha = lock.get("upstream", {}).get("sdist_sha256")
    if not old_version:
        return "(no locked upstream version to diff against)"
    try:
        old_sdist = fetch_sdist(config.upstream_name, old_version, old_sha)
        with tempfile.TemporaryDirectory() as tmp:
            root = extract_sdist(old_sdist, Path(tmp))
            layout = Path(tmp) / "tree"
            _lay_out(root, config, layout)
            path = layout / package.replace(".", "/") / relpath
            source = path.read_text(encoding="utf-8")
            old_text = locked_text(source, str(path), unit, added) or ""
    except RegenError as exc:
        return f"(could not fetch upstream {old_version} to show the diff: {exc})"
    return "".join(difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True),
        f"{old_version}/{package}/{relpath}:{unit}", f"{config.upstream_version}/{package}/{relpath}:{unit}",
    ))


def build_tree(tree: Path, config: Config, sdist_root: Path, pristine: bool, accept: bool) -> Result:
    """Lay out the sdist under ``tree`` and (unless pristine) render our templates into it."""
    _lay_out(sdist_root, config, tree)
    shutil.copyfile(NAMESPACE_INIT, tree / config.import_package / "__init__.py")
    lock = read_lock()
    fingerprints: Dict[str, Dict[str, Dict[str, str]]] = {}
    rendered_hashes: Dict[str, str] = {}
    problems: List[str] = []
    for target in config.targets:
        pkg_dir = tree / target.rel_dir
        if not pkg_dir.is_dir():
            raise RegenError(
                f"Target {target.package} is not in upstream {config.upstream_version} "
                f"(no {target.rel_dir}/). Remove it from gen.yaml or fix its name."
            )
        for spec in target.files:
            path = pkg_dir / spec.path
            if not path.is_file():
                raise RegenError(f"Upstream {target.package} has no {spec.path}; the template {spec.template} cannot apply.")
            source = path.read_text(encoding="utf-8")
            nodes = _units(source, str(path))
            rendered = render_template(spec, target)
            prints = {}
            for unit in [*rendered.units, IMPORTS_UNIT]:
                added = unit in spec.adds and unit not in nodes
                if unit in spec.adds and unit in nodes:
                    raise RegenError(
                        f"Upstream {config.upstream_version} now defines {unit} in {target.package}/"
                        f"{spec.path}, which {spec.template} adds. Review upstream's version, then "
                        "make the template replace it (drop it from `adds` in gen.yaml)."
                    )
                text = locked_text(source, str(path), unit, added)
                if text is None:
                    raise RegenError(
                        f"Upstream {config.upstream_version} no longer defines "
                        f"{unit.split('.')[0] if added else unit} in {target.package}/{spec.path}, which "
                        f"{spec.template} {'adds to' if added else 'replaces'}. Review the upstream change, "
                        "update the template, then run `scripts/regenerate --accept-upstream`."
                    )
                prints[unit] = fingerprint(text)
                locked = lock.get("targets", {}).get(target.package, {}).get(spec.path, {}).get("units", {}).get(unit)
                if not accept and locked != prints[unit]:
                    problems.append(
                        f"--- {target.package}/{spec.path}: {_unit_label(unit)}\n"
                        f"locked {locked}\nupstream {prints[unit]}\n"
                        + _diff_against_locked(config, lock, target.package, spec.path, unit, text, added)
                    )
            fingerprints.setdefault(target.package, {})[spec.path] = prints
            if pristine:
                continue
            new = splice(source, rendered, f"{target.package}/{spec.path}", config.fork_revision, spec.adds)
            path.write_text(new, encoding="utf-8")
            rendered_hashes[f"{target.rel_dir}/{spec.path}"] = hashlib.sha256(new.encode("utf-8")).hexdigest()
    relied = _relied_fingerprints(tree, config, lock, accept, problems)
    if problems and not pristine:
        raise RegenError(
            "Upstream changed code that our templates replace or that our code relies on (a unit, "
            "or the imports of its module, which it runs against), so "
            "regenerating would silently drop that change or break an assumption. Review each diff "
            "below: carry what matters into the template under .speakeasy/templates/, or for a "
            "`relies_on` unit check what src/mistralai_patched/hookpath.py assumes of it; then "
            "accept with `python scripts/regenerate --accept-upstream`. "
            "Nothing was written.\n\n" + "\n".join(problems)
        )
    return Result(config, tree, rendered_hashes, fingerprints, upstream_metadata(sdist_root), relied)


def _relied_fingerprints(tree: Path, config: Config, lock: Dict[str, Any], accept: bool,
                         problems: List[str]) -> Dict[str, Dict[str, str]]:
    """Fingerprint the `relies_on` units of gen.yaml; a difference from the lock is appended to
    ``problems`` (unless accepting). Raises RegenError when a file or unit is gone."""
    relied: Dict[str, Dict[str, str]] = {}
    for rel, units in config.relies_on:
        path = tree / config.import_package / rel
        if not path.is_file():
            raise RegenError(
                f"Upstream {config.upstream_version} has no {config.import_package}/{rel}, which "
                "gen.yaml's `relies_on` lists (code of ours assumes its units). Review "
                "src/mistralai_patched/hookpath.py against upstream, then fix `relies_on`."
            )
        source = path.read_text(encoding="utf-8")
        prints: Dict[str, str] = {}
        for unit in [*units, IMPORTS_UNIT]:
            text = locked_text(source, str(path), unit, False)
            if text is None:
                raise RegenError(
                    f"Upstream {config.upstream_version} no longer defines {unit} in "
                    f"{config.import_package}/{rel}, which gen.yaml's `relies_on` lists. Review "
                    "src/mistralai_patched/hookpath.py against upstream, then fix `relies_on`."
                )
            prints[unit] = fingerprint(text)
            locked = lock.get("relies_on", {}).get(rel, {}).get(unit)
            if not accept and locked != prints[unit]:
                problems.append(
                    f"--- {config.import_package}/{rel}: {_unit_label(unit)} (relied on)\n"
                    f"locked {locked}\nupstream {prints[unit]}\n"
                    + _diff_against_locked(config, lock, config.import_package, rel, unit, text)
                )
        relied[rel] = prints
    return relied


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP arrived during a regeneration (see :func:`_interruptible`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


_HELD: List[int] = []  # signals that arrived inside _uninterrupted(), raised when it ends
_HOLDING = [False]


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM, SIGINT and SIGHUP into :class:`Interrupted` while the block runs, so every
    ``with`` and ``finally`` of the regeneration runs (its temporary directories are removed:
    the default SIGTERM action would end the process and leave ``src/.regen-*`` behind). Inside
    :func:`_uninterrupted` the signal is held until that block ends. Only in the main thread
    (where Python delivers signals); elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if _HOLDING[0]:
            _HELD.append(signum)
            return
        raise Interrupted(signum)

    previous = {}
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            previous[getattr(signal, name)] = signal.signal(getattr(signal, name), handler)
    try:
        yield
    finally:
        for signum, old_handler in previous.items():
            signal.signal(signum, old_handler)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold the signals :func:`_interruptible` turns into exceptions until the block ends."""
    _HOLDING[0] = True
    try:
        yield
    finally:
        _HOLDING[0] = False
        if _HELD:
            signum = _HELD[0]
            _HELD.clear()
            raise Interrupted(signum)


def _swap_in(staged: Path, out: Path) -> None:
    """Replace ``out`` by ``staged`` with renames, so ``out`` is never half-written; a signal
    arriving meanwhile is held until the swap is done."""
    out.parent.mkdir(parents=True, exist_ok=True)
    old = out.with_name(out.name + ".old")
    with _uninterrupted():
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            os.replace(out, old)
        os.replace(staged, out)
    if old.exists():
        shutil.rmtree(old)


def regenerate(out: Path = DEFAULT_OUT, pristine: bool = False, accept: bool = False,
               config_path: Path = GEN_YAML) -> Result:
    """Run the whole regeneration and write ``out`` (the ``mistralai`` package directory).

    Args:
        out: Where the ``mistralai`` package is written (replaced atomically).
        pristine: Write upstream's tree unmodified (plus our ``mistralai/__init__.py``), for
            proving that the tests fail without the fix; the lock is not checked.
        accept: Record the current upstream fingerprints and rendered hashes in gen.lock
            instead of failing on a difference (after the templates were reviewed).

    Raises:
        RegenError: on any bad input, or ``pristine`` and ``accept`` together (accepting records
            the hashes of what we render, and a pristine build renders nothing); ``out`` and the
            lock are then left as they were.
    """
    if pristine and accept:
        raise RegenError(
            "--pristine and --accept-upstream do not go together: --accept-upstream records the "
            "upstream fingerprints *and the hashes of what our templates render* in "
            ".speakeasy/gen.lock, and --pristine renders nothing. Accept with a patched build "
            "(`scripts/regenerate --accept-upstream`), then write the pristine tree separately "
            "(`scripts/regenerate --pristine --out DIR`). Nothing was written."
        )
    config = load_config(config_path)
    sdist = fetch_sdist(config.upstream_name, config.upstream_version, config.sdist_sha256)
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    with _interruptible(), contextlib.ExitStack() as stack:
        with _uninterrupted():  # no signal between creating the directory and owning its removal
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=".regen-", dir=out.parent))
        root = extract_sdist(sdist, Path(tmp) / "sdist")
        staged = Path(tmp) / "tree"
        result = build_tree(staged, config, root, pristine, accept)
        if accept:
            write_lock({
                "lock_format": LOCK_FORMAT,
                "upstream": {"name": config.upstream_name, "version": config.upstream_version,
                             "sdist_sha256": config.sdist_sha256},
                "targets": {pkg: {path: {"units": units, "rendered": "sha256:" + result.rendered_hashes[
                    f"{pkg.replace('.', '/')}/{path}"]} for path, units in files.items()}
                            for pkg, files in result.fingerprints.items()},
                "relies_on": result.relied,
            })
        _swap_in(staged / config.import_package, out)
    result.out = out
    if out == DEFAULT_OUT.resolve() and not pristine:
        write_build_info(result)
    return result


def write_build_info(result: Result) -> None:
    """Record provenance for `mistralai_patched check` and the build hook (git-ignored).

    It names mistralai-patched; :func:`ensure_fresh` renames it for a drop-in build.
    """
    cfg = result.config
    info = {
        "distribution": cfg.dist_name,
        "variant": "patched",
        "version": cfg.version,
        "upstream": {"name": cfg.upstream_name, "version": cfg.upstream_version, "sdist_sha256": cfg.sdist_sha256},
        "fork_revision": cfg.fork_revision,
        "drop_in": {"name": cfg.drop_in_name, "version": cfg.drop_in_version},
        "inputs_hash": inputs_hash(),
        "rendered": result.rendered_hashes,
        "targets": [t.package for t in cfg.targets],
        "metadata": result.metadata,
    }
    _write_json(BUILD_INFO, info)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def is_fresh() -> bool:
    """True when src/mistralai exists and was rendered from the current inputs."""
    try:
        info = json.loads(BUILD_INFO.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return DEFAULT_OUT.is_dir() and info.get("inputs_hash") == inputs_hash()


def ensure_fresh(distribution: Optional[str] = None) -> Dict[str, Any]:
    """Regenerate if needed and return the build info (used by the build hook).

    Args:
        distribution: The distribution being built (pyproject's ``project.name``). When it is
            the drop-in variant, the build info is rewritten to name it; the rendered tree is
            the same for both variants, so nothing is re-rendered for that.

    Raises:
        RegenError: the regeneration failed, or the name is not one gen.yaml builds.
    """
    if not is_fresh():
        regenerate()
    info = json.loads(BUILD_INFO.read_text(encoding="utf-8"))
    if distribution is not None and info.get("distribution") != distribution:
        variant, version = load_config().variant(distribution)
        info.update(distribution=distribution, variant=variant, version=version)
        _write_json(BUILD_INFO, info)
    return info


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="scripts/regenerate",
        description="Regenerate src/mistralai/ from the pinned upstream sdist and our templates.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="directory of the mistralai package to write (default: src/mistralai)")
    parser.add_argument("--pristine", action="store_true",
                        help="write upstream's tree without our templates (to prove tests bite)")
    parser.add_argument("--accept-upstream", action="store_true",
                        help="record new upstream fingerprints in .speakeasy/gen.lock after review")
    parser.add_argument("--check", action="store_true",
                        help="only report whether src/mistralai is up to date (exit 1 if stale)")
    args = parser.parse_args(argv)
    if args.check:
        fresh = is_fresh()
        print("src/mistralai is up to date" if fresh else "src/mistralai is missing or stale")
        return 0 if fresh else 1
    try:
        result = regenerate(args.out, pristine=args.pristine, accept=args.accept_upstream)
    except RegenError as exc:
        print(f"regenerate: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"regenerate: {exc}; the temporary files were removed and {args.out} was left as it was "
              "(or, when the signal came during the final swap, replaced whole)", file=sys.stderr)
        return 128 + exc.signum
    kind = "pristine upstream" if args.pristine else "patched"
    print(f"wrote {kind} {result.config.upstream_name} {result.config.upstream_version} tree to {result.out}")
    for path in sorted(result.rendered_hashes):
        print(f"  rendered {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
