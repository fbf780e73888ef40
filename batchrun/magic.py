"""What a file is, by its first bytes: the one reader of magic numbers.

``sniff`` promises the MIME type of the image, audio and video formats
batchrun sends or receives (PNG, JPEG, GIF, WebP, WAV, MP3, Ogg, FLAC, MP4,
WebM), or None for anything else; ``EXTENSIONS`` names the file suffix each
type is written with.
"""

from __future__ import annotations

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/gif": "gif",
    "image/webp": "webp",
    "audio/wav": "wav",
    "audio/mpeg": "mp3",
    "audio/ogg": "ogg",
    "audio/flac": "flac",
    "audio/aac": "aac",
    "audio/mp4": "m4a",
    "video/mp4": "mp4",
    "video/webm": "webm",
}
# Names gateways use for the same types.
ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "image/jpg": "image/jpeg",
    "audio/x-flac": "audio/flac",
}


def canonical(mime: str | None) -> str | None:
    """``mime`` without parameters, lower case, under its usual name."""
    if mime is None:
        return None
    base = mime.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base) or None


def sniff(data: bytes) -> str | None:
    """The MIME type ``data`` starts like, or None when it is none batchrun knows."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: layer bits 00
        return "audio/aac"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith(b"OggS"):
        return "audio/ogg"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head[4:8] == b"ftyp":
        return "audio/mp4" if head[8:11] == b"M4A" else "video/mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "video/webm"
    return None


def same_kind(found: str | None, promised: str | None) -> bool:
    """Whether bytes sniffed as ``found`` keep the promise of ``promised``.

    ``promised`` may be a wildcard (``image/*``); None or octet-stream accept any known type.
    """
    if found is None:
        return False
    want = canonical(promised)
    if want is None or want == "application/octet-stream":
        return True
    if want == found or (want.endswith("/*") and found.startswith(want[:-1])):
        return True
    # MPEG-4 containers: audio and video share the box; a promise of one is kept by the other.
    return {want, found} <= {"audio/mp4", "video/mp4"}
