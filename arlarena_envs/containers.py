"""`arlarena containers build`: the wheelhouse and the env server images (one per env family).

    arlarena containers build                    # every registered family
    arlarena containers build --family sokoban   # just one
    arlarena containers build --offline-base     # air-gapped: base image from Debian packages
    arlarena containers sif --family textworld   # Apptainer/Singularity image, same wheelhouse

Images are tagged `arlarena/<family>:<package version>-<env spec fingerprint>` (and `:latest`),
so an env change (new golden fingerprints) gives a new tag. The build context holds the
family's Dockerfile (containers/<family>/Dockerfile) and `wheels/`: the project wheel plus its
core dependencies and the family's extras as CPython 3.11 Linux wheels (those that PyPI has only
as sdists, like fast-downward-textworld, built here), so `pip` in the image never needs the
network (`--no-index --find-links`).

Base image: `python:3.11-slim` when it is present or can be pulled; otherwise (or with
`--offline-base`) `arlarena/python-base:3.11-<suite>`, built from Debian packages with
debootstrap + `docker import` (needs root), saved to `~/.cache/arlarena/base/` with
`docker save | gzip` and loaded from there next time (3 s instead of about 80 s).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from arlarena_envs.errors import ArlArenaError, ConfigError, MissingDependencyError

ONLINE_BASE = "python:3.11-slim"
OFFLINE_BASE_REPO = "arlarena/python-base"
PY_TARGET = ("3.11", "cp311")
LABEL = "arlarena.managed"


class DockerUnavailableError(ArlArenaError, RuntimeError):
    """No Docker engine answers (or the docker SDK is missing)."""


class ImageBuildError(ArlArenaError, RuntimeError):
    """An image, the wheelhouse or the offline base could not be built."""


@dataclass(frozen=True)
class Family:
    name: str
    env_ids: tuple[str, ...]
    extras: tuple[str, ...]
    data_env: tuple[str, ...] = ()  # env vars that point the envs at data mounted at /data
    # dependencies PyPI has only as sdists: built into the wheelhouse up front (pip would name
    # them one resolver pass at a time otherwise; download_dependencies still catches new ones)
    sdist_only: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "sokoban": Family("sokoban", ("arlarena/Sokoban-v0",), ("server",)),
    "webshop": Family("webshop", ("arlarena/WebShop-v0", "arlarena/WebShop-original-v0"), ("server",), data_env=("ARLARENA_WEBSHOP_DATA",)),
    "textworld": Family("textworld", ("arlarena/TextWorld-v0", "arlarena/ALFWorld-v0"), ("server", "textworld", "alfworld"), data_env=("ARLARENA_DATA_DIR", "ALFWORLD_DATA"),
                        sdist_only=("jericho", "fast-downward-textworld")),
}


def cache_dir() -> Path:
    root = os.environ.get("ARLARENA_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "arlarena")
    return Path(root)


def repo_root() -> Path:
    """The source checkout (holds pyproject.toml and containers/)."""
    root = Path(__file__).resolve().parent.parent
    if not (root / "pyproject.toml").is_file() or not (root / "containers").is_dir():
        raise ConfigError(f"building images needs a source checkout of arlarena (pyproject.toml and containers/ next to {root})")
    return root


def family_of(env_id: str) -> Family:
    from arlarena_envs.registry import get_spec

    sid = get_spec(env_id).id
    for fam in FAMILIES.values():
        if sid in fam.env_ids:
            return fam
    raise ConfigError(f"{sid} belongs to no container family; families: {sorted(FAMILIES)} (see containers/)")


def registered(fam: Family) -> list[str]:
    from arlarena_envs.registry import load_specs

    specs = load_specs()
    return [e for e in fam.env_ids if e in specs]


def fingerprint(fam: Family) -> str:
    """The env spec fingerprint of a family (EnvSpec.fingerprint(); several envs: hashed together)."""
    from arlarena_envs.registry import get_spec

    fps = [get_spec(e).fingerprint() for e in registered(fam)]
    if len(fps) == 1:
        return fps[0]
    return hashlib.sha256(json.dumps(fps).encode()).hexdigest()[:16]


def version_tag() -> str:
    from arlarena_envs import __version__

    return re.sub(r"[^A-Za-z0-9_.-]", "-", __version__)


def image_tag(family: str | Family) -> str:
    fam = FAMILIES[family] if isinstance(family, str) else family
    return f"arlarena/{fam.name}:{version_tag()}-{fingerprint(fam)}"


def image_for(env_id: str) -> str:
    return image_tag(family_of(env_id))


# ------------------------------------------------------------------------------ docker


def docker_client(timeout: int = 120) -> Any:
    """A docker SDK client of a live engine, or DockerUnavailableError saying why not."""
    try:
        import docker
    except ImportError as e:
        raise DockerUnavailableError("the docker SDK is missing: pip install 'arlarena-envs[docker]'") from e
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as e:  # noqa: BLE001 - the SDK raises many kinds (DockerException, requests, OSError)
        raise DockerUnavailableError(
            f"no Docker engine answers ({type(e).__name__}: {e}); start one (dockerd, or Docker Desktop) "
            "and check DOCKER_HOST"
        ) from e
    return client


def _has_image(client: Any, name: str, build_key: str | None = None) -> bool:
    """The image exists (and, with build_key, was built from the same sources)."""
    import docker.errors

    try:
        image = client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return build_key is None or (image.labels or {}).get("arlarena.build") == build_key


def build_key(fam: Family) -> str:
    """Hash of what goes into a family image: Dockerfile, requirements, package sources, specs.

    The tag says version + env fingerprint; this label catches a changed checkout with the same
    version (a developer's edit), so `build` never keeps a stale image."""
    root = repo_root()
    h = hashlib.sha256()
    h.update((root / "containers" / fam.name / "Dockerfile").read_bytes())
    h.update(json.dumps([requirements(fam.extras), fam.extras]).encode())
    files = sorted((root / "arlarena_envs").rglob("*.py")) + sorted((root / "registry").glob("*.yaml")) + [root / "pyproject.toml"]
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _log(msg: str) -> None:
    print(f"[containers] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ base image


def _debian_mirror() -> str:
    """The Debian mirror apt is configured with (deb822 or one-line sources)."""
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")) + [Path("/etc/apt/sources.list")] + sorted(
        Path("/etc/apt/sources.list.d").glob("*.list")
    ):
        try:
            text = path.read_text()
        except OSError:
            continue
        for m in re.finditer(r"^URIs:\s*(\S+)", text, re.M):
            if "security" not in m.group(1) and "debian" in m.group(1):
                return m.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+\S+", text, re.M):
            if "security" not in m.group(1) and "debian" in m.group(1):
                return m.group(1)
    return "http://deb.debian.org/debian"


def _suite() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip('"') or "bookworm"
    except OSError:
        pass
    return "bookworm"


def offline_base_tag(suite: str | None = None) -> str:
    return f"{OFFLINE_BASE_REPO}:3.11-{suite or _suite()}"


def _run(cmd: list[str], **kw: Any) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise ImageBuildError(f"{' '.join(cmd[:4])} ... failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")


def build_offline_base(client: Any, *, suite: str | None = None, mirror: str | None = None, force: bool = False) -> str:
    """Build (or load from cache) the Python base image from Debian packages; returns its tag.

    debootstrap --variant=minbase SUITE ROOTFS MIRROR; chroot apt-get install python3 python3-venv;
    tar ROOTFS | docker import; docker save | gzip -> ~/.cache/arlarena/base/."""
    suite = suite or _suite()
    tag = offline_base_tag(suite)
    cached = cache_dir() / "base" / f"python-base-3.11-{suite}.tar.gz"
    if not force and _has_image(client, tag):
        return tag
    if not force and cached.is_file():
        _log(f"loading the cached base image {cached}")
        with open(cached, "rb") as f:
            client.images.load(f)
        if _has_image(client, tag):
            return tag
    if shutil.which("debootstrap") is None:
        raise MissingDependencyError("the offline base image needs debootstrap: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageBuildError("the offline base image needs root (debootstrap, chroot); run as root or pass --base IMAGE")
    mirror = mirror or _debian_mirror()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="arlarena-base-"))
    rootfs = work / "rootfs"
    try:
        _log(f"debootstrap {suite} from {mirror} (about a minute)")
        _run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror])
        shutil.copy("/etc/resolv.conf", rootfs / "etc/resolv.conf")
        (rootfs / "proc").mkdir(exist_ok=True)
        _run(["mount", "-t", "proc", "proc", str(rootfs / "proc")])
        try:
            env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
            _run(["chroot", str(rootfs), "apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3", "python3-venv", "ca-certificates"], env=env)
            _run(["chroot", str(rootfs), "apt-get", "clean"], env=env)
        finally:
            subprocess.run(["umount", str(rootfs / "proc")], check=False)
        shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
        (rootfs / "etc/resolv.conf").write_text("")
        tar = work / "rootfs.tar"
        _run(["tar", "-C", str(rootfs), "-cf", str(tar), "."])
        _log("docker import")
        repo, tg = tag.split(":")
        client.api.import_image(src=str(tar), repository=repo, tag=tg, changes=["ENV LANG=C.UTF-8", 'CMD ["python3"]'])
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        with gzip.open(tmp, "wb", compresslevel=1) as f:
            for chunk in client.images.get(tag).save(named=True):
                f.write(chunk)
        tmp.replace(cached)
        _log(f"base image {tag} built in {time.monotonic() - t0:.0f} s, cached at {cached}")
    finally:
        subprocess.run(["umount", str(rootfs / "proc")], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return tag


def choose_base(client: Any, offline_base: bool = False, base: str | None = None) -> str:
    """--base wins; --offline-base builds from Debian; else python:3.11-slim if present or pullable."""
    if base:
        return base
    if not offline_base:
        if _has_image(client, ONLINE_BASE):
            return ONLINE_BASE
        try:
            client.images.pull(ONLINE_BASE)
            return ONLINE_BASE
        except Exception as e:  # noqa: BLE001 - any pull failure means: no registry reachable
            _log(f"cannot pull {ONLINE_BASE} ({type(e).__name__}); building the base from Debian packages instead")
    return build_offline_base(client)


# ------------------------------------------------------------------------------ wheelhouse


def requirements(extras: Iterable[str]) -> list[str]:
    """The project's dependencies for these extras, from the checkout's pyproject.toml (what the
    project wheel will ask for; the installed metadata may be older), self-references expanded."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as e:
            raise MissingDependencyError("reading pyproject.toml on Python 3.10 needs tomli: pip install tomli") from e

    project = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    out: set[str] = set(project.get("dependencies", []))
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise ConfigError(f"pyproject.toml has no extra {extra!r}; extras: {sorted(optional)}")
        for req in optional[extra]:
            m = re.match(r"^\s*arlarena-envs\[([^\]]+)\]", req)
            if m:
                todo += [x.strip() for x in m.group(1).split(",")]
            else:
                out.add(req)
    return sorted(out)


def _platforms() -> list[str]:
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    tags = [f"manylinux_2_{v}_{arch}" for v in range(36, 16, -1)] + [f"manylinux2014_{arch}"]
    if arch == "x86_64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    return tags


# pip's two ways of saying "this requirement has no wheel for the target": the resolver's
# conflict report ("... no matching distributions available for your environment:" then one
# name per indented line) and the plain "No matching distribution found for NAME"
_NO_WHEEL_LIST = re.compile(r"no matching distributions? available for your environment:\s*\n((?:[ \t]+\S+[^\n]*\n?)+)", re.I)
_NO_WHEEL_ONE = re.compile(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)")
MAX_SOURCE_BUILDS = 12  # sdist-only packages built on the host at most (textworld + alfworld: 2)


def sdist_only(pip_output: str) -> list[str]:
    """The requirement names pip reports as having no wheel for the target platform."""
    names: list[str] = []
    for m in _NO_WHEEL_LIST.finditer(pip_output):
        names += [line.split()[0] for line in m.group(1).splitlines() if line.strip()]
    names += _NO_WHEEL_ONE.findall(pip_output)
    return list(dict.fromkeys(n.rstrip(";,") for n in names))


def _download_cmd(dest: Path, find_links: Path) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--python-version", PY_TARGET[0],
           "--implementation", "cp", "--abi", PY_TARGET[1], "-d", str(dest), "--find-links", str(find_links)]
    for p in _platforms():
        cmd += ["--platform", p]
    return cmd


def _host_builds_target_wheels() -> bool:
    """Wheels built here from sdists are for CPython 3.11 on Linux (this interpreter is one)."""
    return sys.implementation.name == "cpython" and f"{sys.version_info[0]}.{sys.version_info[1]}" == PY_TARGET[0] and sys.platform == "linux"


def download_dependencies(reqs: list[str], dest: Path, sdist_first: Iterable[str] = ()) -> list[str]:
    """Every dependency of `reqs` as a CPython 3.11 manylinux wheel in `dest`; returns the names
    built from source.

    `pip download --only-binary=:all: --platform manylinux... --python-version 3.11` resolves for
    the image, not for this machine. A package that ships only an sdist (fast-downward-textworld
    and jericho, under alfworld/textworld: both compile C/C++) makes that fail; pip names it, and
    `pip wheel --no-deps NAME` builds it here into `dest/built/` — through pip's wheel cache, so a
    venv install that compiled it already (CI's) is reused instead of compiling again — and the
    download is retried with `--find-links dest/built`. The wheels built so are `py3-none-any`
    (their native parts are executables / ctypes libraries), linked against this machine's C and
    C++ runtime: build on a system no newer than the image's base (the offline base uses this
    machine's own Debian suite)."""
    built_dir = dest / "built"
    built_dir.mkdir(parents=True, exist_ok=True)
    built: list[str] = []
    todo = list(sdist_first)
    for _ in range(MAX_SOURCE_BUILDS + 1):
        if todo:
            _build_from_source(todo, built_dir)
            built += todo
        r = subprocess.run(_download_cmd(dest, built_dir) + reqs, capture_output=True, text=True)
        if r.returncode == 0:
            return built
        out = r.stdout + r.stderr
        todo = [n for n in sdist_only(out) if n.lower() not in {b.lower() for b in built}]
        if not todo:
            again = [n for n in sdist_only(out) if n.lower() in {b.lower() for b in built}]
            hint = (f"the wheels built here for {again} do not fit CPython {PY_TARGET[0]} manylinux: build the images "
                    f"with a Python {PY_TARGET[0]} interpreter" if again else "see pip's output")
            raise ImageBuildError(f"pip download of the image's dependencies failed ({hint}):\n{out[-3000:]}")
    raise ImageBuildError(f"more than {MAX_SOURCE_BUILDS} dependencies need building from source ({built}); check the requirements")


def _build_from_source(names: list[str], built_dir: Path) -> None:
    """`pip wheel --no-deps NAMES` into built_dir, through pip's wheel cache."""
    if not _host_builds_target_wheels():
        raise ImageBuildError(
            f"{names} ship no CPython {PY_TARGET[0]} wheel and must be built from source with a CPython "
            f"{PY_TARGET[0]} interpreter on Linux; this one is {platform.python_implementation()} "
            f"{platform.python_version()} on {sys.platform}: run `arlarena containers build` from a Python "
            f"{PY_TARGET[0]} venv")
    _log(f"{', '.join(names)}: no CPython {PY_TARGET[0]} wheel on the index; building from the sdists here "
         "(from pip's wheel cache when a venv install built them already; a cold fast-downward-textworld "
         "compile takes minutes)")
    t0 = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(built_dir), *names])
    _log(f"built from source in {time.monotonic() - t0:.0f} s")


