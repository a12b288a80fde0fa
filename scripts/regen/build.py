"""Build the rendered tree of one release line: lay the sdist out as upstream's wheel does, check
every replaced and relied-on unit against the line's lock, splice our templates in, and swap the
result into place atomically; record provenance for the build hook and ``check``."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import paths
from .config import Line, in_sdist, load_config, rendered_key
from .errors import RegenError
from .lock import LineLock, read_lock, write_lock
from .sdist import extract_sdist, fetch_sdist, upstream_metadata, wheel_sources
from .units import (
    IMPORTS_UNIT,
    Rendered,
    _units,
    fingerprint,
    locked_text,
    render_template,
    splice,
    unit_label,
)


@dataclass
class Result:
    """What one regeneration built."""

    line: Line
    out: Path
    rendered_hashes: Dict[str, str]  # wheel path -> sha256 hex
    fingerprints: Dict[str, Dict[str, Dict[str, str]]]  # target -> file -> unit -> fingerprint
    metadata: Dict[str, Any]
    relied: Dict[str, Dict[str, str]] = field(default_factory=dict)  # relies_on path -> unit -> fingerprint


def inputs_hash(line: Line, lock_path: Optional[Path] = None) -> str:
    """Hash of everything the rendered tree of ``line`` depends on besides the sdist itself:
    gen.yaml, the line's lock entry, the regeneration's code and the templates."""
    digest = hashlib.sha256()
    digest.update(f"line={line.name}\0".encode())
    entry = read_lock(lock_path or paths.LOCK).line(line).as_dict()
    digest.update(json.dumps(entry, sort_keys=True).encode() + b"\0")
    files = [paths.GEN_YAML] + sorted(paths.PACKAGE_DIR.glob("*.py")) + sorted(paths.TEMPLATES.glob("*"))
    for path in files:
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<missing>")
    return digest.hexdigest()


def _lay_out(sdist_root: Path, config: Line, tree: Path) -> None:
    """Copy the sdist's packages into ``tree`` the way upstream's wheel maps them."""
    for src_rel, dest_rel in wheel_sources(sdist_root, config.import_package):
        src = sdist_root / src_rel
        if not src.is_dir():
            raise RegenError(f"Upstream's wheel maps {src_rel}, which is not in the sdist.")
        shutil.copytree(src, tree / dest_rel, dirs_exist_ok=True)


class _LockedUpstream:
    """The upstream release a line's lock was taken from, laid out once on first use (for the
    diffs of a failed check), and removed with the build's temporary directory.

    Args:
        sdist_root: Returns that release's extracted sdist, when the caller has it (the survey
            extracts each sdist once); by default it is fetched and extracted under ``scratch``.
    """

    def __init__(
        self, line: Line, lock: LineLock, scratch: Path, sdist_root: Optional[Callable[[str], Path]] = None
    ) -> None:
        self.line, self.lock, self.scratch = line, lock, scratch
        self._sdist_root = sdist_root
        self._layout: Optional[Path] = None
        self._error: Optional[str] = None

    def _extract(self, version: str) -> Path:
        if self._sdist_root is not None:
            return self._sdist_root(version)
        sdist = fetch_sdist(self.line.upstream_name, version, self.lock.upstream.get("sdist_sha256"))
        return extract_sdist(sdist, self.scratch / "sdist")

    def text(self, package: str, relpath: str, unit: str, added: bool) -> str:
        """The locked release's text of ``unit``, or RegenError with why it is not available."""
        version = self.lock.upstream.get("version")
        if not version:
            raise RegenError("no locked upstream version to diff against")
        if self._error:
            raise RegenError(self._error)
        if self._layout is None:
            try:
                _lay_out(self._extract(version), self.line, self.scratch / "tree")
            except RegenError as exc:
                self._error = f"could not fetch upstream {version}: {exc}"
                raise RegenError(self._error) from None
            self._layout = self.scratch / "tree"
        path = self._layout / package.replace(".", "/") / relpath
        if not path.is_file():
            return ""
        return locked_text(path.read_text(encoding="utf-8"), str(path), unit, added) or ""

    def diff(self, package: str, relpath: str, unit: str, new_text: str, version: str, added: bool = False) -> str:
        """Unified diff of ``unit`` from the locked release to ``version``'s."""
        try:
            old_text = self.text(package, relpath, unit, added)
        except RegenError as exc:
            return f"(cannot show the diff: {exc})\n"
        return "".join(
            difflib.unified_diff(
                old_text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                f"{self.lock.upstream.get('version')}/{package}/{relpath}:{unit}",
                f"{version}/{package}/{relpath}:{unit}",
            )
        )


