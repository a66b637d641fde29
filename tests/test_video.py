"""`facefix video` with real ffmpeg (imageio-ffmpeg's binary), real detector weights, short
synthetic clips made with ffmpeg's lavfi sources, and one real clip from ../shared/videos."""

from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facefix.cli import cli
from facefix.cli.video import default_output
from facefix.errors import FacefixError, InputError
from facefix.video import ffmpeg as ffmpeg_module
from facefix.video import pipes
from facefix.video.commands import (
    EncodeSettings,
    audio_codecs,
    check_codec,
    decode_args,
    encode_args,
    output_container,
    output_size,
    parse_time,
    video_codec_options,
)
from facefix.video.ffmpeg import FFMPEG_MISSING, MIN_FFMPEG_MAJOR, _bundled_ffmpeg, ffmpeg_version, find_ffmpeg, probe
from facefix.video.info import VideoInfo, parse_input_header
from facefix.video.matroska import matroska_frame, matroska_header
from conftest import psnr, shared_path

FFMPEG = find_ffmpeg()  # the ffmpeg under test (FACEFIX_FFMPEG picks one: .ci/run tests Debian's too)
# what makes the test clips: -display_rotation needs ffmpeg 6, which the one under test may not be
MAKER = FFMPEG if (ffmpeg_version(FFMPEG) or (MIN_FFMPEG_MAJOR,)) >= (MIN_FFMPEG_MAJOR,) else _bundled_ffmpeg()
OLD_FFMPEG = MAKER != FFMPEG


def ffmpeg(*args: object) -> None:
    subprocess.run([MAKER, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *map(str, args)], check=True)


def header(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True).stderr


def packets(path: Path, stream: str = "v:0") -> list[tuple[int, int]]:
    """(pts, duration) of a stream's packets in presentation order, in its time base."""
    out = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(path), "-map", f"0:{stream}", "-c", "copy",
                          "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.splitlines() if line and not line.startswith("#")]
    return sorted((int(row[2]), int(row[3])) for row in rows)


def frames(path: Path):
    """Upright decoded frames, one at a time."""
    info = probe(path, FFMPEG)
    width, height = info.display_size
    process = subprocess.Popen([FFMPEG, "-v", "error", "-nostdin", "-i", str(path), "-map", "0:V:0", "-f", "rawvideo",
                                "-pix_fmt", "bgr24", "-fps_mode", "passthrough", "-"], stdout=subprocess.PIPE)
    size = width * height * 3
    while True:
        data = process.stdout.read(size)
        if len(data) < size:
            break
        yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
    process.wait()


def frame_psnrs(a: Path, b: Path) -> list[float]:
    return [psnr(x, y) for x, y in zip(frames(a), frames(b))]


def video(*args: object):
    return CliRunner().invoke(cli, ["video", *map(str, args)], catch_exceptions=False)