def build_wheelhouse(extras: Iterable[str], out: Path | None = None, sdist_first: Iterable[str] = ()) -> Path:
    """wheels/ for CPython 3.11 Linux: dependencies (cached by requirement set) + the project wheel."""
    extras = sorted(set(extras))
    reqs = requirements(extras)
    key = hashlib.sha256(json.dumps([reqs, _platforms(), PY_TARGET]).encode()).hexdigest()[:16]
    deps = cache_dir() / "wheelhouse" / key
    if not (deps / ".complete").exists():
        _log(f"downloading {len(reqs)} dependencies as CPython 3.11 wheels into {deps}")
        deps.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        built = download_dependencies(reqs, deps, sdist_first)
        (deps / ".complete").write_text("\n".join(reqs))
        _log(f"wheelhouse ready in {time.monotonic() - t0:.0f} s" + (f" (built from source: {', '.join(built)})" if built else ""))
    out = out or Path(tempfile.mkdtemp(prefix="arlarena-wheels-"))
    # deps/ (stable: cached as its own image layer) and project/ (changes with every edit)
    (out / "deps").mkdir(parents=True, exist_ok=True)
    (out / "project").mkdir(parents=True, exist_ok=True)
    for w in deps.glob("*.whl"):  # pip download copies the wheels it took from built/ here too
        shutil.copy2(w, out / "deps" / w.name)
    (out / "deps" / "requirements.txt").write_text("\n".join(reqs) + "\n")
    _log("building the project wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out / "project"), str(repo_root())])
    return out


# ------------------------------------------------------------------------------ images


def build_image(client: Any, family: str, base: str, wheels: Path, *, force: bool = False) -> str:
    fam = FAMILIES[family]
    tag = image_tag(fam)
    key = build_key(fam)
    if not force and _has_image(client, tag, key):
        _log(f"{tag} is up to date: kept")
        return tag
    dockerfile = repo_root() / "containers" / fam.name / "Dockerfile"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"arlarena-ctx-{fam.name}-") as ctx:
        shutil.copy(dockerfile, Path(ctx) / "Dockerfile")
        shutil.copytree(wheels, Path(ctx) / "wheels")
        _log(f"building {tag} on {base}")
        from arlarena_envs import __version__

        logs: list[str] = []
        for chunk in client.api.build(
            path=ctx,
            tag=tag,
            buildargs={"BASE": base, "VERSION": __version__, "EXTRAS": ",".join(fam.extras)},
            rm=True,
            forcerm=True,
            pull=False,
            network_mode="none",  # the wheelhouse is in the context: no network in the build
            labels={LABEL: "1", "arlarena.family": fam.name, "arlarena.fingerprint": fingerprint(fam), "arlarena.build": key},
            decode=True,
        ):
            if "stream" in chunk:
                logs.append(chunk["stream"])
            if "error" in chunk:
                raise ImageBuildError(f"building {tag} failed: {chunk['error']}\n{''.join(logs)[-3000:]}")
    client.images.get(tag).tag(tag.split(":")[0], "latest")
    _log(f"{tag} built in {time.monotonic() - t0:.0f} s")
    return tag


