"""The plugin system: every hook, entry-point loading, broken plugins, listing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from facefix import hookspecs, plugins
from facefix.cli import cli
from facefix.components import ComponentContext, DetectedFace, Normalization
from facefix.hookspecs import hookimpl
from conftest import PROJECT, copy_faces, read_any, shared_path


class registered:
    """Context manager: register an inline plugin object, unregister on exit."""

    def __init__(self, plugin, name):
        self.plugin, self.name = plugin, name

    def __enter__(self):
        plugins.load_plugins()
        plugins.pm.register(self.plugin, name=self.name)
        return self.plugin

    def __exit__(self, *exc):
        plugins.pm.unregister(name=self.name)


def hook_names() -> list[str]:
    return [name for name in dir(hookspecs) if name.startswith("register_")]


def test_every_hookspec_has_a_test_and_documentation():
    defined = set()
    for path in (PROJECT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text())
        defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    docs = (PROJECT / "docs" / "plugins.md").read_text()
    for name in hook_names():
        assert f"test_{name}_hook" in defined, f"hook {name} has no test named test_{name}_hook"
        assert f"### {name}" in docs, f"hook {name} is not documented in docs/plugins.md"


def test_builtin_plugins_load_through_entry_points():
    infos = {info.name: info for info in plugins.plugin_infos()}
    for name in ("retinaface", "yunet", "facexlib_parsing", "passthrough", "blenders"):
        assert infos[name].builtin
    assert {"retinaface_resnet50", "retinaface_mobile0.25", "yunet"} <= set(plugins.components("detector"))
    assert {"parsenet", "bisenet"} <= set(plugins.components("parser"))
    assert "passthrough" in plugins.components("restorer")
    assert {"soft", "parse", "poisson"} <= set(plugins.components("blender"))


class FixedDetector:
    def detect(self, image):
        h, w = image.shape[:2]
        s = min(h, w) / 512
        points = np.array([[193, 240], [319, 240], [257, 314], [201, 371], [313, 371]], np.float32) * s
        return [DetectedFace(box=(0.0, 0.0, float(w), float(h)), score=0.99, landmarks=points)]


class DetectorPlugin:
    @hookimpl
    def register_detectors(self, register):
        register("fixed-test", lambda context: FixedDetector(), description="a face where the template says")


def test_register_detectors_hook(tmp_path):
    with registered(DetectorPlugin(), "detector-test-plugin"):
        spec = plugins.get_component("detector", "fixed-test")
        assert spec.plugin == "detector-test-plugin" and spec.description
        image = np.full((256, 256, 3), 120, np.uint8)
        cv2_path = tmp_path / "in.png"
        import cv2

        cv2.imwrite(str(cv2_path), image)
        result = CliRunner().invoke(
            cli, ["restore", str(cv2_path), str(tmp_path / "out"), "--detector", "fixed-test",
                  "--restorer", "passthrough", "--quiet"])
        assert result.exit_code == 0, result.output
        assert "1 processed, 0 failed; 1 face restored" in result.output
    with pytest.raises(Exception, match="unknown detector 'fixed-test'"):
        plugins.get_component("detector", "fixed-test")


class InvertRestorer:
    input_size = 128
    output_size = 256
    needs_parsing = False
    normalization = Normalization()

    def restore(self, faces, parsing=None):
        import cv2

        return np.stack([255 - cv2.resize(face, (256, 256)) for face in faces])


class RestorerPlugin:
    @hookimpl
    def register_restorers(self, register):
        register("invert-test", lambda context: InvertRestorer(), description="inverts, 2x")


def test_register_restorers_hook(tmp_path):
    import cv2

    face = np.random.default_rng(0).integers(0, 255, (128, 128, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "face.png"), face)
    with registered(RestorerPlugin(), "restorer-test-plugin"):
        result = CliRunner().invoke(cli, ["restore", str(tmp_path / "face.png"), str(tmp_path / "out"),
                                          "--aligned", "--restorer", "invert-test", "--quiet", "--no-color-match"])  # its raw output
    assert result.exit_code == 0, result.output
    out = cv2.imread(str(tmp_path / "out" / "face.png"))
    assert out.shape == (256, 256, 3)  # the restorer's own output size
    assert np.array_equal(out, 255 - cv2.resize(face, (256, 256)))


class UpsamplerPlugin:
    class Nearest:
        scale = 2

        def upscale(self, image):
            return image.repeat(2, axis=0).repeat(2, axis=1)

    @hookimpl
    def register_upsamplers(self, register):
        register("nearest-test", lambda context: self.Nearest(), description="pixel doubling")


def test_register_upsamplers_hook(tmp_path):
    import cv2

    image = np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    with registered(UpsamplerPlugin(), "upsampler-test-plugin"):
        listing = CliRunner().invoke(cli, ["plugins"])
        result = CliRunner().invoke(cli, ["upscale", str(tmp_path / "photo.png"), str(tmp_path / "out"),
                                          "--upsampler", "nearest-test", "--quiet"])
    assert "nearest-test" in listing.output and "pixel doubling" in listing.output
    assert result.exit_code == 0, result.output
    assert np.array_equal(cv2.imread(str(tmp_path / "out" / "photo.png")), image.repeat(2, 0).repeat(2, 1))


def test_register_parsers_hook(tmp_path):
    """A third-party parser (the test-only U-Net from ../shared) feeds the parse blender."""
    sys.path.insert(0, str(PROJECT / "tests"))
    from unet_parser_plugin import SharedUNetPlugin

    weights = shared_path("weights", "parsing_unet_lightweight.pth")
    photo = shared_path("photos", "gfpgan__inputs_whole_imgs_00.jpg")
    with registered(SharedUNetPlugin(weights), "unet-test-plugin"):
        assert plugins.get_component("parser", "unet-test").plugin == "unet-test-plugin"
        result = CliRunner().invoke(cli, [
            "restore", str(photo), str(tmp_path / "out"), "--model-dir", str(weights.parent),
            "--detector", "retinaface_mobile0.25", "--restorer", "passthrough", "--parser", "unet-test",
            "--blender", "parse", "--quiet"])
    assert result.exit_code == 0, result.output
    from conftest import psnr

    assert psnr(read_any(tmp_path / "out" / photo.name), read_any(photo)) > 35


class BrokenHookPlugin:
    @hookimpl
    def register_blenders(self, register):
        raise RuntimeError("boom in a plugin")


def test_failing_hook_gives_one_warning_and_the_rest_works(capsys):
    with registered(BrokenHookPlugin(), "broken-test-plugin"):
        blenders = plugins.components("blender")
    assert "soft" in blenders
    err = capsys.readouterr().err
    assert "broken-test-plugin" in err and "boom in a plugin" in err


class CommandPlugin:
    @hookimpl
    def register_commands(self, cli, train):
        @cli.command(name="hello-test")
        def hello():
            click.echo("hello from a plugin")

        @train.command(name="tiny-test")
        @click.option("--iters", type=int, default=1)
        def tiny(iters):
            click.echo(f"training tiny for {iters}")


def test_register_commands_hook():
    with registered(CommandPlugin(), "command-test-plugin"):
        runner = CliRunner()
        assert runner.invoke(cli, ["hello-test"]).output.strip() == "hello from a plugin"
        result = runner.invoke(cli, ["train", "tiny-test", "--iters", "3"])
        assert result.exit_code == 0 and "training tiny for 3" in result.output
        assert "tiny-test" in runner.invoke(cli, ["train", "--help"]).output


def test_plugins_command_lists_components_with_weights_status(tmp_path):
    (tmp_path / "detection_mobilenet0.25_Final.pth").write_bytes(b"stand-in")
    env = {"FACEFIX_HOME": str(tmp_path / "home")}
    result = CliRunner(env=env).invoke(cli, ["plugins", "--json", "--model-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    listing = json.loads(result.output)
    detectors = {item["name"]: item for item in listing["components"]["detector"]}
    assert detectors["retinaface_mobile0.25"]["weights_status"] == "available"
    assert detectors["retinaface_resnet50"]["weights_status"] == "downloadable"
    assert detectors["retinaface_mobile0.25"]["plugin"] == "retinaface"
    restorers = {item["name"]: item for item in listing["components"]["restorer"]}
    assert restorers["passthrough"]["weights_status"] == "none needed"
    names = {item["name"] for item in listing["plugins"]}
    assert {"retinaface", "blenders", "passthrough"} <= names
    text = CliRunner(env=env).invoke(cli, ["plugins", "--model-dir", str(tmp_path)]).output
    assert "retinaface_mobile0.25" in text and "[available]" in text and "Blenders:" in text


# -- third-party plugins installed as distributions (run in a fresh interpreter) -----


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> None:
    """A minimal installed distribution: a module plus a .dist-info naming its entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # normalised name, as pip writes it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[facefix]\n{entry_name} = {module}\n")