def passthrough(shared_weights: Path) -> list[str]:
    return ["--restorer", "passthrough", "--model-dir", str(shared_weights), "--detector", "retinaface_mobile0.25"]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".part"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Two-second lavfi clips: NTSC rate with two audio streams (AAC and MP3), the
    same with rotation metadata, and a panning crop of a real photo (one face)."""
    folder = tmp_path_factory.mktemp("clips")
    ntsc = folder / "ntsc.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30000/1001", "-f", "lavfi",
           "-i", "sine=frequency=440:sample_rate=48000", "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100",
           "-t", 2, "-map", 0, "-map", 1, "-map", 2, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
           "-c:a:0", "aac", "-c:a:1", "libmp3lame", ntsc)
    rotated = folder / "rotated.mp4"
    ffmpeg("-display_rotation", 90, "-i", ntsc, "-map", 0, "-c", "copy", rotated)
    face = folder / "face.mp4"
    photo = shared_path("photos", "astronaut.png")
    ffmpeg("-loop", 1, "-framerate", 25, "-i", photo, "-f", "lavfi", "-i", "sine=frequency=330",
           "-vf", "crop=320:256:x='60+40*t':y='20+10*t'", "-t", 1, "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", face)
    return {"ntsc": ntsc, "rotated": rotated, "face": face}


# -- pure functions -----------------------------------------------------------------------


def test_decode_command_seeks_before_the_input_and_passes_every_frame_through():
    args = decode_args("ffmpeg", Path("in.mp4"), start=1.5, end=3.0)
    assert args[:3] == ["ffmpeg", "-hide_banner", "-nostdin"]
    assert args.index("-ss") < args.index("-i") and args.index("-to") < args.index("-i")
    assert args[args.index("-ss") + 1] == "1.5" and args[args.index("-to") + 1] == "3.0"
    assert "[0:V:0]showinfo=checksum=0[s0]" in args  # V: not a cover picture
    for option, value in (("-f", "rawvideo"), ("-pix_fmt", "bgr24"), ("-fps_mode", "passthrough")):
        assert args[args.index(option) + 1] == value
    assert args[-1] == "pipe:1"
    assert "-ss" not in decode_args("ffmpeg", Path("in.mp4"))


def info(**fields) -> VideoInfo:
    base = dict(path=Path("in.mov"), container="mov", codec="h264", width=1920, height=1080, audio=("aac", "pcm_s24le"))
    return VideoInfo(**{**base, **fields})


def test_encode_command_keeps_timing_rotation_audio_and_colour():
    args = encode_args("ffmpeg", Path("in.mov"), Path("out.tmp"), info(rotation=90, color_space="bt709",
                       color_primaries="bt709", color_trc="bt709", color_range="tv", sar=(4, 3)),
                       EncodeSettings(), container="mp4", first_time=0.0333, time_base=Fraction(1, 15360),
                       start=2.0, end=4.0)

    def value(option: str) -> str:
        return args[args.index(option) + 1]

    pipe = args.index("pipe:0")
    assert args[pipe - 1] == "-i" and value("-f") == "matroska" and args.index("-f") < pipe
    assert value("-itsoffset") == "0.033300" and value("-display_rotation") == "90"
    assert "-noautorotate" in args[:pipe]  # frames are stored as in the input; the metadata turns them
    source = args.index("in.mov")
    assert args[source - 1] == "-i" and value("-ss") == "2.0" and value("-to") == "4.0" and args.index("-ss") > pipe
    graph = value("-filter_complex")
    assert graph.startswith("[0:v:0]setsar=4/3[s0];[s0]setparams=") and graph.endswith("[s1]")
    assert "color_primaries=bt709" in graph and "color_trc=bt709" in graph  # on the frames: ffmpeg 7+ reads them
    assert args[args.index("-map") + 1] == "[s1]"
    assert [args[i + 1] for i, a in enumerate(args) if a == "-map"][1:] == ["1:a:0", "1:a:1"]
    assert value("-c:a:0") == "copy" and value("-c:a:1") == "aac"  # mp4 can't hold 24-bit PCM
    assert value("-c:v") == "libx264" and value("-crf") == "18" and value("-pix_fmt") == "yuv420p"
    assert value("-fps_mode") == "passthrough" and value("-enc_time_base:v") == "1/15360"
    assert value("-video_track_timescale") == "15360"
    assert value("-colorspace") == "bt709" and value("-color_range") == "tv"
    assert value("-map_metadata") == "1" and value("-movflags") == "+faststart"
    assert args[-2:] == ["out.tmp", "-y"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "-f"] == ["matroska", "mp4"]

    bare = encode_args("ffmpeg", Path("in.mp4"), Path("out.mkv"), info(audio=(), rotation=0),
                       EncodeSettings(codec="libx265", crf=23, preset="fast", pix_fmt="yuv444p"), container="matroska")
    assert "in.mp4" not in bare and "-map_metadata" not in bare and "-itsoffset" not in bare
    assert "-video_track_timescale" not in bare and "-movflags" not in bare and "-display_rotation" not in bare
    assert bare[bare.index("-crf") + 1] == "23" and bare[bare.index("-preset") + 1] == "fast"
    assert bare[bare.index("-pix_fmt") + 1] == "yuv444p"
    # an RGB input's "gbr" matrix and full range describe RGB samples: not copied onto YUV
    rgb = encode_args("ffmpeg", Path("in.mov"), Path("out.mp4"), info(audio=(), pix_fmt="gbrp", color_space="gbr",
                                                                   color_range="pc", color_primaries="bt709"),
                      EncodeSettings(), container="mp4")
    assert "-colorspace" not in rgb and "-color_range" not in rgb and rgb[rgb.index("-color_primaries") + 1] == "bt709"


@pytest.mark.parametrize("coding", [("-c:v", "libx264rgb"), ("-c:v", "png"), ("-c:v", "ffv1", "-pix_fmt", "bgr0")])
def test_rgb_coded_videos_encode(coding, tmp_path, shared_weights):
    """x264rgb, PNG-in-MOV, FFV1 bgr0: "encoding failed (Invalid argument)", the input's
    "gbr" matrix copied onto the yuv420p output."""
    clip = tmp_path / "rgb.mov"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25", "-frames:v", 8, *coding, clip)
    result = video(clip, tmp_path / "out.mp4", *passthrough(shared_weights), "--quiet")
    assert result.exit_code == 0, result.output
    assert probe(tmp_path / "out.mp4", FFMPEG).pix_fmt == "yuv420p"
    assert min(frame_psnrs(clip, tmp_path / "out.mp4")) > 20  # the same pictures, chroma subsampled


def test_colour_tags_are_kept(tmp_path, shared_weights):
    """A 29.97 fps clip's primaries and transfer came out "unknown": recent ffmpeg writes the
    piped frames' own tags over -color_primaries."""
    clip = tmp_path / "tagged.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30000/1001", "-frames:v", 8, "-vf",
           "setparams=color_primaries=smpte170m:color_trc=bt709:colorspace=smpte170m:range=tv", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", clip)
    source = probe(clip, FFMPEG)
    assert (source.color_primaries, source.color_trc, source.color_space) == ("smpte170m", "bt709", "smpte170m")
    result = video(clip, tmp_path / "out.mp4", *passthrough(shared_weights), "--quiet")
    assert result.exit_code == 0, result.output
    written = probe(tmp_path / "out.mp4", FFMPEG)
    assert (written.color_range, written.color_space, written.color_primaries, written.color_trc) == (
        "tv", "smpte170m", "smpte170m", "bt709")