def _check_http_library(line: Line, metadata: Dict[str, Any]) -> Optional["Difference"]:
    """Upstream's dependencies must name the line's HTTP library (gen.yaml ``http_library``)."""
    names = {re.split(r"[\s<>=!~;\[(]", dep, maxsplit=1)[0].lower() for dep in metadata["dependencies"]}
    if line.http_library in names:
        return None
    return Difference(
        "HTTP library changed",
        "dependencies",
        "",
        f"gen.yaml says line {line.name} runs on {line.http_library}, but upstream "
        f"{line.upstream_version} depends on none of that name (its dependencies: "
        f"{', '.join(sorted(names))}). Upstream changed its HTTP library: review the templates "
        "and src/mistralai_patched against it, then fix `http_library`.",
    )


# The kinds of :class:`Difference`, in the order a report lists them. Gone code and a changed HTTP
# library stop every build; the others stop it until accepted (``--accept-upstream``).
STRUCTURAL = (
    "not surveyed",
    "cannot build",
    "HTTP library changed",
    "target gone",
    "file gone",
    "unit gone",
    "relied-on file gone",
    "relied-on unit gone",
    "added method now upstream's",
)
CHANGED = ("body changed", "imports changed", "relied-on unit changed")
KINDS = STRUCTURAL + CHANGED


@dataclass(frozen=True)
class Difference:
    """One way an upstream release differs from what a line's templates and lock expect.

    Attributes:
        kind: One of :data:`KINDS` (``"body changed"``, ``"unit gone"``, …).
        where: ``<target package>/<file>`` (a replaced unit), ``<import package>/<file>`` (a
            relied-on one), a target package, or ``dependencies``.
        unit: The unit's qualified name (``<imports>`` for the module's imports), or ``""``.
        detail: What to do, and for a changed unit the unified diff from the locked release.
    """

    kind: str
    where: str
    unit: str
    detail: str = ""

    @property
    def structural(self) -> bool:
        """True when no ``--accept-upstream`` can accept it (code we need is gone)."""
        return self.kind in STRUCTURAL

    def summary(self) -> str:
        """One line: ``mistralai.azure.client/utils/retries.py: retry: body changed``."""
        return f"{self.where}: {unit_label(self.unit)}: {self.kind}" if self.unit else f"{self.where}: {self.kind}"


class UpstreamDiffers(RegenError):
    """Regeneration stopped on upstream differences; ``differences`` lists every one of them."""

    def __init__(self, message: str, differences: List[Difference]) -> None:
        super().__init__(message)
        self.differences = differences


def report(line_name: str, version: str, differences: List[Difference]) -> str:
    """The message of :class:`UpstreamDiffers`: what happened, what to do, then every difference
    (its one-line summary, then its detail)."""
    structural = [d for d in differences if d.structural]
    lines = [
        f"Upstream {version} differs from what line {line_name}'s templates and "
        f".speakeasy/gen.lock expect in {len(differences)} place(s)"
        + (f", {len(structural)} of them code that is gone" if structural else "")
        + ". Regenerating would silently drop an upstream change or break an assumption of our code "
        "(a unit, or the imports of its module, which it runs against). Review each difference below: "
        "carry what matters into the template under .speakeasy/templates/ (or, for a `relies_on` "
        "unit, check what src/mistralai_patched and the templates assume of it) and fix gen.yaml where code is gone; "
        f"then accept with `python scripts/regenerate --upstream {line_name} --accept-upstream`. "
        "Nothing was written.",
        "",
    ]
    for d in sorted(differences, key=lambda d: (KINDS.index(d.kind), d.where, d.unit)):
        lines.append(f"--- {d.summary()}")
        if d.detail:
            lines.append(d.detail.rstrip("\n"))
    return "\n".join(lines) + "\n"


