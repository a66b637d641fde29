"""The smallest Matroska stream ffmpeg reads as timestamped raw video.

Frames go to the encoder in it so that each keeps its own timestamp: a raw pipe
would make every frame last ``1/fps``.
"""

from __future__ import annotations

import struct

# The smallest Matroska that ffmpeg reads as timestamped raw video: an EBML header, a
# Segment of unknown size (it is a stream), one V_UNCOMPRESSED BGR24 track, then one
# Cluster per frame holding a Block and its duration. Timestamps are microseconds.


def _ebml_size(size: int) -> bytes:
    for length in range(1, 9):
        if size < (1 << (7 * length)) - 1:  # all-ones is reserved for "unknown"
            return (size | (1 << (7 * length))).to_bytes(length, "big")
    raise ValueError(f"EBML element too large: {size} bytes")


def _element(element_id: bytes, payload: bytes) -> bytes:
    return element_id + _ebml_size(len(payload)) + payload


def _uint(element_id: bytes, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _text(element_id: bytes, value: str) -> bytes:
    return _element(element_id, value.encode("utf-8"))


def matroska_header(width: int, height: int) -> bytes:
    """Stream header for ``width`` x ``height`` BGR24 frames with microsecond timestamps."""
    ebml = _element(b"\x1a\x45\xdf\xa3", b"".join([
        _uint(b"\x42\x86", 1), _uint(b"\x42\xf7", 1), _uint(b"\x42\xf2", 4), _uint(b"\x42\xf3", 8),
        _text(b"\x42\x82", "matroska"), _uint(b"\x42\x87", 4), _uint(b"\x42\x85", 2),
    ]))
    segment = b"\x18\x53\x80\x67" + b"\x01\xff\xff\xff\xff\xff\xff\xff"  # unknown size
    info = _element(b"\x15\x49\xa9\x66", _uint(b"\x2a\xd7\xb1", 1000) + _text(b"\x4d\x80", "facefix")
                    + _text(b"\x57\x41", "facefix"))
    video = _element(b"\xe0", _uint(b"\xb0", width) + _uint(b"\xba", height) + _element(b"\x2e\xb5\x24", b"BGR\x18"))
    track = _element(b"\xae", _uint(b"\xd7", 1) + _uint(b"\x73\xc5", 1) + _uint(b"\x83", 1)
                     + _text(b"\x22\xb5\x9c", "und")  # Matroska's default language is English
                     + _text(b"\x86", "V_UNCOMPRESSED") + video)
    return ebml + segment + info + _element(b"\x16\x54\xae\x6b", track)


def matroska_frame(timestamp_us: int, duration_us: int, frame_bytes: int) -> tuple[bytes, bytes]:
    """The bytes that go before and after one frame's pixels: a Cluster at
    ``timestamp_us`` holding a BlockGroup (the Block, then the frame's duration)."""
    block_head = b"\x81" + struct.pack(">h", 0) + b"\x00"  # track 1, no offset, no flags
    block_size = len(block_head) + frame_bytes
    duration = _uint(b"\x9b", max(0, duration_us))
    block = b"\xa1" + _ebml_size(block_size)
    group_size = len(block) + block_size + len(duration)
    timestamp = _uint(b"\xe7", max(0, timestamp_us))
    group = b"\xa0" + _ebml_size(group_size)
    cluster_size = len(timestamp) + len(group) + group_size
    before = b"\x1f\x43\xb6\x75" + _ebml_size(cluster_size) + timestamp + group + block + block_head
    return before, duration