BLENDER_PLUGIN = """
    import numpy as np
    from facefix.hookspecs import hookimpl

    class Paint:
        needs_parsing = False
        def blend(self, image, face, inverse_affine, parsing, upscale):
            out = image.copy()
            x = int(inverse_affine[0, 2]); y = int(inverse_affine[1, 2])
            out[max(y, 0):max(y, 0) + 4, max(x, 0):max(x, 0) + 4] = [0, 0, 255]
            return out

    @hookimpl
    def register_blenders(register):
        register("paint-corner", lambda context: Paint(), description="marks each face's corner red")
"""


def run_facefix(args, site: Path, **env_extra) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site), **env_extra)
    return subprocess.run([sys.executable, "-m", "facefix", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_third_party_entry_point_plugin_adds_a_blender(tmp_path, shared_weights):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "facefix-paint", "facefix_paint", BLENDER_PLUGIN, "paint")
    listing = run_facefix(["plugins", "--json"], site)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    plugin = next(item for item in data["plugins"] if item["name"] == "paint")
    assert not plugin["builtin"] and plugin["distribution"] == "facefix-paint 1.0"
    assert any(item["name"] == "paint-corner" for item in data["components"]["blender"])

    photo = shared_path("photos", "insightface_t1.jpg")
    result = run_facefix(["restore", str(photo), str(tmp_path / "out"), "--blender", "paint-corner",
                          "--restorer", "passthrough", "--model-dir", str(shared_weights),
                          "--detector", "retinaface_mobile0.25", "--quiet", "--ext", "png"], site)
    assert result.returncode == 0, result.stderr
    out = read_any(tmp_path / "out" / "insightface_t1.png")
    assert (np.all(out == [0, 0, 255], axis=2)).sum() >= 6 * 16  # one red 4x4 mark per face

    restricted = run_facefix(["plugins", "--json"], site, FACEFIX_LOAD_PLUGINS="")
    data = json.loads(restricted.stdout)
    assert "paint" not in {item["name"] for item in data["plugins"]}
    assert "soft" in {item["name"] for item in data["components"]["blender"]}  # built-ins still load
    allowed = run_facefix(["plugins", "--json"], site, FACEFIX_LOAD_PLUGINS="paint")
    assert "paint" in {item["name"] for item in json.loads(allowed.stdout)["plugins"]}


def test_broken_third_party_plugin_warns_once_and_cli_works(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "facefix-broken", "facefix_broken", "raise ImportError('missing dependency xyz')\n",
                      "broken")
    result = run_facefix(["plugins"], site)
    assert result.returncode == 0
    warnings = [line for line in result.stderr.splitlines() if "broken" in line]
    assert len(warnings) == 1 and "missing dependency xyz" in warnings[0] and "facefix-broken" in warnings[0]
    assert "passthrough" in result.stdout


def test_the_documented_example_plugin_works(tmp_path):
    """The complete plugin in docs/plugins.md is real code: load it and blend with it."""
    docs = (PROJECT / "docs" / "plugins.md").read_text()
    source = docs.split("`facefix_sepia.py`:\n\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(source, "facefix_sepia.py", "exec"), namespace)
    import types

    module = types.ModuleType("facefix_sepia")
    module.__dict__.update(namespace)
    with registered(module, "sepia-doc-plugin"):
        blender = plugins.get_component("blender", "sepia").build(ComponentContext())
    canvas = np.full((300, 300, 3), 100.0, np.float32)
    face = np.full((128, 128, 3), 200.0, np.float32)
    inverse = np.array([[1.0, 0, 80], [0, 1.0, 90]])
    out = blender.blend(canvas.copy(), face, inverse, None, 1.0)
    assert np.array_equal(out[:50], canvas[:50])  # far from the face: untouched
    centre = out[90 + 64, 80 + 64]
    assert centre[2] > centre[0] and not np.allclose(centre, 100.0)  # tinted: red above blue
    # the classic sepia of a skin tone, in RGB: the BGR matrix is that one turned round, not a duller mix
    skin = np.full((128, 128, 3), (120.0, 150.0, 200.0), np.float32)  # B, G, R
    red, green, blue = 200.0, 150.0, 120.0
    sepia = [0.272 * red + 0.534 * green + 0.131 * blue, 0.349 * red + 0.686 * green + 0.168 * blue,
             0.393 * red + 0.769 * green + 0.189 * blue]  # B', G', R'
    tinted = blender.blend(np.zeros((300, 300, 3), np.float32), skin, inverse, None, 1.0)[90 + 64, 80 + 64]
    assert np.allclose(tinted, np.minimum(sepia, 200.0), atol=0.5)


def test_the_documented_blender_plugin_installs_with_pip_and_restores(tmp_path, shared_weights):
    site = pip_install_from_docs(tmp_path, ("facefix_sepia.py", "pyproject.toml"), after="## A component plugin")
    listing = run_facefix(["plugins", "--json"], site)
    assert listing.returncode == 0, listing.stderr
    plugin = next(item for item in json.loads(listing.stdout)["plugins"] if item["name"] == "sepia")
    assert plugin["distribution"] == "facefix-sepia 0.1"
    photo = shared_path("photos", "insightface_t1.jpg")
    result = run_facefix(["restore", str(photo), str(tmp_path / "out"), "--blender", "sepia", "--restorer",
                          "passthrough", "--quiet"], site)
    assert result.returncode == 0, result.stderr
    assert read_any(tmp_path / "out" / photo.name).shape == read_any(photo).shape


def docs_code(filename: str, after: str = "") -> str:
    """The code block docs/plugins.md gives for ``filename`` (the first one after ``after``)."""
    docs = (PROJECT / "docs" / "plugins.md").read_text()
    docs = docs.split(after, 1)[1] if after else docs
    fence = "```toml\n" if filename.endswith(".toml") else "```python\n"
    return docs.split(f"`{filename}`", 1)[1].split(fence, 1)[1].split("```", 1)[0]


def pip_install_from_docs(tmp_path: Path, files: tuple[str, ...], after: str = "") -> Path:
    """The docs' files for one plugin written as given and installed by pip into a folder of
    its own (no network, no build isolation): the folder to put on PYTHONPATH."""
    project, site = tmp_path / "project", tmp_path / "site"
    project.mkdir()
    for name in files:
        (project / name).write_text(docs_code(name, after))
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                                "--no-index", "--target", str(site), str(project)], capture_output=True, text=True,
                               timeout=300)
    assert installed.returncode == 0, installed.stderr
    return site