def build_tree(
    tree: Path,
    config: Line,
    sdist_root: Path,
    pristine: bool,
    accept: bool,
    lock_path: Optional[Path] = None,
    locked_upstream: Optional["_LockedUpstream"] = None,
) -> Result:
    """Lay out the sdist under ``tree`` and (unless pristine) render our templates into it.

    Args:
        locked_upstream: The locked release to diff against, when the caller shares one across
            builds (the survey); by default one is made and removed with this call.

    Raises:
        UpstreamDiffers: with every difference at once: a target, file or unit is gone, upstream
            left the line's HTTP library, or (unless ``accept`` or ``pristine``) a fingerprint
            differs from the line's lock; the message has each difference and its diff.
        RegenError: the sdist is not laid out as upstream's wheel is, or a template cannot splice.
    """
    _lay_out(sdist_root, config, tree)
    shutil.copyfile(paths.NAMESPACE_INIT, tree / config.import_package / "__init__.py")
    metadata = upstream_metadata(sdist_root)
    lock = read_lock(lock_path or paths.LOCK).line(config)
    if locked_upstream is not None:
        return _build(tree, config, pristine, accept, lock, metadata, locked_upstream)
    with tempfile.TemporaryDirectory(prefix="mistralai-patched-locked-") as scratch:
        return _build(tree, config, pristine, accept, lock, metadata, _LockedUpstream(config, lock, Path(scratch)))


def _build(
    tree: Path,
    config: Line,
    pristine: bool,
    accept: bool,
    lock: LineLock,
    metadata: Dict[str, Any],
    locked_upstream: _LockedUpstream,
) -> Result:
    fingerprints: Dict[str, Dict[str, Dict[str, str]]] = {}
    found: List[Difference] = []
    library = _check_http_library(config, metadata)
    if library is not None:
        found.append(library)
    sources: Dict[Tuple[str, str], Tuple[str, Rendered]] = {}  # (target, file) -> upstream source, template
    main = config.targets[0]
    for target in config.targets:
        pkg_dir = tree / target.rel_dir
        if not pkg_dir.is_dir():
            found.append(
                Difference(
                    "target gone",
                    target.package,
                    "",
                    f"upstream {config.upstream_version} has no {target.rel_dir}/: remove the "
                    "target from gen.yaml `targets`, or fix its name.",
                )
            )
            continue
        for spec in target.files:
            path = pkg_dir / spec.path
            where = f"{target.package}/{spec.path}"
            if not path.is_file():
                found.append(
                    Difference(
                        "file gone",
                        where,
                        "",
                        f"the template {spec.template} cannot apply: review upstream's change "
                        "and fix gen.yaml `templates`.",
                    )
                )
                continue
            source = path.read_text(encoding="utf-8")
            rendered = render_template(spec, target)
            sources[(target.package, spec.path)] = source, rendered
            nodes = _units(source, str(path))
            prints = {}
            for unit in [*rendered.units, IMPORTS_UNIT]:
                added = unit in spec.adds and unit not in nodes
                if unit in spec.adds and unit in nodes:
                    found.append(
                        Difference(
                            "added method now upstream's",
                            where,
                            unit,
                            f"upstream now defines {unit}, which {spec.template} adds: review "
                            "upstream's version, then make the template replace it (drop it "
                            "from `adds` in gen.yaml).",
                        )
                    )
                    continue
                text = locked_text(source, str(path), unit, added)
                if text is None:
                    owner = unit.split(".")[0] if added else unit
                    found.append(
                        Difference(
                            "unit gone",
                            where,
                            owner,
                            f"{spec.template} {'adds to' if added else 'replaces'} it: review "
                            "the upstream change and update the template.",
                        )
                    )
                    continue
                prints[unit] = fingerprint(text)
                locked = lock.unit(target.package, spec.path, unit)
                if accept or locked == prints[unit]:
                    continue
                hint = ""
                same_as_main = lock.unit(main.package, spec.path, unit) == prints[unit]
                if target is not main and same_as_main and dict(target.features) != dict(main.features):
                    hint = (
                        f"It is now the same as {main.package}'s, which the template renders with "
                        f"that target's feature switches: give {target.package} the switches of "
                        f"{main.package} in gen.yaml `lines.{config.name}.features`.\n"
                    )
                found.append(
                    Difference(
                        "imports changed" if unit == IMPORTS_UNIT else "body changed",
                        where,
                        f"class {unit.split('.')[0]}, which the template adds {unit} to" if added else unit,
                        f"{hint}locked {locked}\nupstream {prints[unit]}\n"
                        + locked_upstream.diff(target.package, spec.path, unit, text, config.upstream_version, added),
                    )
                )
            fingerprints.setdefault(target.package, {})[spec.path] = prints
    relied = _relied_fingerprints(tree, config, lock, accept, found, locked_upstream)
    blocking = [d for d in found if d.structural or not pristine]
    if blocking:
        raise UpstreamDiffers(report(config.name, config.upstream_version, blocking), blocking)
    rendered_hashes: Dict[str, str] = {}
    if not pristine:
        for target in config.targets:
            for spec in target.files:
                source, rendered = sources[(target.package, spec.path)]
                new = splice(source, rendered, f"{target.package}/{spec.path}", config.fork_revision, spec.adds)
                (tree / target.rel_dir / spec.path).write_text(new, encoding="utf-8")
                rendered_hashes[target.rendered_key(spec.path)] = hashlib.sha256(new.encode("utf-8")).hexdigest()
    return Result(config, tree, rendered_hashes, fingerprints, metadata, relied)