def build(families: Iterable[str] | None = None, *, offline_base: bool = False, base: str | None = None, force: bool = False) -> dict[str, str]:
    """Build the images of these families (default: every family with registered env ids)."""
    client = docker_client(timeout=600)
    # default: every registered family (TextWorld/ALFWorld's sdist-only dependencies are built
    # into the wheelhouse here: download_dependencies)
    names = list(families) if families else [f for f, fam in FAMILIES.items() if registered(fam)]
    for n in names:
        if n not in FAMILIES:
            raise ConfigError(f"unknown family {n!r}; choose from {sorted(FAMILIES)}")
        if not registered(FAMILIES[n]):
            raise ConfigError(f"family {n!r} has no registered env ids ({FAMILIES[n].env_ids}); nothing to serve")
    todo = [n for n in names if force or not _has_image(client, image_tag(n), build_key(FAMILIES[n]))]
    built = {n: image_tag(n) for n in names if n not in todo}
    if not todo:
        return built
    chosen = choose_base(client, offline_base=offline_base, base=base)
    # one wheelhouse per set of extras: a family whose dependencies cannot be fetched as
    # CPython 3.11 wheels fails alone, the others still build
    groups: dict[tuple[str, ...], list[str]] = {}
    for n in todo:
        groups.setdefault(FAMILIES[n].extras, []).append(n)
    failed: dict[str, str] = {}
    for extras, fams in groups.items():
        try:
            wheels = build_wheelhouse(extras, sdist_first=sorted({d for n in fams for d in FAMILIES[n].sdist_only}))
        except ImageBuildError as e:
            failed.update({n: str(e) for n in fams})
            continue
        try:
            for n in fams:
                try:
                    built[n] = build_image(client, n, chosen, wheels, force=force)
                except ImageBuildError as e:
                    failed[n] = str(e)
        finally:
            shutil.rmtree(wheels, ignore_errors=True)
    if failed:
        details = "\n".join(f"--- {n}:\n{msg[-1500:]}" for n, msg in failed.items())
        ok = ", ".join(f"{n}: {t}" for n, t in built.items()) or "none"
        raise ImageBuildError(f"could not build {sorted(failed)} (built: {ok})\n{details}")
    return built


