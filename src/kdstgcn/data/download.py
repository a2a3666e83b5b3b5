"""Fetch raw files from a local mirror folder (found by file name) or from public URLs; verify and write atomically."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from kdstgcn.runtime.io import atomic_path

log = logging.getLogger(__name__)

MIRROR_ENV = "KDSTGCN_MIRROR"


class DownloadError(RuntimeError):
    """A raw file could not be obtained or failed its checksum."""


def sha256sum(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mirror_folder(config_value: str | None) -> Path | None:
    """The mirror folder: the config key `mirror` wins over the environment variable KDSTGCN_MIRROR; an empty or
    null key (`mirror: ""`, `mirror: null`, `--config mirror=`) names none."""
    value = config_value or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def check_mirror(config_value: str | None) -> Path | None:
    """The mirror folder, checked to exist (so that a wrong path stops the workflow before any job)."""
    mirror = mirror_folder(config_value)
    if mirror is not None and not mirror.is_dir():
        raise DownloadError(f"mirror folder {mirror} does not exist (config key `mirror` or ${MIRROR_ENV}): "
                            "point it at the folder that holds the raw files, or leave it empty to use the URLs")
    return mirror


def supply_hint(names: str, url: str) -> str:
    return (f"Supply {names} in one of two ways: (1) put the file(s) in a folder (found by name anywhere below it) "
            f"and point the config key `mirror` (--config mirror=/path) or the environment variable {MIRROR_ENV} "
            f"at that folder; (2) run on a machine that can reach {url}.")


def url_problem(url: str, timeout: float) -> str | None:
    """Why `url` cannot serve a file, or None when it can: one HEAD request. Any answer but 404/410 counts as
    reachable (a server that refuses HEAD may still serve GET)."""
    if not url.startswith(("http://", "https://")):
        return None if Path(url).is_file() else "no such file"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}" if exc.code in (404, 410) else None
    except (OSError, http.client.HTTPException) as exc:
        return str(getattr(exc, "reason", exc))


def url_problems(urls: set[str], timeout: float) -> dict[str, str | None]:
    """url_problem of every URL, all at once; a URL that has not answered after `timeout` s (name look-ups
    included) is reported as such."""
    found: dict[str, str | None] = {}
    threads = [threading.Thread(target=lambda u=u: found.update({u: url_problem(u, timeout)}), daemon=True)
               for u in sorted(urls)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {u: found[u] if u in found else f"no answer within {timeout:g} s" for u in urls}


def unavailable_files(needed: dict[str, list[str]], mirror: Path | None, timeout: float = 3.0) -> list[str]:
    """One line per target path in `needed` (target -> URLs) that is neither there yet, nor in the mirror, nor
    at a URL that answers; each line says what was tried."""
    absent = {target: urls for target, urls in needed.items() if not Path(target).is_file()}
    if not absent:
        return []
    in_mirror = {p.name for p in mirror.rglob("*") if p.is_file()} if mirror is not None else set()
    absent = {t: urls for t, urls in absent.items() if Path(t).name not in in_mirror}
    problems = url_problems({u for urls in absent.values() for u in urls}, timeout)
    where = f"not in the mirror {mirror}" if mirror is not None else "no mirror folder set"
    lines = []
    for target, urls in sorted(absent.items()):
        if all(problems[u] for u in urls):
            reasons = {problems[u] for u in urls}
            tried = (["no URL configured"] if not urls else [f"{len(urls)} URL(s) in the config: {reasons.pop()}"]
                     if len(reasons) == 1 else [f"{u}: {problems[u]}" for u in urls])
            lines.append(f"{target} ({'; '.join([where, *tried])})")
    return lines


def missing_files_message(lines: list[str]) -> str:
    """The one message that names every raw file no source provides and how to supply them."""
    return (f"{len(lines)} raw file(s) can be found neither in the mirror nor at a reachable URL; no job was "
            "started:\n" + "\n".join(f"  {line}" for line in lines) + "\n" + supply_hint("them", "the URLs"))


def find_in_mirror(mirror: Path, name: str) -> Path | None:
    if not mirror.is_dir():
        raise DownloadError(f"mirror folder {mirror} does not exist (config key `mirror` or ${MIRROR_ENV})")
    hits = sorted(p for p in mirror.rglob(name) if p.is_file())
    return hits[0] if hits else None


def copy_source(source: str, dest: Path, timeout: float) -> None:
    """Copy a URL or a local file to `dest`."""
    if source.startswith(("http://", "https://")):
        log.info("downloading %s", source)
        with urllib.request.urlopen(source, timeout=timeout) as response, open(dest, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
            expected = response.headers.get("Content-Length")
            if expected is not None and out.tell() != int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - out.tell())
    else:
        log.info("copying %s", source)
        shutil.copyfile(source, dest)


def fetch(name: str, urls: list[str], sha256: str | None, target: str | Path, mirror: Path | None,
          timeout: float = 60.0) -> str:
    """Copy `name` from the mirror or download it from the first URL that answers; return where it came from.

    The file appears at `target` only once complete and (when a checksum is known) verified.
    """
    target = Path(target)
    sources: list[str] = []
    if mirror is not None:
        hit = find_in_mirror(mirror, name)
        if hit is not None:
            sources.append(str(hit))
    sources += list(urls)
    errors = []
    for source in sources:
        try:
            with atomic_path(target) as tmp:
                copy_source(source, tmp, timeout)
                digest = sha256sum(tmp)
                if sha256 and digest != sha256:
                    raise DownloadError(f"{name} from {source} has sha256 {digest}, expected {sha256}: the file "
                                        "is corrupt or a different version. Replace it with a correct copy.")
        except (OSError, http.client.HTTPException) as exc:
            errors.append(f"{source}: {exc!r}")
            continue
        if not sha256:
            log.warning("%s: no checksum in the config; got sha256 %s", name, digest)
        log.info("%s ready (%d bytes, sha256 %s)", target, target.stat().st_size, digest)
        return source
    where = f"the mirror {mirror} has no file named {name}" if mirror else "no mirror folder is set"
    raise DownloadError(
        f"cannot obtain {name}: {where}, and no URL answered ({'; '.join(errors) or 'no URL configured'}).\n"
        + supply_hint(name, urls[0] if urls else "the public URL"))