def test_register_networks_hook(tmp_path):
    """The documented network plugin, installed as a distribution: from its card alone
    facefix lists it, trains it, detects its checkpoint, restores, exports and runs the
    export in onnxruntime."""
    site = pip_install_from_docs(tmp_path, ("tinynet.py", "facefix_tinynet.py", "pyproject.toml"))
    faces = copy_faces(tmp_path / "faces", 6)

    listing = run_facefix(["plugins", "--json"], site)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    network = next(item for item in data["networks"] if item["name"] == "tinynet")
    assert network["plugin"] == "tinynet" and network["train_command"] == "tinynet" and network["tags"] == []
    assert any(item["name"] == "tinynet" for item in data["components"]["restorer"])

    run = tmp_path / "run"
    trained = run_facefix(["train", "tinynet", "--data", str(faces / "images"), "--size", "64", "--iters", "3",
                           "--batch-size", "2", "--workers", "0", "--val-every", "0", "--width", "8", "--out",
                           str(run), "--quiet"], site)
    assert trained.returncode == 0, trained.stderr
    assert (run / "final.pth").exists()

    face = shared_path("photos", "gfpgan__inputs_cropped_faces_Adele_crop.png")
    restored = run_facefix(["restore", str(face), str(tmp_path / "out"), "--aligned", "--weights",
                            str(run / "final.pth"), "--backend", "torch"], site)
    assert restored.returncode == 0, restored.stderr
    assert "restorer tinynet [detected from final.pth]" in restored.stderr
    torch_output = read_any(tmp_path / "out" / face.name)
    assert torch_output.shape == (512, 512, 3) and not np.array_equal(torch_output, read_any(face))

    exported = run_facefix(["export", "tinynet", "--weights", str(run / "final.pth"), "-o",
                            str(tmp_path / "tinynet.onnx")], site)
    assert exported.returncode == 0, exported.stderr
    assert "exported tinynet" in exported.stdout and "ONNX checker passed" in exported.stdout
    on_onnx = run_facefix(["restore", str(face), str(tmp_path / "onnx"), "--aligned", "--restorer", "tinynet",
                           "--weights", str(run / "final.pth"), "--backend", "onnx", "--onnx",
                           str(tmp_path / "tinynet.onnx"), "--quiet"], site)
    assert on_onnx.returncode == 0, on_onnx.stderr
    difference = np.abs(read_any(tmp_path / "onnx" / face.name).astype(int) - torch_output.astype(int))
    assert difference.max() <= 1