def test_codec_container_and_size_rules():
    assert audio_codecs("mp4", ["aac", "mp3", "pcm_s16le", "vorbis"]) == ["copy", "copy", "aac", "aac"]
    assert audio_codecs("matroska", ["pcm_s24le", "dts"]) == ["copy", "copy"]
    assert audio_codecs("webm", ["opus", "aac"]) == ["copy", "libopus"]
    assert video_codec_options("libvpx-vp9", None, None) == {"c:v": "libvpx-vp9", "crf": "24", "b:v": 0}
    assert video_codec_options("h264_nvenc", 21, "p5") == {"c:v": "h264_nvenc", "rc": "vbr", "cq": "21",
                                                           "preset": "p5"}
    assert video_codec_options("mpeg4", None, None) == {"c:v": "mpeg4"}
    assert output_container(Path("a.MP4")) == "mp4" and output_container(Path("a.mkv")) == "matroska"
    with pytest.raises(FacefixError, match="unsupported output type '.gif'"):
        output_container(Path("a.gif"))
    with pytest.raises(FacefixError, match="WebM holds VP8, VP9 or AV1"):
        check_codec("webm", "libx264")
    assert output_size(701, 501, 1.0, "yuv420p") == (700, 500)  # 4:2:0 needs even sizes
    assert output_size(701, 501, 1.0, "yuv444p") == (701, 501)
    assert output_size(700, 700, 1.5, "yuv420p") == (1050, 1050)
    assert parse_time("12.5") == 12.5 and parse_time("1:02.5") == 62.5 and parse_time("1:00:01") == 3601
    assert parse_time(None) is None
    for bad in ("-1", "abc", "1::2", "1:2:3:4"):
        with pytest.raises(ValueError):
            parse_time(bad)
    assert default_output(Path("clips/a.mov")) == Path("clips/a_restored.mov")
    assert default_output(Path("a.gif")) == Path("a_restored.mp4")


HEADER = """Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'phone.mov':
  Duration: 00:01:02.50, start: 0.000000, bitrate: 17000 kb/s
  Stream #0:0[0x1](und): Video: hevc (Main 10) (hvc1 / 0x31637668), yuv420p10le(tv, bt2020nc/bt2020/arib-std-b67), \
3840x2160 [SAR 1:1 DAR 16:9], 16000 kb/s, 29.97 fps, 29.97 tbr, 600 tbn (default)
    Side data:
      displaymatrix: rotation of -90.00 degrees
  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 256 kb/s (default)
  Stream #0:2[0x3](eng): Audio: ac3, 48000 Hz, 5.1(side), fltp, 384 kb/s
  Stream #0:3[0x4](und): Data: none (mebx / 0x7862656D), 0 kb/s (default)
"""


