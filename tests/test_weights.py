"""The weights registry, resolver, downloads, safe loading and the ``facefix weights`` CLI.

Downloads go to a local HTTP server on 127.0.0.1; nothing here touches the internet.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import importlib.resources
import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from facefix import plugins
from facefix.components import COMPONENT_KINDS
from facefix.errors import WeightsError
from facefix.hookspecs import hookimpl
from facefix.weights import (
    WeightsEntry,
    WeightsResolver,
    default_cache_dir,
    get_entry,
    sha256_file,
    weights_entries,
)
from facefix.cli.weights import weights_group as weights_cli

SHARED = Path(__file__).resolve().parents[1].parent / "shared"

FACEXLIB_DIGESTS = {
    "retinaface_resnet50": "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
    "retinaface_mobile0.25": "2979b33ffafda5d74b6948cd7a5b9a7a62f62b949cef24e95fd15d2883a65220",
    "parsenet": "3d558d8d0e42c20224f13cf5a29c79eba2d59913419f945545d8cf7b72920de2",
    "bisenet": "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
}


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch) -> Path:
    """Every test gets its own FACEFIX_HOME and no model dir / offline setting."""
    monkeypatch.setenv("FACEFIX_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEFIX_MODEL_DIR", raising=False)
    monkeypatch.delenv("FACEFIX_OFFLINE", raising=False)
    return tmp_path / "home" / "weights"


class _Handler(http.server.SimpleHTTPRequestHandler):
    timeout = 5  # a stuck client can't hold a server thread for long

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        if self.path == "/short":  # promises 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.wfile.flush()
            self.close_connection = True
            return
        if self.path == "/trickle":  # a byte every 0.2 s: never idle long enough for a read timeout
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        if self.path == "/loop":  # redirects to itself for ever
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/nolength":  # no Content-Length: the end of the connection is the end
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(folder, base URL) of a local HTTP server serving that folder."""
    root = tmp_path / "srv"
    root.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _payload(size: int = 3 * (1 << 20) + 123) -> bytes:
    # More than one 1 MiB chunk, not a multiple of it, deterministic.
    return (hashlib.sha256(b"facefix").digest() * (size // 32 + 1))[:size]


def _entry(name: str, filename: str, urls, data: bytes | None = None, **extra) -> WeightsEntry:
    if data is not None:
        extra.setdefault("sha256", hashlib.sha256(data).hexdigest())
        extra.setdefault("size", len(data))
    return WeightsEntry(name=name, filename=filename, urls=tuple(urls), component="restorer:test", **extra)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*.part")) if directory.exists() else []


class _WeightsPlugin:
    def __init__(self, *entries: WeightsEntry):
        self.entries = entries

    @hookimpl
    def register_weights(self, register):
        for entry in self.entries:
            register(entry)


@pytest.fixture
def register_plugin():
    """Register weights entries through the real hook; unregistered after the test."""
    names = []

    def add(*entries: WeightsEntry) -> None:
        name = f"test-weights-plugin-{len(names)}"
        plugins.pm.register(_WeightsPlugin(*entries), name=name)
        names.append(name)

    try:
        yield add
    finally:
        for name in names:
            plugins.pm.unregister(name=name)


# --- downloads ---------------------------------------------------------------------


def test_download_verifies_digest_and_lands_atomically_in_cache(server, isolated_env, monkeypatch):
    root, base = server
    data = _payload()
    (root / "model.pth").write_bytes(data)
    entry = _entry("dl", "model.pth", [f"{base}/model.pth"], data)

    import facefix.weights as weights_module

    renames = []
    real_replace = os.replace

    def recording_replace(src, dst):
        # At the moment of the rename the final name must not exist yet.
        if Path(dst).name == "model.pth":  # not the cache's record of verified digests
            renames.append((Path(src), Path(dst), Path(dst).exists()))
        return real_replace(src, dst)

    monkeypatch.setattr(weights_module.os, "replace", recording_replace)
    resolver = WeightsResolver(progress=False)
    assert resolver.cache_dir == isolated_env == default_cache_dir()
    assert resolver.status(entry) == "downloadable"

    path = resolver.download(entry)

    assert path == isolated_env / "model.pth"
    assert path.read_bytes() == data
    assert len(renames) == 1
    src, dst, existed = renames[0]
    assert dst == path and not existed
    assert src.parent == path.parent and src.name.startswith(".model.pth.") and src.name.endswith(".part")
    assert _leftovers(isolated_env) == []
    assert resolver.status(entry) == "available"
    assert resolver.verify(entry) == (path, "ok")
    # A second download is a no-op unless forced.
    assert resolver.download(entry) == path and len(renames) == 1
    assert resolver.download(entry, force=True) == path and len(renames) == 2


def test_resolve_downloads_when_missing(server, isolated_env):
    root, base = server
    data = b"weights" * 100
    (root / "r.pth").write_bytes(data)
    entry = _entry("r", "r.pth", [f"{base}/r.pth"], data)
    path = WeightsResolver(progress=False).resolve(entry)
    assert path == isolated_env / "r.pth" and path.read_bytes() == data


def test_digest_mismatch_deletes_file_and_names_both_digests(server, isolated_env):
    root, base = server
    data = _payload(5000)
    (root / "bad.pth").write_bytes(data)
    expected = hashlib.sha256(b"something else").hexdigest()
    actual = hashlib.sha256(data).hexdigest()
    entry = _entry("bad", "bad.pth", [f"{base}/bad.pth"], sha256=expected, size=len(data))

    with pytest.raises(WeightsError) as caught:
        WeightsResolver(progress=False).download(entry)

    message = str(caught.value)
    assert "bad.pth" in message and expected in message and actual in message
    assert "\n" not in message
    assert not (isolated_env / "bad.pth").exists()
    assert _leftovers(isolated_env) == []
    assert list(isolated_env.iterdir()) == []


def test_size_mismatch_is_refused(server, isolated_env):
    root, base = server
    (root / "s.onnx").write_bytes(b"x" * 100)
    entry = _entry("s", "s.onnx", [f"{base}/s.onnx"], size=99)  # unpinned, wrong size
    with pytest.raises(WeightsError, match=r"size mismatch: expected 99 bytes, got 100"):
        WeightsResolver(progress=False).download(entry)
    assert list(isolated_env.iterdir()) == []


def test_unpinned_download_prints_its_digest(server, isolated_env, capsys):
    root, base = server
    data = b"onnx model bytes" * 50
    (root / "u.onnx").write_bytes(data)
    entry = _entry("u", "u.onnx", [f"{base}/u.onnx"])
    assert not entry.pinned

    path = WeightsResolver(progress=False).download(entry)

    assert path.read_bytes() == data
    err = capsys.readouterr().err
    line = [line for line in err.splitlines() if "unpinned" in line]
    assert len(line) == 1
    assert "no published digest" in line[0] and hashlib.sha256(data).hexdigest() in line[0]
    assert WeightsResolver().verify(entry) == (path, f"unpinned (sha256 {hashlib.sha256(data).hexdigest()})")


def test_first_url_404_falls_back_to_second(server, isolated_env):
    root, base = server
    data = _payload(70000)
    (root / "good.pth").write_bytes(data)
    entry = _entry("fb", "good.pth", [f"{base}/nope/good.pth", f"{base}/good.pth"], data)
    path = WeightsResolver(progress=False).download(entry)
    assert path.read_bytes() == data
    assert _leftovers(isolated_env) == []


def test_failed_download_names_each_url_and_leaves_nothing(server, isolated_env):
    _, base = server
    entry = _entry("gone", "gone.pth", [f"{base}/a/gone.pth", f"{base}/short"])
    with pytest.raises(WeightsError) as caught:
        WeightsResolver(progress=False).download(entry)
    message = str(caught.value)
    assert "\n" not in message
    assert f"{base}/a/gone.pth: HTTP 404" in message
    assert f"{base}/short:" in message  # the truncated response is a failure too
    assert not (isolated_env / "gone.pth").exists()
    assert _leftovers(isolated_env) == []


def test_truncated_response_is_refused_even_when_unpinned(server, isolated_env):
    _, base = server
    entry = _entry("short", "short.bin", [f"{base}/short"])
    with pytest.raises(WeightsError, match="short.bin"):
        WeightsResolver(progress=False).download(entry)
    assert list(isolated_env.iterdir()) == []


def test_resolve_reports_failed_download_in_one_line(server, isolated_env, tmp_path):
    _, base = server
    entry = _entry("nf", "nf.pth", [f"{base}/nf.pth"])
    model_dir = tmp_path / "models"
    with pytest.raises(WeightsError) as caught:
        WeightsResolver(model_dir=model_dir, progress=False).resolve(entry)
    message = str(caught.value)
    assert "\n" not in message
    assert "nf.pth" in message and str(model_dir) in message and str(isolated_env) in message
    assert "download failed" in message and "HTTP 404" in message


def test_status_never_downloads(server, isolated_env):
    root, base = server
    (root / "lazy.pth").write_bytes(b"1234")
    entry = _entry("lazy", "lazy.pth", [f"{base}/lazy.pth"], b"1234")
    resolver = WeightsResolver(progress=False)
    assert resolver.status(entry) == "downloadable"
    assert resolver.find_local(entry) is None
    assert not isolated_env.exists() or list(isolated_env.iterdir()) == []


# --- lookup ------------------------------------------------------------------------


def test_lookup_order_explicit_then_model_dir_then_cache(tmp_path, isolated_env):
    entry = _entry("lk", "main.pth", [], alternate_filenames=("alt.pth",))
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    isolated_env.mkdir(parents=True)
    cached = isolated_env / "main.pth"
    cached.write_bytes(b"cache")
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"explicit")
    resolver = WeightsResolver(model_dir=model_dir, allow_download=False)

    assert resolver.resolve(entry) == cached
    (model_dir / "alt.pth").write_bytes(b"alternate")  # alternate name in model_dir beats the cache
    assert resolver.resolve(entry) == model_dir / "alt.pth"
    (model_dir / "main.pth").write_bytes(b"main")  # the main name beats the alternate
    assert resolver.resolve(entry) == model_dir / "main.pth"
    assert resolver.resolve(entry, explicit=explicit) == explicit

    with pytest.raises(WeightsError, match=r"weights file .*nothere\.pth does not exist"):
        resolver.resolve(entry, explicit=tmp_path / "nothere.pth")


def test_model_dir_files_are_used_without_digest_check(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "detection_Resnet50_Final.pth").write_bytes(b"not the release file")
    resolver = WeightsResolver(model_dir=model_dir)
    assert resolver.resolve("retinaface_resnet50") == model_dir / "detection_Resnet50_Final.pth"
    path, verdict = resolver.verify("retinaface_resnet50")
    assert path == model_dir / "detection_Resnet50_Final.pth" and verdict.startswith("mismatch (sha256 ")


def test_model_dir_defaults_to_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFIX_MODEL_DIR", str(tmp_path / "env-models"))
    assert WeightsResolver().model_dir == tmp_path / "env-models"
    assert WeightsResolver(model_dir=tmp_path / "given").model_dir == tmp_path / "given"


def test_status_values(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "here.pth").write_bytes(b"x")
    resolver = WeightsResolver(model_dir=model_dir)
    assert resolver.status(_entry("a", "here.pth", [])) == "available"
    assert resolver.status(_entry("b", "away.pth", ["http://127.0.0.1:9/away.pth"])) == "downloadable"
    assert resolver.status(_entry("c", "away.pth", [])) == "missing"


def test_offline_missing_message_is_one_line(tmp_path, isolated_env, monkeypatch):
    monkeypatch.setenv("FACEFIX_OFFLINE", "1")
    model_dir = tmp_path / "models"
    # Port 9 (discard) on loopback: if a download were attempted it would fail loudly.
    entry = _entry("off", "offline.pth", ["http://127.0.0.1:9/offline.pth"])
    resolver = WeightsResolver(model_dir=model_dir)
    assert not resolver.allow_download

    with pytest.raises(WeightsError) as caught:
        resolver.resolve(entry)

    message = str(caught.value)
    assert "\n" not in message
    assert "offline.pth" in message and "restorer:test" in message
    assert str(model_dir) in message and str(isolated_env) in message
    assert "facefix weights download off" in message
    assert "download failed" not in message
    with pytest.raises(WeightsError, match="downloading is disabled"):
        resolver.download(entry)


def test_get_entry_by_name_or_filename():
    assert get_entry("retinaface_resnet50").filename == "detection_Resnet50_Final.pth"
    assert get_entry("detection_Resnet50_Final.pth").name == "retinaface_resnet50"
    assert get_entry("face_detection_yunet_2026may.onnx").name == "yunet"
    with pytest.raises(WeightsError, match=r"unknown weights 'nope'; known: .*retinaface_resnet50"):
        get_entry("nope")


def test_entries_reject_unsafe_file_names_and_bad_digests():
    with pytest.raises(ValueError):
        WeightsEntry(name="x", filename="../escape.pth")
    with pytest.raises(ValueError):
        WeightsEntry(name="x", filename="ok.pth", sha256="abc")
    with pytest.raises(ValueError):
        WeightsEntry(name="x", filename="ok.pth", component="painter:x")
    assert WeightsEntry(name="x", filename="ok.pth", sha256="AB" * 32).sha256 == "ab" * 32


def test_sha256_file_streams(tmp_path):
    path = tmp_path / "f.bin"
    data = _payload()
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


# --- manifest and registry ---------------------------------------------------------


def test_manifest_entries_are_complete():
    raw = json.loads((importlib.resources.files("facefix_weights") / "manifest.json").read_text())
    names = [item["name"] for item in raw["weights"]]
    assert len(names) == len(set(names))
    bundled = Path(str(importlib.resources.files("facefix_weights")))
    for item in raw["weights"]:
        assert item["filename"] and "/" not in item["filename"]
        assert isinstance(item["urls"], list)
        assert all(url.startswith("https://") for url in item["urls"])
        if not item["urls"]:  # no download: the file ships with facefix, pinned
            shipped = bundled / item["filename"]
            assert shipped.stat().st_size == item["size"] and sha256_file(shipped) == item["sha256"]
        assert item["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", item["sha256"])
        assert item["size"] is None or (isinstance(item["size"], int) and item["size"] > 0)
        kind, _, component = item["component"].partition(":")
        assert kind in COMPONENT_KINDS and component
        assert item["license"]
    by_name = {item["name"]: item for item in raw["weights"]}
    for name, digest in FACEXLIB_DIGESTS.items():
        assert by_name[name]["sha256"] == digest
    assert by_name["yunet"]["sha256"] is None
    assert "face_detection_yunet_2026may.onnx" in by_name["yunet"]["alternate_filenames"]
    entries = weights_entries()
    assert {name: entries[name].sha256 for name in FACEXLIB_DIGESTS} == FACEXLIB_DIGESTS
    assert entries["retinaface_resnet50"].size == 109497761 and entries["retinaface_resnet50"].pinned


def test_register_weights_hook(register_plugin, capsys):
    extra = _entry("hook_extra", "hook_extra.pth", ["http://127.0.0.1:9/x"], b"abc")
    clash = _entry("retinaface_resnet50", "clashing_hook_file.pth", [])
    assert "hook_extra" not in weights_entries()
    register_plugin(extra, clash)

    entries = weights_entries()

    assert entries["hook_extra"] == extra
    assert get_entry("hook_extra.pth") == extra
    # The manifest wins a name clash; the plugin's entry is ignored with a warning.
    assert entries["retinaface_resnet50"].filename == "detection_Resnet50_Final.pth"
    assert "clashing_hook_file.pth" in capsys.readouterr().err


def test_register_weights_hook_bad_entry_is_a_warning(register_plugin, capsys):
    class Broken:
        @hookimpl
        def register_weights(self, register):
            register({"name": "dict_is_not_an_entry"})

    plugins.pm.register(Broken(), name="test-weights-broken")
    try:
        entries = weights_entries()
    finally:
        plugins.pm.unregister(name="test-weights-broken")
    assert "dict_is_not_an_entry" not in entries and "retinaface_resnet50" in entries
    assert "test-weights-broken" in capsys.readouterr().err


# --- CLI ---------------------------------------------------------------------------


def _invoke(*args: str):
    return CliRunner().invoke(weights_cli, list(args), catch_exceptions=False)


def test_cli_list_json(tmp_path):
    result = _invoke("list", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["retinaface_resnet50"]["status"] == "downloadable"
    assert rows["retinaface_resnet50"]["filename"] == "detection_Resnet50_Final.pth"
    assert rows["retinaface_resnet50"]["pinned"] is True and rows["yunet"]["pinned"] is False

    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "face_detection_yunet_2026may.onnx").write_bytes(b"onnx")
    result = _invoke("--model-dir", str(model_dir), "list", "--json")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["yunet"]["status"] == "available"
    assert rows["yunet"]["path"] == str(model_dir / "face_detection_yunet_2026may.onnx")


def test_cli_list_table(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    result = _invoke("list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "PINNED", "SIZE", "LICENSE"]
    assert max(len(line) for line in lines) <= 100  # fits the terminal
    row = next(line for line in lines if line.startswith("retinaface_resnet50 "))
    assert "downloadable" in row and "104.4 MiB" in row
    long = _invoke("list", "--long").stdout.splitlines()
    assert long[0].split()[:4] == ["NAME", "FILE", "COMPONENT", "STATUS"]
    row = next(line for line in long if line.startswith("retinaface_resnet50 "))
    assert "detection_Resnet50_Final.pth" in row and "downloadable" in row and "104.4 MiB" in row


def test_cli_path_missing_exits_1_with_one_line(tmp_path, isolated_env):
    model_dir = tmp_path / "models"
    result = _invoke("--model-dir", str(model_dir), "path", "parsenet")
    assert result.exit_code == 1
    assert result.stdout == ""
    err_lines = result.stderr.splitlines()
    assert len(err_lines) == 1 and err_lines[0].startswith("Error: weights file parsing_parsenet.pth")
    assert str(model_dir) in err_lines[0] and "facefix weights download parsenet" in err_lines[0]
    assert not isolated_env.exists()  # path never downloads


def test_cli_path_found_via_env_model_dir(tmp_path, monkeypatch):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "parsing_bisenet.pth").write_bytes(b"x")
    monkeypatch.setenv("FACEFIX_MODEL_DIR", str(model_dir))
    result = _invoke("path", "bisenet")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(model_dir / "parsing_bisenet.pth")


def test_cli_verify_reports_mismatch(tmp_path):
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    wrong = model_dir / "detection_Resnet50_Final.pth"
    wrong.write_bytes(b"definitely not RetinaFace")
    result = _invoke("--model-dir", str(model_dir), "verify", "retinaface_resnet50")
    assert result.exit_code == 1
    assert result.stdout.startswith(f"retinaface_resnet50: mismatch (sha256 {sha256_file(wrong)}")
    assert str(wrong) in result.stdout

    result = _invoke("--model-dir", str(model_dir), "verify")  # all entries
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "parsenet: not found" in lines and len(lines) == len(weights_entries())


def test_cli_verify_ok_and_unknown(register_plugin, tmp_path):
    data = b"good weights"
    register_plugin(_entry("cli_ok", "cli_ok.pth", [], data))
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "cli_ok.pth").write_bytes(data)
    result = _invoke("--model-dir", str(model_dir), "verify", "cli_ok")
    assert result.exit_code == 0
    assert result.stdout.startswith("cli_ok: ok")
    result = _invoke("verify", "no_such_weights")
    assert result.exit_code == 1 and result.stderr.startswith("Error: unknown weights 'no_such_weights'")


def test_cli_download_plugin_entry(server, register_plugin, isolated_env):
    root, base = server
    data = _payload(200_000)
    (root / "plugin.pth").write_bytes(data)
    register_plugin(_entry("cli_dl", "plugin.pth", [f"{base}/plugin.pth"], data))

    result = _invoke("download", "--quiet", "cli_dl")

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(isolated_env / "plugin.pth")
    assert (isolated_env / "plugin.pth").read_bytes() == data
    result = _invoke("path", "cli_dl")
    assert result.exit_code == 0 and result.stdout.strip() == str(isolated_env / "plugin.pth")


def test_cli_download_failure_is_an_error_line(server, register_plugin, isolated_env):
    _, base = server
    register_plugin(_entry("cli_404", "missing.pth", [f"{base}/missing.pth"]))
    result = _invoke("download", "--quiet", "cli_404")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: missing.pth: download failed:") and "HTTP 404" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_model_dir_is_accepted_after_the_subcommand_too(tmp_path):
    from click.testing import CliRunner

    from facefix.cli.weights import weights_group as weights

    (tmp_path / "detection_mobilenet0.25_Final.pth").write_bytes(b"stand-in")
    env = {"FACEFIX_HOME": str(tmp_path / "home")}
    before = CliRunner(env=env).invoke(weights, ["--model-dir", str(tmp_path), "list", "--json"])
    after = CliRunner(env=env).invoke(weights, ["list", "--json", "--model-dir", str(tmp_path)])
    assert before.exit_code == after.exit_code == 0
    assert before.output == after.output and str(tmp_path) in after.output


def test_a_tampered_cached_file_is_refused_when_loaded_and_replaced_by_download(server, isolated_env):
    root, base = server
    data = _payload()
    (root / "model.pth").write_bytes(data)
    entry = _entry("tamper", "model.pth", [f"{base}/model.pth"], data)
    resolver = WeightsResolver(progress=False)
    path = resolver.download(entry)
    assert resolver.resolve(entry) == path  # verified once, then known by size and mtime
    tampered = bytearray(data)
    tampered[1000] ^= 1
    path.write_bytes(bytes(tampered))  # same size; a new mtime
    with pytest.raises(WeightsError) as error:
        resolver.resolve(entry)
    assert str(error.value) == (f"{path}: not the pinned tamper file (its SHA-256 differs: changed or damaged); "
                                "fetch it again with `facefix weights download tamper --force`")
    assert resolver.download(entry) == path and path.read_bytes() == data  # a corrupt copy is replaced
    assert resolver.resolve(entry) == path


def test_a_trickling_server_is_given_up_on_its_rate_and_a_lengthless_unpinned_file_refused(server, isolated_env):
    _, base = server
    resolver = WeightsResolver(progress=False)
    resolver.grace, resolver.min_rate = 1.0, 100.0  # the defaults (30 s, 32 KiB/s), scaled down
    started = time.monotonic()
    with pytest.raises(WeightsError, match=r"too slow: \d+ B/s on average after \d+ s \(at least 100 B/s"):
        resolver.download(_entry("slow", "slow.pth", [f"{base}/trickle"]))
    assert time.monotonic() - started < 10
    resolver.grace, resolver.deadline = 100.0, 1.0
    with pytest.raises(WeightsError, match=r"too slow: .* over the 1 s limit"):
        resolver.download(_entry("slow", "slow.pth", [f"{base}/trickle"]))
    with pytest.raises(WeightsError, match="the server sent no length and no digest is pinned"):
        WeightsResolver(progress=False).download(_entry("bare", "bare.pth", [f"{base}/nolength"]))
    assert _leftovers(isolated_env) == [] and not (isolated_env / "bare.pth").exists()


def test_a_redirect_loop_is_one_line(server, isolated_env):
    _, base = server
    with pytest.raises(WeightsError) as error:
        WeightsResolver(progress=False).download(_entry("loop", "loop.pth", [f"{base}/loop"]))
    message = str(error.value)
    assert "\n" not in message and "redirect" in message and f"{base}/loop" in message
