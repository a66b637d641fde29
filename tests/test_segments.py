"""Cutting a video into segments and joining them: pure functions, no process started."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from facefix.video.commands import EncodeSettings, encode_args
from facefix.video.info import VideoInfo
from facefix.video.segments import concat_list, join_args, keyframe_plan, plan_segments

FPS = 25
TIMES = [n / FPS for n in range(250)]  # 10 s at 25 fps
KEYS = [n / FPS for n in range(0, 250, 25)]  # a keyframe every second


def test_keyframes_follow_the_input_thinned_to_one_a_second():
    assert keyframe_plan(TIMES, KEYS) == list(range(0, 250, 25))
    every_frame = keyframe_plan(TIMES, TIMES)  # all-intra input: not every output frame a keyframe
    assert every_frame == list(range(0, 250, 25))
    assert keyframe_plan(TIMES, [0.0]) == [0]
    assert keyframe_plan(TIMES, [3.3]) == [0]  # not a frame of the run: ignored


def test_segments_start_at_planned_keyframes_with_warm_up_frames_before():
    segments = plan_segments(TIMES, KEYS, segment_seconds=3, overlap=10)
    assert [s.first_frame for s in segments] == [0, 75, 150]
    assert sum(s.frames for s in segments) == 250
    assert [s.warmup for s in segments] == [0, 10, 10]
    # the decoder starts between the frame before the first warm-up frame and that frame
    assert segments[1].decode_start == (TIMES[64] + TIMES[65]) / 2
    assert segments[0].decode_start is None and segments[-1].decode_end is None
    assert segments[0].decode_end > TIMES[74]  # reaches past the last frame; the count stops it
    assert segments[0].duration == TIMES[75] - TIMES[0] and segments[-1].duration is None


def test_a_short_tail_joins_the_last_segment_and_the_runs_own_span_is_kept():
    segments = plan_segments(TIMES, KEYS, segment_seconds=4, overlap=0, run_start=0.0, run_end=10.0)
    assert [s.first_frame for s in segments] == [0, 100]  # 8 s -> 10 s is only 2 s: no third segment
    assert segments[0].decode_start == 0.0 and segments[-1].decode_end == 10.0
    one = plan_segments(TIMES, [0.0], segment_seconds=1)  # no keyframe to cut at: one segment
    assert len(one) == 1 and one[0].frames == 250


def test_concat_script_lists_each_file_with_its_length(tmp_path):
    segments = plan_segments(TIMES, KEYS, segment_seconds=5, overlap=0)
    files = [tmp_path / "a b.mp4", tmp_path / "it's.mp4"]
    script = concat_list(files, segments)
    lines = script.splitlines()
    assert lines[0] == "ffconcat version 1.0"
    assert lines[1] == f"file '{files[0].resolve()}'" and lines[2] == "duration 5.000000"
    assert lines[3] == f"file '{str(files[1].resolve())}'".replace("'s", "'\\''s")
    assert len(lines) == 4  # the last file lasts as long as it lasts


def test_join_copies_video_and_adds_audio_rotation_and_timing():
    info = VideoInfo(path=Path("in.mp4"), container="mov", codec="h264", width=640, height=360, rotation=90,
                     audio=("aac", "mp3"))
    args = join_args("ffmpeg", Path("list.ffconcat"), Path("in.mp4"), Path("out.mp4"), info, container="mp4",
                     first_time=0.04, time_base=Fraction(1, 12800), start=1.0, end=3.0)
    joined = " ".join(args)
    concat = args[: args.index("list.ffconcat")]
    for option, value in (("-f", "concat"), ("-safe", "0"), ("-itsoffset", "0.040000"), ("-display_rotation", "90")):
        assert concat[concat.index(option) + 1] == value
    assert args[args.index("-c:v") + 1] == "copy"
    assert "-ss 1.0 -to 3.0 -i in.mp4" in joined  # the audio is cut as the one-run encoder cuts it
    assert args[args.index("-c:a:0") + 1] == "copy" and args[args.index("-video_track_timescale") + 1] == "12800"
    assert "-crf" not in args and "-pix_fmt" not in args  # nothing is encoded again


def test_encoder_keyframes_are_forced_by_frame_number():
    info = VideoInfo(path=Path("in.mp4"), container="mov", codec="h264", width=64, height=64)
    args = encode_args("ffmpeg", Path("in.mp4"), Path("out.mp4"), info, EncodeSettings(), container="mp4",
                       keyframes=(0, 25, 50))
    assert args[args.index("-force_key_frames") + 1] == "expr:eq(n,25)+eq(n,50)"
    plain = encode_args("ffmpeg", Path("in.mp4"), Path("out.mp4"), info, EncodeSettings(), container="mp4",
                        keyframes=(0,))
    assert "-force_key_frames" not in plain