def test_stream_information_is_read_from_ffmpegs_own_header():
    parsed = parse_input_header(HEADER, Path("phone.mov"))
    assert (parsed.codec, parsed.width, parsed.height, parsed.fps) == ("hevc", 3840, 2160, "29.97")
    assert parsed.rotation == 270 and parsed.display_size == (2160, 3840)
    assert parsed.pix_fmt == "yuv420p10le" and parsed.color_range == "tv"
    assert (parsed.color_space, parsed.color_primaries, parsed.color_trc) == ("bt2020nc", "bt2020", "arib-std-b67")
    assert parsed.sar == (1, 1) and parsed.duration == pytest.approx(62.5)
    assert parsed.audio == ("aac", "ac3") and parsed.container == "mov,mp4,m4a,3gp,3g2,mj2"

    cover = """Input #0, mp3, from 'song.mp3':
  Duration: 00:03:00.00, start: 0.025057, bitrate: 320 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 320 kb/s
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 600x600, 90k tbr, 90k tbn (attached pic)
"""
    with pytest.raises(InputError, match="no video stream \\(audio only\\)"):
        parse_input_header(cover, Path("song.mp3"))
    with pytest.raises(InputError, match="not a video file ffmpeg can read \\(Invalid data found"):
        parse_input_header("[in#0 @ 0x55] Error opening input: Invalid data found when processing input\n"
                           "Error opening input files: Invalid data found when processing input\n", Path("x.mp4"))


def test_matroska_stream_carries_frames_and_exact_timestamps(tmp_path):
    width, height = 48, 32
    times_us = [0, 33367, 100100, 133467, 233567]  # variable gaps
    pictures = [np.full((height, width, 3), (10 * i, 255 - 20 * i, 7 * i), np.uint8) for i in range(len(times_us))]
    stream = matroska_header(width, height)
    for index, (t, picture) in enumerate(zip(times_us, pictures)):
        duration = (times_us[index + 1] if index + 1 < len(times_us) else t + 33367) - t
        before, after = matroska_frame(t, duration, picture.nbytes)
        stream += before + picture.tobytes() + after
    (tmp_path / "stream.mkv").write_bytes(stream)
    decoded = subprocess.run([FFMPEG, "-v", "error", "-i", str(tmp_path / "stream.mkv"), "-f", "rawvideo",
                              "-pix_fmt", "bgr24", "-fps_mode", "passthrough", "-"], capture_output=True,
                             check=True).stdout
    assert np.array_equal(np.frombuffer(decoded, np.uint8).reshape(-1, height, width, 3), np.stack(pictures))
    got = packets(tmp_path / "stream.mkv")
    # Matroska time base is 1/1000 s at ffmpeg's default; our stream uses microseconds
    assert [pts for pts, _ in got] == times_us


# -- end to end on synthetic clips -------------------------------------------------------------


def test_ntsc_rate_frames_timestamps_and_both_audio_streams_are_kept(clips, tmp_path, shared_weights):
    out = tmp_path / "out.mp4"
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet", "--preset", "ultrafast")
    assert result.exit_code == 0, result.output
    assert "60 frames" in result.output
    before, after = header(clips["ntsc"]), header(out)
    assert "29.97 fps" in after and "30k tbn" in after
    assert packets(out) == packets(clips["ntsc"])  # every frame, at its own timestamp (1001/30000 s apart)
    assert [line.split("Audio: ")[1].split()[0] for line in after.splitlines() if "Audio:" in line] == ["aac", "mp3"]
    for index in (0, 1):  # copied, not re-encoded: the same packets
        assert packets(out, f"a:{index}") == packets(clips["ntsc"], f"a:{index}")
    assert re.search(r"Duration: 00:00:02\.0\d", after) and re.search(r"Duration: 00:00:02\.0\d", before)
    assert min(frame_psnrs(clips["ntsc"], out)) > 35