def ensure_image(env_id: str, **kw: Any) -> str:
    """The image serving env_id, built first when missing."""
    fam = family_of(env_id)
    return build([fam.name], **kw)[fam.name]


# ------------------------------------------------------------------------------ Apptainer


def apptainer_command() -> list[str]:
    """How to call Apptainer: $ARLARENA_APPTAINER (a command line, e.g. a wrapper), else
    `apptainer` or `singularity` (SingularityCE >= 4 takes the same --build-arg) from PATH."""
    import shlex

    explicit = os.environ.get("ARLARENA_APPTAINER")
    if explicit:
        return shlex.split(explicit)
    for name in ("apptainer", "singularity"):
        found = shutil.which(name)
        if found:
            return [found]
    raise MissingDependencyError(
        "building a SIF needs Apptainer (https://apptainer.org/docs/admin/main/installation.html; Debian packages "
        "it only in sid, needing glibc >= 2.38: not installable on bookworm) or SingularityCE >= 4 on PATH; "
        "or set ARLARENA_APPTAINER to the command that runs it (docs/containers.md, Apptainer)"
    )


def base_archive(suite: str | None = None) -> Path:
    """The offline base image as a `docker save` archive (what the .def bootstraps from), built
    and cached by `arlarena containers build --offline-base` (needs Docker once, on any machine)."""
    cached = cache_dir() / "base" / f"python-base-3.11-{suite or _suite()}.tar.gz"
    if not cached.is_file():
        try:
            client = docker_client()
        except DockerUnavailableError as e:
            raise ImageBuildError(
                f"no base image archive at {cached} and no Docker engine to build it ({e}). On a machine with "
                "Docker run `arlarena containers build --offline-base` and copy that file here (same path, or "
                "ARLARENA_CACHE_DIR), or bootstrap the .def from Debian instead (docs/containers.md, Apptainer)"
            ) from e
        build_offline_base(client, suite=suite)
    return cached