MISSPELT_PLUGIN = """
    from facefix import hookimpl

    @hookimpl
    def register_restorer(register):  # the hook is register_restorers
        register("never", lambda context: None)
"""


def test_a_misspelt_hook_fails_the_plugin_at_load_with_its_name(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "facefix-typo", "facefix_typo", MISSPELT_PLUGIN, "typo")
    result = run_facefix(["plugins", "--json"], site)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "typo" in line]
    assert len(warnings) == 1
    assert "plugin 'typo' (facefix-typo) failed to load" in warnings[0]
    assert "register_restorer is not a facefix hook" in warnings[0] and "register_restorers" in warnings[0]
    data = json.loads(result.stdout)
    assert "typo" not in {item["name"] for item in data["plugins"]}  # not half-loaded
    assert "passthrough" in {item["name"] for item in data["components"]["restorer"]}


class FailingRestorer:
    input_size = 64
    output_size = 64
    needs_parsing = False
    normalization = Normalization()

    def __init__(self):
        self.calls = 0

    def restore(self, faces, parsing=None):
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("out of memory (simulated)")
        return faces.copy()


class FailingRestorerPlugin:
    @hookimpl
    def register_restorers(self, register):
        register("failing-test", lambda context: FailingRestorer(), description="fails its first batch")