def test_rotation_metadata_is_kept_and_upscale_applies_to_the_stored_frame(clips, tmp_path, shared_weights):
    out = tmp_path / "rotated.mkv"
    result = video(clips["rotated"], "-o", out, *passthrough(shared_weights), "--quiet", "--upscale", 1.5,
                   "--preset", "ultrafast")
    if OLD_FFMPEG:  # it can't write the rotation back: one line saying so, and nothing written
        assert result.exit_code == 1 and "keeping this video's rotation needs ffmpeg 6 or later" in result.output
        assert not out.exists()
        return
    assert result.exit_code == 0, result.output
    written = probe(out, FFMPEG)
    assert written.rotation == 90 and (written.width, written.height) == (480, 360)
    assert written.display_size == (360, 480)
    import cv2

    for original, restored in zip(frames(clips["rotated"]), frames(out)):
        enlarged = cv2.resize(original, (360, 480), interpolation=cv2.INTER_LANCZOS4)
        assert restored.shape == (480, 360, 3)
        assert psnr(enlarged, restored) > 25  # upright (a frame turned twice or flipped scores ~10 dB)


def test_start_and_end_cut_video_and_audio_together(clips, tmp_path, shared_weights):
    out = tmp_path / "cut.mp4"
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet", "--start", "0.5",
                   "--end", "0:01.5", "--preset", "ultrafast")
    assert result.exit_code == 0, result.output
    assert len(packets(out)) in (29, 30, 31)  # 1 s at 29.97 fps
    audio = subprocess.run([FFMPEG, "-hide_banner", "-nostdin", "-i", str(out), "-map", "0:a:0", "-f", "null", "-"],
                           capture_output=True, text=True).stderr
    seconds = float(re.findall(r"time=00:00:(\d+\.\d+)", audio)[-1])
    assert 0.95 < seconds < 1.1
    result = video(clips["ntsc"], "-o", tmp_path / "none.mp4", *passthrough(shared_weights), "--quiet",
                   "--start", 5)
    assert result.exit_code == 1 and "no video frames between --start and --end" in result.output
    result = video(clips["ntsc"], "-o", tmp_path / "none.mp4", "--start", 1, "--end", "0.5")
    assert result.exit_code == 1 and "--end (0.5) must be after --start (1)" in result.output


def test_a_face_is_tracked_restored_and_pasted_back(clips, tmp_path, shared_weights):
    out = tmp_path / "face.mp4"
    result = video(clips["face"], "-o", out, *passthrough(shared_weights), "--quiet", "--detect-every", 3)
    assert result.exit_code == 0, result.output
    assert "25 frames, 25 faces restored (1 face track)" in result.output
    assert min(frame_psnrs(clips["face"], out)) > 35
    again = tmp_path / "again.mp4"
    assert video(clips["face"], "-o", again, *passthrough(shared_weights), "--quiet", "--detect-every", 3).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # deterministic, threads and batches notwithstanding


def test_output_appears_under_its_name_only_when_complete(clips, tmp_path, shared_weights, monkeypatch):
    out = tmp_path / "out.mp4"
    real_write = pipes.FrameWriter.write
    seen = {}

    def write(self, pixels, time_us, duration_us):
        if self.frames == 10:
            seen["final"] = out.exists()
            seen["temporary"] = leftovers(tmp_path)
            raise KeyboardInterrupt  # as Ctrl-C would, mid-run
        real_write(self, pixels, time_us, duration_us)

    monkeypatch.setattr(pipes.FrameWriter, "write", write)
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet")
    assert result.exit_code == 130
    assert result.output.strip().splitlines() == [f"Error: {clips['ntsc']}: interrupted; {out} was not written"]
    assert seen["final"] is False and len(seen["temporary"]) == 1
    assert not out.exists() and leftovers(tmp_path) == []

    def crash(self, pixels, time_us, duration_us):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipes.FrameWriter, "write", crash)
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {clips['ntsc']}: RuntimeError: disk on fire"]
    assert not out.exists() and leftovers(tmp_path) == []

    monkeypatch.undo()  # an encoder that can't start fails the same way
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet", "--codec", "no-such-codec")
    assert result.exit_code == 1 and result.output.startswith(f"Error: {out}: encoding failed (")
    assert not out.exists() and leftovers(tmp_path) == []


def test_the_input_is_never_overwritten(clips, tmp_path):
    copy = tmp_path / "clip.mp4"
    copy.write_bytes(clips["ntsc"].read_bytes())
    result = video(copy, "-o", tmp_path / "." / "clip.mp4")
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: {tmp_path / '.' / 'clip.mp4'}: the output would overwrite the input; " \
                                    "choose another -o"
    assert copy.read_bytes() == clips["ntsc"].read_bytes()


