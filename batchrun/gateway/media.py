"""The files the built-in gateway answers with: tiny, deterministic, with true magic numbers.

``png`` draws a small solid image in a colour derived from a seed;
``wav`` writes PCM audio (with the stdlib ``wave`` module) whose length
follows its text, and keeps the text in a RIFF ``LIST/INFO/ICMT`` chunk,
which ``spoken_text`` reads back, so speech made here transcribes to what
was said; ``audio`` gives the other formats' magic numbers; ``mp4`` is an
MPEG-4 ``ftyp`` box and a ``mdat`` naming its task.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import wave
import zlib

SAMPLE_RATE = 8000
SECONDS_PER_WORD = 0.04


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(seed: str, size: int = 8) -> bytes:
    """A ``size`` x ``size`` RGB PNG in a colour chosen by ``seed``."""
    red, green, blue = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((red, green, blue)) * size
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(row * size))
        + _chunk(b"IEND", b"")
    )


def wav(text: str, seconds: float | None = None) -> bytes:
    """Mono 16-bit PCM of a soft tone, ``SECONDS_PER_WORD`` a word; ``text`` in an ICMT chunk."""
    length = seconds if seconds is not None else max(0.1, SECONDS_PER_WORD * len(text.split()))
    frames = int(SAMPLE_RATE * length)
    samples = b"".join(
        struct.pack("<h", int(800 * math.sin(2 * math.pi * 440 * i / SAMPLE_RATE)))
        for i in range(frames)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples)
    data = buffer.getvalue()
    comment = text.encode() + b"\x00"
    if len(comment) % 2:
        comment += b"\x00"
    info = b"INFO" + b"ICMT" + struct.pack("<I", len(comment)) + comment
    listed = b"LIST" + struct.pack("<I", len(info)) + info
    body = data[12:] + listed
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def spoken_text(data: bytes) -> str | None:
    """The text a WAV made by ``wav`` keeps in its ICMT chunk, or None."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset = 12
    while offset + 8 <= len(data):
        kind, size = (
            data[offset : offset + 4],
            struct.unpack("<I", data[offset + 4 : offset + 8])[0],
        )
        if kind == b"LIST" and data[offset + 8 : offset + 12] == b"INFO":
            inner = offset + 12
            while inner + 8 <= offset + 8 + size:
                sub, length = (
                    data[inner : inner + 4],
                    struct.unpack("<I", data[inner + 4 : inner + 8])[0],
                )
                if sub == b"ICMT":
                    return (
                        data[inner + 8 : inner + 8 + length]
                        .rstrip(b"\x00")
                        .decode("utf-8", "replace")
                    )
                inner += 8 + length + (length & 1)
        offset += 8 + size + (size & 1)
    return None


# The first bytes of each audio format the speech API offers, then filler.
_AUDIO_HEADS = {
    "mp3": (b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00", "audio/mpeg"),
    "opus": (b"OggS\x00\x02" + b"\x00" * 20, "audio/ogg"),
    "flac": (b"fLaC\x00\x00\x00\x22", "audio/flac"),
    "aac": (b"\xff\xf1\x50\x80\x02\x1f\xfc", "audio/aac"),
}


def audio(text: str, response_format: str) -> tuple[bytes, str]:
    """Speech of ``text`` in ``response_format``: its bytes and Content-Type."""
    if response_format == "wav" or response_format not in _AUDIO_HEADS:
        return wav(text), "audio/wav"
    head, mime = _AUDIO_HEADS[response_format]
    return head + hashlib.sha256(text.encode()).digest() * 8, mime


def mp4(task_id: str) -> bytes:
    """A minimal MPEG-4 file: an ``ftyp`` box and a ``mdat`` box naming the task."""
    ftyp = b"ftyp" + b"isom" + struct.pack(">I", 512) + b"isomiso2avc1mp41"
    payload = f"batchrun simulated video {task_id}".encode() * 4
    mdat = b"mdat" + payload
    return struct.pack(">I", 4 + len(ftyp)) + ftyp + struct.pack(">I", 4 + len(mdat)) + mdat