def test_a_failing_restorer_batch_fails_its_images_and_the_run_goes_on(tmp_path):
    import cv2

    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (64, 64, 3), np.uint8))
    with registered(FailingRestorerPlugin(), "failing-restorer-plugin"):
        result = CliRunner().invoke(cli, ["restore", str(folder), str(tmp_path / "out"), "--aligned",
                                          "--restorer", "failing-test", "--batch-size", "2", "--quiet"])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("out of memory (simulated)" in line for line in errors)
    assert "1 processed, 2 failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.png"]


# -- built-ins win every clash (issue 33) -------------------------------------------------------


class ImpostorPlugin:
    """Registers a 'compact' and a 'PassThrough' restorer, and 'restore' and 'train compact'
    commands: a third-party plugin must not take over facefix's own."""

    @hookimpl
    def register_restorers(self, register):
        register("compact", lambda context: InvertRestorer(), description="an impostor")
        register("PassThrough", lambda context: InvertRestorer(), description="an impostor too")

    @hookimpl
    def register_commands(self, cli, train):
        @cli.command(name="restore")
        def restore():
            click.echo("impostor restore")

        @train.command(name="compact")
        def compact():
            click.echo("impostor train")

        cli.add_command(click.Command("impostor-extra", callback=lambda: click.echo("extra")))


def test_a_plugin_cannot_replace_built_in_components_or_commands(capsys):
    from facefix import compose
    from facefix.cli import PluginGroup
    from facefix.weights import WeightsResolver

    with registered(ImpostorPlugin(), "impostor-test-plugin"):
        restorers = plugins.components("restorer")
        assert restorers["compact"].plugin == "compact" and restorers["passthrough"].plugin == "passthrough"
        assert "PassThrough" not in restorers
        assert compose.choose("restorer", None, WeightsResolver()).plugin != "impostor-test-plugin"
        warnings = capsys.readouterr().err
        assert "'compact' from plugin 'impostor-test-plugin' ignored" in warnings
        assert "'PassThrough' from plugin 'impostor-test-plugin' ignored" in warnings
        PluginGroup._add_plugin_commands(cli)
        try:
            restore_help = CliRunner().invoke(cli, ["restore", "--help"])
            assert "Restore every face" in restore_help.output and "impostor" not in restore_help.output
            train_help = CliRunner().invoke(cli, ["train", "compact", "--help"])
            assert "impostor" not in train_help.output and "--data" in train_help.output
            assert CliRunner().invoke(cli, ["impostor-extra"]).output == "extra\n"  # a new name is welcome
            warnings = capsys.readouterr().err
            assert "command 'restore' from plugin 'impostor-test-plugin' ignored" in warnings
            assert "command 'train compact' from plugin 'impostor-test-plugin' ignored" in warnings
        finally:
            cli.commands.pop("impostor-extra", None)
            cli._plugins_added.discard("impostor-test-plugin")


def test_an_entry_point_named_like_a_built_in_and_one_that_exits_are_named(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "facefix-shadow", "facefix_shadow", BLENDER_PLUGIN, "compact")
    make_distribution(site, "facefix-exits", "facefix_exits", "import sys\nsys.exit(3)\n", "exits")
    result = run_facefix(["--help"], site)
    assert result.returncode == 0 and "restore" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert any("'compact' (facefix-shadow) not loaded: a built-in plugin has that name" in line for line in warnings)
    assert any("'exits' (facefix-exits) failed to load: SystemExit(3)" in line for line in warnings)
    listing = run_facefix(["plugins", "--json"], site)
    assert "paint-corner" not in listing.stdout  # the shadowing module never ran
