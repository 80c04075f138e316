"""Image files for upload tests, made on the spot: real photos with EXIF, and hostile files."""

from __future__ import annotations

import io
import struct
import zlib

from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image


def jpeg_upload(
    name: str = "photo.jpg", *, size=(800, 400), orientation: int | None = None, gps: bool = False
) -> SimpleUploadedFile:
    """A JPEG; ``orientation`` 6 means "rotate 90° clockwise to show", as phones write it."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))  # left half blue: shows the rotation
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make
    if orientation:
        exif[0x0112] = orientation
    if gps:
        exif[0x8825] = {1: "N", 2: (39.0, 54.0, 27.0), 3: "E", 4: (116.0, 23.0, 50.0)}
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=90)
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/jpeg")


def png_upload(name: str = "logo.png", *, size=(300, 100), mode: str = "RGBA") -> SimpleUploadedFile:
    image = Image.new(mode, size, (20, 120, 220, 255) if mode == "RGBA" else (20, 120, 220))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/png")


def png_header_only(width: int, height: int, name: str = "bomb.png") -> SimpleUploadedFile:
    """A PNG of a few hundred bytes that claims ``width`` × ``height`` pixels (a decompression
    bomb's shape: decoding it would allocate gigabytes)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\0" * 1024, 9)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    return SimpleUploadedFile(name, data, content_type="image/png")


SVG_WITH_SCRIPT = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)" width="10" height="10">'
    b"<script>alert(document.cookie)</script><rect width='10' height='10'/></svg>"
)


def card_art_upload(
    label: str, top: tuple[int, int, int], bottom: tuple[int, int, int], *, name: str = "card.png"
) -> SimpleUploadedFile:
    """A gift-card-like picture (gradient, rounded card, a label) for browser screenshots."""
    from PIL import ImageDraw, ImageFont

    width, height = 1200, 800
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / height
        draw.line([(0, y), (width, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    draw.rounded_rectangle((180, 170, 1020, 630), radius=40, outline=(255, 255, 255), width=10)
    try:
        font = ImageFont.truetype("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", 120)
    except OSError:
        font = ImageFont.load_default()
    draw.text((width / 2, height / 2), label, fill=(255, 255, 255), font=font, anchor="mm")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return SimpleUploadedFile(name, out.getvalue(), content_type="image/png")
