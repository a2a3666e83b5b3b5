"""Fetch raw files from a local mirror folder (found by file name) or from public URLs; verify and write atomically."""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import urllib.request
from pathlib import Path

from .io import atomic_path

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
    """The mirror folder: the config key `mirror` wins over the environment variable KDSTGCN_MIRROR."""
    value = config_value or os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


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
        f"Supply it in one of two ways: (1) put {name} in a folder and point the config key `mirror` "
        f"(--config mirror=/path) or the environment variable {MIRROR_ENV} at that folder; "
        f"(2) run on a machine that can reach {urls[0] if urls else 'the public URL'}.")