def build_sif(family: str, out: Path | None = None, *, force: bool = False) -> Path:
    """`<family>.sif` from containers/apptainer/arlarena.def: the family's wheelhouse (the same
    as for its Docker image) installed into the offline base, with no network."""
    fam = FAMILIES[family]
    if not registered(fam):
        raise ConfigError(f"family {family!r} has no registered env ids ({fam.env_ids}); nothing to serve")
    out = Path(out or f"{family}.sif").resolve()
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    cmd = apptainer_command()
    from arlarena_envs import __version__

    t0 = time.monotonic()
    wheels = build_wheelhouse(fam.extras, sdist_first=fam.sdist_only)
    try:
        tar = wheels / "base.tar"  # the docker-archive bootstrap reads an uncompressed archive
        with gzip.open(base_archive(), "rb") as src, open(tar, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        args = {"BASE_TAR": str(tar), "WHEELS": str(wheels), "VERSION": __version__, "EXTRAS": ",".join(fam.extras),
                "FAMILY": fam.name, "ENV_IDS": " ".join(registered(fam))}
        # a file, not --build-arg: apptainer splits --build-arg values at commas (EXTRAS has them)
        arg_file = wheels / "build-args"
        arg_file.write_text("".join(f"{k}={v}\n" for k, v in args.items()))
        definition = repo_root() / "containers" / "apptainer" / "arlarena.def"
        _log(f"apptainer build {out.name} (family {fam.name})")
        _run([*cmd, "build", "--force", "--build-arg-file", str(arg_file), str(out), str(definition)], cwd=str(wheels))
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
    _log(f"{out} built in {time.monotonic() - t0:.0f} s ({out.stat().st_size / 1e6:.0f} MB)")
    return out


# ------------------------------------------------------------------------------ CLI


def add_containers_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build", help="build the wheelhouse and the env server images")
    b.add_argument("--family", action="append", choices=sorted(FAMILIES), help="family to build (repeatable; default: every registered family)")
    b.add_argument("--offline-base", action="store_true", help="build the Python base image from Debian packages (air-gapped)")
    b.add_argument("--base", default=None, help="use this base image instead (must have python3 with venv)")
    b.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    sub.add_parser("list", help="list the families and their image tags")
    sif = sub.add_parser("sif", help="build an Apptainer/Singularity image (SIF) of a family, offline, from the same wheelhouse")
    sif.add_argument("--family", required=True, choices=sorted(FAMILIES))
    sif.add_argument("-o", "--output", default=None, help="the SIF to write (default: ./<family>.sif)")
    sif.add_argument("--force", action="store_true", help="overwrite the output")


def main_containers(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name, fam in FAMILIES.items():
            ids = registered(fam)
            print(f"{name:<10} {image_tag(fam) if ids else '-':<40} {', '.join(ids) or '(no registered env ids)'}")
        return 0
    if args.action == "sif":
        print(build_sif(args.family, Path(args.output) if args.output else None, force=args.force))
        return 0
    built = build(args.family, offline_base=args.offline_base, base=args.base, force=args.force)
    for name, tag in built.items():
        print(f"{name}: {tag}")
    return 0


add_arguments = add_containers_arguments
main = main_containers
