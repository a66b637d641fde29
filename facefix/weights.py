"""The weights registry and the resolver that finds (or downloads) weights files.

The registry is ``weights/manifest.json`` (installed as the ``facefix_weights`` data
package), the weights variants of every network card, and whatever plugins add through
the ``register_weights`` hook. The resolver
looks for a file in this order: an explicit path, ``--model-dir`` (used as given:
users point at their own files), the download cache, the files bundled in
``facefix_weights`` itself (the offline defaults), and finally a download, which is
verified against the pinned sha256 before it is moved into the cache atomically.
Nothing here touches the network unless :meth:`WeightsResolver.download` is called.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import json
import os
import sys
import time
import urllib.error
import urllib.request
from functools import lru_cache
from pathlib import Path

from facefix import plugins
from facefix.atomic import atomic_path, remove_stale_temporaries, write_bytes_atomic
from facefix.components import WeightsEntry
from facefix.errors import WeightsError, brief

CHUNK = 1 << 20  # 1 MiB: bounded memory for hashing and streaming multi-GB files
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a URL is given up
_TRUE = {"1", "true", "yes", "on"}


@lru_cache(maxsize=1)
def manifest_entries() -> tuple[WeightsEntry, ...]:
    """The entries shipped in ``facefix_weights/manifest.json`` (read once)."""
    resource = importlib.resources.files("facefix_weights") / "manifest.json"
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
        return tuple(WeightsEntry.from_dict(item) for item in data["weights"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{resource}: broken weights manifest ({type(error).__name__}: {error})") from None


def weights_entries() -> dict[str, WeightsEntry]:
    """Every known weights entry by registry name: the manifest's, the network cards', then
    the ``register_weights`` hook's."""
    entries = {entry.name: entry for entry in manifest_entries()}

    def register(entry: WeightsEntry) -> None:
        if not isinstance(entry, WeightsEntry):
            # Raising lets call_each name the offending plugin in its warning.
            raise TypeError(f"register() wants a facefix.weights.WeightsEntry, got {type(entry).__name__}")
        if entry.name in entries:
            plugins.warn(f"weights {entry.name!r} ({entry.filename}) from a plugin ignored: name already registered")
            return
        entries[entry.name] = entry

    for card in plugins.cards():
        for entry in card.weights_entries():
            register(entry)
    plugins.call_each("register_weights", register=register)
    return entries


def get_entry(name: str) -> WeightsEntry:
    """An entry by registry name or by file name (alternates included)."""
    entries = weights_entries()
    if name in entries:
        return entries[name]
    for entry in entries.values():
        if name in entry.filenames:
            return entry
    raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(entries)) or 'none'}")


