"""Restoring the faces of a video, streamed through ffmpeg.

* :mod:`~facefix.video.ffmpeg`: finding ffmpeg, starting it, probing inputs;
* :mod:`~facefix.video.info`: what a stream is, parsed from ffmpeg's header;
* :mod:`~facefix.video.commands`: the ffmpeg command lines, built by pure functions;
* :mod:`~facefix.video.matroska`: the timestamped raw-video stream to the encoder;
* :mod:`~facefix.video.pipes`: the decoder and encoder processes;
* :mod:`~facefix.video.tracking`: face tracks and landmark smoothing across frames;
* :mod:`~facefix.video.restorer`: the threaded run that joins them.
"""