def _relied_fingerprints(
    tree: Path,
    config: Line,
    lock: LineLock,
    accept: bool,
    found: List[Difference],
    locked_upstream: _LockedUpstream,
) -> Dict[str, Dict[str, str]]:
    """Fingerprint the `relies_on` units of gen.yaml; each difference from the lock (unless
    accepting) and each gone file or unit is appended to ``found``."""
    relied: Dict[str, Dict[str, str]] = {}
    advice = "review what src/mistralai_patched (hookpath.py, fastpath.py) and the templates assume of it"
    for rel, units in config.relies_on:
        path = tree / config.import_package / rel
        where = f"{config.import_package}/{rel}"
        if not path.is_file():
            found.append(
                Difference(
                    "relied-on file gone",
                    where,
                    "",
                    f"gen.yaml's `relies_on` lists it: {advice}, then fix `relies_on`.",
                )
            )
            continue
        source = path.read_text(encoding="utf-8")
        prints: Dict[str, str] = {}
        for unit in [*units, IMPORTS_UNIT]:
            text = locked_text(source, str(path), unit, False)
            if text is None:
                found.append(
                    Difference(
                        "relied-on unit gone",
                        where,
                        unit,
                        f"gen.yaml's `relies_on` lists it: {advice}, then fix `relies_on`.",
                    )
                )
                continue
            prints[unit] = fingerprint(text)
            locked = lock.relied(rel, unit)
            if not accept and locked != prints[unit]:
                found.append(
                    Difference(
                        "relied-on unit changed",
                        where,
                        unit,
                        f"{advice[0].upper()}{advice[1:]}.\nlocked {locked}\nupstream {prints[unit]}\n"
                        + locked_upstream.diff(config.import_package, rel, unit, text, config.upstream_version),
                    )
                )
        relied[rel] = prints
    return relied