def default_cache_dir() -> Path:
    """``$FACEFIX_HOME/weights``; FACEFIX_HOME defaults to ``~/.cache/facefix``."""
    home = os.environ.get("FACEFIX_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".cache" / "facefix"
    return base / "weights"


def bundled_dir() -> Path:
    """The folder of the ``facefix_weights`` package: weights that ship with facefix."""
    return Path(str(importlib.resources.files("facefix_weights")))


def model_dir_from_env() -> Path | None:
    value = os.environ.get("FACEFIX_MODEL_DIR")
    return Path(value).expanduser() if value else None


def offline_from_env() -> bool:
    return os.environ.get("FACEFIX_OFFLINE", "").strip().lower() in _TRUE


#: A download's whole time limit (s), and its minimum average rate (bytes/s) once it has
#: run for the grace period: 350 MB at the minimum rate is over an hour, within the limit.
DOWNLOAD_DEADLINE = 4 * 3600.0
DOWNLOAD_GRACE = 30.0
DOWNLOAD_MIN_RATE = 32 * 1024.0

#: Where the cache records the digests of the files it verified (by size and mtime).
VERIFIED_RECORD = ".verified.json"


def sha256_file(path: Path | str) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def format_size(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable; keeps type checkers happy


class WeightsResolver:
    """Finds weights files locally and downloads (verified) ones that are missing."""

    def __init__(
        self,
        model_dir: Path | str | None = None,
        cache_dir: Path | str | None = None,
        allow_download: bool = True,
        progress: bool = True,
        timeout: float = DOWNLOAD_TIMEOUT,
    ) -> None:
        self.model_dir = Path(model_dir).expanduser() if model_dir is not None else model_dir_from_env()
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        # FACEFIX_OFFLINE=1 wins over the caller: it is the user's promise of no network.
        self.offline = offline_from_env()
        self.allow_download = allow_download and not self.offline
        self.progress = progress
        self.timeout = timeout
        self.deadline = DOWNLOAD_DEADLINE
        self.grace = DOWNLOAD_GRACE
        self.min_rate = DOWNLOAD_MIN_RATE

    @staticmethod
    def _entry(name_or_entry: str | WeightsEntry) -> WeightsEntry:
        return name_or_entry if isinstance(name_or_entry, WeightsEntry) else get_entry(name_or_entry)

    def search_dirs(self) -> list[Path]:
        return [d for d in (self.model_dir, self.cache_dir, bundled_dir()) if d is not None]

    def find_local(self, entry: WeightsEntry) -> Path | None:
        """The first existing file: model_dir (any accepted name), the cache, then facefix's own."""
        for directory in self.search_dirs():
            for filename in entry.filenames:
                candidate = directory / filename
                if candidate.is_file():
                    return candidate
        return None

    def status(self, entry: WeightsEntry) -> str:
        """``available`` (found locally), ``downloadable`` (has URLs) or ``missing``."""
        if self.find_local(entry) is not None:
            return "available"
        return "downloadable" if entry.urls else "missing"

    def missing_message(self, entry: WeightsEntry, download_error: str | None = None) -> str:
        """One line: which file, for what, where we looked, and how to get it."""
        names = " or ".join(entry.filenames)
        what = f"for {entry.component} " if entry.component else ""
        looked = []
        if self.model_dir is not None:
            looked.append(f"--model-dir {self.model_dir}")
        looked.append(f"cache {self.cache_dir}")
        how = (
            f"get it with `facefix weights download {entry.name}` or put it in --model-dir"
            if entry.urls
            else "put it in --model-dir (no download URL is known)"
        )
        message = f"weights file {names} ({entry.name}) {what}not found; looked in {', '.join(looked)}; {how}"
        if download_error:
            message += f"; download failed: {download_error}"
        elif entry.urls and self.offline:
            message += " (FACEFIX_OFFLINE is set: downloads are off)"
        return message

    def resolve(self, name_or_entry: str | WeightsEntry, explicit: Path | str | None = None) -> Path:
        """A local file for the entry: explicit path, local copy, or a fresh download."""
        if explicit is not None:
            path = Path(explicit).expanduser()
            if not path.is_file():
                reason = "is not a file" if path.exists() else "does not exist"
                raise WeightsError(f"weights file {path} {reason}")
            return path
        entry = self._entry(name_or_entry)
        local = self.find_local(entry)
        if local is not None:
            self.check_pinned(entry, local)
            return local
        if self.allow_download and entry.urls:
            try:
                return self.download(entry)
            except WeightsError as error:
                reason = getattr(error, "reason", None) or str(error)
                raise WeightsError(self.missing_message(entry, reason)) from None
        raise WeightsError(self.missing_message(entry))

    def check_pinned(self, entry: WeightsEntry, path: Path) -> None:
        """A pinned file in facefix's cache or its own folder must still be the file that
        was verified: a changed or damaged one is an error, not silently used. The digest is
        computed once per size and modification time (``VERIFIED_RECORD`` in the cache)."""
        if entry.sha256 is None or path.parent not in (self.cache_dir, bundled_dir()):
            return  # --model-dir holds the user's own files, under whatever names they like
        if self.verified_digest(path) != entry.sha256:
            raise WeightsError(f"{path}: not the pinned {entry.name} file (its SHA-256 differs: changed or damaged); "
                               f"fetch it again with `facefix weights download {entry.name} --force`")

    def verified_digest(self, path: Path) -> str:
        """``path``'s SHA-256, from the record while its size and modification time are unchanged."""
        record_path = self.cache_dir / VERIFIED_RECORD
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        stat = path.stat()
        key, stamp = str(path.resolve()), [stat.st_size, stat.st_mtime_ns]
        known = record.get(key)
        if isinstance(known, dict) and known.get("stamp") == stamp and isinstance(known.get("sha256"), str):
            return known["sha256"]
        digest = sha256_file(path)
        record[key] = {"stamp": stamp, "sha256": digest}
        try:
            write_bytes_atomic(record_path, (json.dumps(record, indent=1) + "\n").encode())
        except OSError:  # a read-only cache: verified again next time
            pass
        return digest

    def download(self, name_or_entry: str | WeightsEntry, force: bool = False) -> Path:
        """Download into the cache, verified; URLs are tried in order. Returns the path. A
        cached copy is kept unless ``force``, or unless it is no longer the pinned file."""
        entry = self._entry(name_or_entry)
        target = self.cache_dir / entry.filename
        if target.is_file() and not force:
            if entry.sha256 is None or self.verified_digest(target) == entry.sha256:
                return target
        if not self.allow_download:
            raise WeightsError(f"{entry.filename}: downloading is disabled (FACEFIX_OFFLINE is set or downloads are off)")
        if not entry.urls:
            raise WeightsError(f"{entry.filename}: no download URL is known for {entry.name}")
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WeightsError(f"{self.cache_dir}: cannot create the weights cache ({error.strerror or error})") from None
        failures = []
        for url in entry.urls:
            try:
                self._download_one(entry, url, target)
                return target
            except _DownloadFailed as error:
                failures.append(f"{url}: {error}")
        reason = "; ".join(failures)
        error = WeightsError(f"{entry.filename}: download failed: {reason}")
        error.reason = reason  # resolve() words its own one-line message around it
        raise error

    def _download_one(self, entry: WeightsEntry, url: str, target: Path) -> None:
        # The cache never holds a partial or unverified file under the real name: the
        # download goes to a temporary beside it, renamed only once verified. Any failure,
        # Ctrl-C included, leaves no temporary behind.
        try:
            remove_stale_temporaries(target.parent)  # what a killed download left
            with atomic_path(target) as temp:
                self._fetch(entry, url, temp)
        except OSError as error:  # the cache folder is read-only or full (network errors are _DownloadFailed)
            raise WeightsError(f"{target}: cannot write to the weights cache ({error.strerror or error})") from None

    def _check_pace(self, received: int, elapsed: float) -> None:
        """A download has a deadline and, after a grace period, a minimum average rate: a
        server sending a byte every few seconds never trips a read timeout."""
        if elapsed > self.deadline:
            raise _DownloadFailed(f"too slow: {format_size(received)} in {elapsed:.0f} s, over the "
                                  f"{self.deadline:.0f} s limit")
        if elapsed > self.grace and received / elapsed < self.min_rate:
            raise _DownloadFailed(f"too slow: {received / elapsed:.0f} B/s on average after {elapsed:.0f} s "
                                  f"(at least {self.min_rate:.0f} B/s is needed)")

    def _fetch(self, entry: WeightsEntry, url: str, temp: Path) -> None:
        """Stream ``url`` into ``temp`` and check its length and digest."""
        digest = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": "facefix"})
        with open(temp, "wb") as out:
            try:
                response = urllib.request.urlopen(request, timeout=self.timeout)
            except urllib.error.HTTPError as error:
                error.close()
                # one line: urllib's reason for a redirect loop runs over three
                raise _DownloadFailed(f"HTTP {error.code} {brief(error.reason)}") from None
            except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                raise _DownloadFailed(brief(reason)) from None
            with response:
                length = response.headers.get("Content-Length")
                expected_length = int(length) if length and length.isdigit() else entry.size
                from tqdm import tqdm  # imported here: only downloads need it

                with tqdm(
                    total=expected_length,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=entry.filename,
                    disable=not self.progress,
                    file=sys.stderr,
                ) as bar:
                    started = time.monotonic()
                    try:
                        # read1: whatever has arrived, so a server trickling bytes is timed
                        # between reads instead of filling a 1 MiB read at its own pace
                        while chunk := response.read1(CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
                            self._check_pace(received, time.monotonic() - started)
                    except (OSError, http.client.HTTPException) as error:  # timeouts, dropped connections
                        raise _DownloadFailed(f"{type(error).__name__}: {error}") from None
                if length and length.isdigit() and received != int(length):
                    raise _DownloadFailed(f"truncated: got {received} of {length} bytes")
                if expected_length is None and entry.sha256 is None:
                    raise _DownloadFailed("the server sent no length and no digest is pinned, so a cut-off file "
                                          "can't be told from a whole one; put the file in --model-dir yourself")
        actual = digest.hexdigest()
        if entry.sha256 is not None and actual != entry.sha256:
            raise _DownloadFailed(f"sha256 mismatch: expected {entry.sha256}, got {actual} (file deleted)")
        if entry.size is not None and received != entry.size:
            raise _DownloadFailed(f"size mismatch: expected {entry.size} bytes, got {received} (file deleted)")
        if entry.sha256 is None:
            print(
                f"facefix: warning: {entry.filename} is unpinned: no published digest; "
                f"sha256 of the downloaded file is {actual}",
                file=sys.stderr,
            )

    def verify(self, name_or_entry: str | WeightsEntry) -> tuple[Path | None, str]:
        """(local path, verdict): ``ok``, ``mismatch (...)``, ``unpinned (...)``, ``not found``."""
        entry = self._entry(name_or_entry)
        path = self.find_local(entry)
        if path is None:
            return None, "not found"
        actual = sha256_file(path)
        if entry.sha256 is None:
            return path, f"unpinned (sha256 {actual})"
        if actual == entry.sha256:
            return path, "ok"
        return path, f"mismatch (sha256 {actual}, expected {entry.sha256})"


class _DownloadFailed(Exception):
    """One URL did not give a good file; the next URL is tried."""