def test_bad_inputs_get_one_clear_error(tmp_path, shared_weights):
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    sound = tmp_path / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine", "-t", 1, "-c:a", "aac", sound)
    frameless = tmp_path / "frameless.mkv"  # a video track, then one Cluster with no frames in it
    frameless.write_bytes(matroska_header(64, 48) + bytes.fromhex("1f43b675 83 e78100"))
    cases = {
        text: "not a video file ffmpeg can read (Invalid data found when processing input)",
        empty: "empty file (0 bytes)",
        sound: "no video stream (audio only)",
        frameless: "the video stream has no frames",
        tmp_path / "missing.mp4": "not found",
    }
    for path, reason in cases.items():
        result = video(path, "-o", tmp_path / "out.mp4", *passthrough(shared_weights))
        assert result.exit_code == 1, path
        assert result.output.strip().splitlines() == [f"Error: {path}: {reason}"], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mp4", "frameless.mkv", "notes.mp4", "sound.m4a"]


def test_missing_ffmpeg_is_one_clear_error(clips, tmp_path, monkeypatch):
    import imageio_ffmpeg

    def no_binary():
        raise RuntimeError("No ffmpeg exe could be found")

    monkeypatch.setenv("FACEFIX_FFMPEG", str(tmp_path / "ffmpeg-7"))
    result = video(clips["ntsc"], "-o", tmp_path / "out.mp4")  # a chosen ffmpeg that isn't there
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        f"Error: FACEFIX_FFMPEG={tmp_path / 'ffmpeg-7'}: no such ffmpeg (not an executable file, nor on PATH)"]
    monkeypatch.delenv("FACEFIX_FFMPEG")
    monkeypatch.setattr(ffmpeg_module.shutil, "which", lambda name: None)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", no_binary)
    result = video(clips["ntsc"], "-o", tmp_path / "out.mp4")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {FFMPEG_MISSING}"]


# -- a real clip -------------------------------------------------------------------------------


def test_real_clip_end_to_end(tmp_path, shared_weights):
    """A real, variable-frame-rate clip (frames 1/15 or 1/30 s apart) with AAC audio."""
    clip = shared_path("videos", "videoretalking__face_1.mp4")
    out = tmp_path / "face_1.mp4"
    result = video(clip, "-o", out, *passthrough(shared_weights), "--quiet")
    assert result.exit_code == 0, result.output
    assert "135 frames, 135 faces restored (1 face track)" in result.output
    assert [pts for pts, _ in packets(out)] == [pts for pts, _ in packets(clip)]  # count and timing, exactly
    before, after = probe(clip, FFMPEG), probe(out, FFMPEG)
    assert (after.width, after.height, after.audio) == (before.width, before.height, ("aac",))
    assert packets(out, "a:0") == packets(clip, "a:0")
    assert abs(after.duration - before.duration) <= 1 / 15  # one frame
    psnrs = frame_psnrs(clip, out)
    assert len(psnrs) == 135 and min(psnrs) >= 35


def test_the_background_upsampler_enlarges_video_frames(clips, tmp_path, shared_weights):
    import cv2

    from facefix import compose, plugins
    from facefix.weights import WeightsResolver

    out = tmp_path / "upsampled.mp4"
    result = video(clips["ntsc"], "-o", out, *passthrough(shared_weights), "--quiet", "--upscale", 2,
                   "--bg-upsampler", "realesr-animevideov3", "--end", "0.2", "--preset", "ultrafast", "--crf", 12)
    assert result.exit_code == 0, result.output
    upsampler = compose.build(plugins.get_component("upsampler", "realesr-animevideov3"), device="cpu",
                              resolver=WeightsResolver(model_dir=shared_weights, allow_download=False))
    count = 0
    for original, restored in zip(frames(clips["ntsc"]), frames(out)):
        assert restored.shape == (480, 640, 3)
        expected = cv2.resize(upsampler.upscale(original), (640, 480), interpolation=cv2.INTER_AREA)
        lanczos = cv2.resize(original, (640, 480), interpolation=cv2.INTER_LANCZOS4)
        assert psnr(expected, restored) > psnr(lanczos, restored) + 3  # the network's background, not Lanczos
        count += 1
    assert count >= 5