class Interrupted(BaseException):
    """SIGTERM, SIGINT or SIGHUP arrived during a regeneration (see :func:`_interruptible`)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by signal {signum}")
        self.signum = signum


_HELD: List[int] = []  # signals that arrived inside _uninterrupted(), raised when it ends
_HOLDING = [0]  # depth of nested _uninterrupted() blocks


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
    """Hold the signals :func:`_interruptible` turns into exceptions until the outermost such
    block ends (blocks nest)."""
    _HOLDING[0] += 1
    try:
        yield
    finally:
        _HOLDING[0] -= 1
        if _HELD and not _HOLDING[0]:
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


def select_line(upstream: Optional[str] = None, config_path: Optional[Path] = None) -> Line:
    """The line a build makes: ``upstream`` (``--upstream``), else ``$MISTRALAI_PATCHED_UPSTREAM``,
    else, inside an unpacked sdist of ours, the line its rendered tree was built for (so a wheel
    built from a 2.x sdist is 2.x, offline), else gen.yaml's ``default_line``.

    Raises:
        RegenError: gen.yaml is malformed, or the selector names no line.
    """
    config = load_config(config_path or paths.GEN_YAML)
    if not upstream and not os.environ.get(paths.UPSTREAM_ENV, "").strip() and in_sdist():
        built = _read_build_info().get("line")
        if isinstance(built, str) and built in config.lines:
            return config.lines[built]
    return config.line(upstream)


def regenerate(
    out: Path = paths.DEFAULT_OUT,
    pristine: bool = False,
    accept: bool = False,
    config_path: Optional[Path] = None,
    upstream: Optional[str] = None,
    lock_path: Optional[Path] = None,
) -> Result:
    """Run the whole regeneration of one line and write ``out`` (the ``mistralai`` package directory).

    Args:
        out: Where the ``mistralai`` package is written (replaced atomically).
        pristine: Write upstream's tree unmodified (plus our ``mistralai/__init__.py``), for
            proving that the tests fail without the fix; the lock is not checked.
        accept: Record the line's current upstream fingerprints and rendered hashes in gen.lock
            instead of failing on a difference (after the templates were reviewed); the other
            lines' entries are kept.
        config_path: gen.yaml to read (default: the repository's).
        upstream: The line to build (see :func:`select_line`).
        lock_path: gen.lock to check against and write (default: the repository's).

    Raises:
        RegenError: on any bad input, or ``pristine`` and ``accept`` together (accepting records
            the hashes of what we render, and a pristine build renders nothing); ``out`` and the
            lock are then left as they were.
        Interrupted: SIGTERM, SIGINT or SIGHUP arrived; the temporary files were removed.
    """
    if pristine and accept:
        raise RegenError(
            "--pristine and --accept-upstream do not go together: --accept-upstream records the "
            "upstream fingerprints *and the hashes of what our templates render* in "
            ".speakeasy/gen.lock, and --pristine renders nothing. Accept with a patched build "
            "(`scripts/regenerate --accept-upstream`), then write the pristine tree separately "
            "(`scripts/regenerate --pristine --out DIR`). Nothing was written."
        )
    lock_path = lock_path or paths.LOCK
    line = select_line(upstream, config_path)
    out = Path(out).resolve()
    with _interruptible(), contextlib.ExitStack() as stack:
        sdist = fetch_sdist(line.upstream_name, line.upstream_version, line.sdist_sha256)
        out.parent.mkdir(parents=True, exist_ok=True)
        with _uninterrupted():  # no signal between creating the directory and owning its removal
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=".regen-", dir=out.parent))
        root = extract_sdist(sdist, Path(tmp) / "sdist")
        staged = Path(tmp) / "tree"
        result = build_tree(staged, line, root, pristine, accept, lock_path)
        result.out = out
        with _uninterrupted():  # the lock, the tree and its build record change together
            if accept:
                record_lock(result, lock_path)
            _swap_in(staged / line.import_package, out)
            if out == paths.DEFAULT_OUT.resolve() and not pristine:
                write_build_info(result)
    return result


def record_lock(result: Result, lock_path: Path) -> None:
    """Write ``result``'s line entry into the lock at ``lock_path``: the upstream release, the
    fingerprints of every replaced and relied-on unit, and the hashes of what we rendered. The
    other lines' entries are kept."""
    line = result.line
    lock = read_lock(lock_path)
    lock.lines[line.name] = LineLock(
        upstream={"name": line.upstream_name, "version": line.upstream_version, "sdist_sha256": line.sdist_sha256},
        targets={
            pkg: {
                path: {"units": units, "rendered": "sha256:" + result.rendered_hashes[rendered_key(pkg, path)]}
                for path, units in files.items()
            }
            for pkg, files in result.fingerprints.items()
        },
        relies_on=result.relied,
    )
    write_lock(lock, lock_path)


def write_build_info(result: Result) -> None:
    """Record provenance for `mistralai_patched check` and the build hook (git-ignored).

    It names mistralai-patched; :func:`ensure_fresh` renames it for a drop-in build.
    """
    line = result.line
    info = {
        "distribution": line.dist_name,
        "variant": "patched",
        "version": line.version,
        "line": line.name,
        "http_library": line.http_library,
        "upstream": {"name": line.upstream_name, "version": line.upstream_version, "sdist_sha256": line.sdist_sha256},
        "fork_revision": line.fork_revision,
        "drop_in": {"name": line.drop_in_name, "version": line.drop_in_version},
        "inputs_hash": inputs_hash(line),
        "rendered": result.rendered_hashes,
        "targets": [t.package for t in line.targets],
        "metadata": result.metadata,
    }
    _write_json(paths.BUILD_INFO, info)


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_build_info() -> Dict[str, Any]:
    try:
        info = json.loads(paths.BUILD_INFO.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_fresh(upstream: Optional[str] = None) -> bool:
    """True when src/mistralai exists and was rendered for the selected line (see
    :func:`select_line`) from the current inputs."""
    info = _read_build_info()
    return paths.DEFAULT_OUT.is_dir() and info.get("inputs_hash") == inputs_hash(select_line(upstream))


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
    info = _read_build_info()
    if distribution is not None and info.get("distribution") != distribution:
        variant, version = select_line().variant(distribution)
        info.update(distribution=distribution, variant=variant, version=version)
        _write_json(paths.BUILD_INFO, info)
    return info
