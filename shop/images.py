"""Images the operator uploads (product pictures, the shop's logo and favicon): checked, then
re-encoded with Pillow into files of our own. Nothing uploaded is ever stored or served as sent:
every stored image is decoded pixels written out again (EXIF orientation applied, colour profile
converted to sRGB, metadata such as GPS position dropped), so an upload that is really HTML, an
SVG with a script or a polyglot never reaches the media folder.

``UploadedImageField`` is the admin form field; ``image_render`` the one encoder."""

from __future__ import annotations

import io
from dataclasses import dataclass

from django import forms
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat
from django.utils.crypto import get_random_string
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024
# Checked from the header, before any pixel is decoded: a decompression bomb (a small file that
# expands to gigabytes of pixels) is refused without being expanded.
MAX_SIDE_PIXELS = 8000
MAX_TOTAL_PIXELS = 40_000_000
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "ICO"}


@dataclass(frozen=True)
class ImageShape:
    """How one stored image is made: ``size`` is a box to fit in (``crop`` False) or the exact
    size cut from the middle (``crop`` True); ``square_pad`` centres the image on a transparent
    square (icons)."""

    size: tuple[int, int]
    crop: bool = False
    square_pad: bool = False
    format: str = "WEBP"


PRODUCT_IMAGE = ImageShape((1200, 1200))
PRODUCT_THUMBNAIL = ImageShape((600, 450), crop=True)  # catalog cards, 4:3
SHOP_LOGO = ImageShape((480, 160))
SHOP_FAVICON = ImageShape((180, 180), square_pad=True, format="PNG")  # also the home-screen icon

EXTENSIONS = {"WEBP": "webp", "PNG": "png"}


def image_open_checked(upload) -> Image.Image:
    """The upload as a Pillow image whose pixels are not decoded yet, or ``ValidationError`` with
    a message that says what is wrong (not an image, SVG, too many bytes or pixels)."""
    size = getattr(upload, "size", None)
    if size is not None and size > MAX_UPLOAD_BYTES:
        raise forms.ValidationError(
            _("The file is %(size)s; images may be at most %(max)s."),
            code="too_big",
            params={"size": filesizeformat(size), "max": filesizeformat(MAX_UPLOAD_BYTES)},
        )
    upload.seek(0)
    head = upload.read(512)
    upload.seek(0)
    if b"<svg" in head.lower() or head.lstrip().startswith(b"<"):
        raise forms.ValidationError(
            _("SVG and HTML files are not accepted (they can carry scripts). Upload a PNG, JPEG or WebP image."),
            code="svg",
        )
    try:
        image = Image.open(upload)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        if isinstance(exc, Image.DecompressionBombError):
            raise _too_many_pixels() from exc
        raise forms.ValidationError(
            _("This file is not an image that can be read. Upload a PNG, JPEG or WebP image."), code="not_image"
        ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise forms.ValidationError(
            _("%(format)s images are not accepted. Upload a PNG, JPEG or WebP image."),
            code="format",
            params={"format": image.format},
        )
    width, height = image.size
    if width < 1 or height < 1 or max(width, height) > MAX_SIDE_PIXELS or width * height > MAX_TOTAL_PIXELS:
        raise _too_many_pixels(width, height)
    return image


def _too_many_pixels(width: int = 0, height: int = 0) -> forms.ValidationError:
    if not (width and height):  # Pillow refused it before telling the size
        return forms.ValidationError(
            _(
                "The image has far too many pixels; "
                "at most %(side)d pixels a side and %(megapixels)d megapixels are accepted."
            ),
            code="too_many_pixels",
            params={"side": MAX_SIDE_PIXELS, "megapixels": MAX_TOTAL_PIXELS // 1_000_000},
        )
    return forms.ValidationError(
        _(
            "The image is %(width)d × %(height)d pixels; "
            "at most %(side)d pixels a side and %(megapixels)d megapixels are accepted."
        ),
        code="too_many_pixels",
        params={"width": width, "height": height, "side": MAX_SIDE_PIXELS, "megapixels": MAX_TOTAL_PIXELS // 1_000_000},
    )


def image_render(image: Image.Image, shape: ImageShape, *, name: str) -> ContentFile:
    """``image`` drawn into ``shape`` as a new file named ``<name>-<random>.<ext>``: upright,
    sRGB, no metadata. Raises ``ValidationError`` if the pixels cannot be decoded."""
    try:
        image.seek(0)  # an animation's first frame
        image.load()
        profile = image.info.get("icc_profile")  # read first: neither step below keeps it reliably
        pixels = _to_srgb(ImageOps.exif_transpose(image), profile)
        pixels = pixels.convert("RGBA" if _has_alpha(pixels) else "RGB")
        if shape.crop:
            pixels = ImageOps.fit(pixels, shape.size, method=Image.Resampling.LANCZOS)
        else:
            pixels.thumbnail(shape.size, Image.Resampling.LANCZOS)
        if shape.square_pad:
            side = max(pixels.size)
            square = Image.new("RGBA", (side, side), (0, 0, 0, 0))
            square.paste(pixels, ((side - pixels.width) // 2, (side - pixels.height) // 2))
            pixels = square.resize(shape.size, Image.Resampling.LANCZOS) if side != shape.size[0] else square
        out = io.BytesIO()
        if shape.format == "PNG":
            pixels.save(out, format="PNG", optimize=True)
        else:
            pixels.save(out, format="WEBP", quality=84, method=4)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise forms.ValidationError(
            _("This image is damaged and cannot be read. Upload a PNG, JPEG or WebP image."), code="damaged"
        ) from exc
    return ContentFile(out.getvalue(), name=f"{name}-{get_random_string(8).lower()}.{EXTENSIONS[shape.format]}")


def _to_srgb(image: Image.Image, profile: bytes | None) -> Image.Image:
    """Pixels in sRGB when the file carried another colour profile (a phone's Display P3 photo
    would look washed out once its profile is dropped); otherwise as they are."""
    if not profile or image.mode not in ("RGB", "RGBA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        converted = ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=image.mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    return converted if converted is not None else image  # None only for inPlace=True


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


class UploadedImageField(forms.ImageField):
    """An admin image upload checked by ``image_open_checked`` (clear messages instead of
    Django's generic one) and handed on as a Pillow image in ``upload.image``."""

    default_validators = []  # the extension does not matter: the content is decoded and checked

    def to_python(self, data):
        upload = forms.FileField.to_python(self, data)
        if upload is None:
            return None
        if isinstance(upload, UploadedFile):
            upload.image = image_open_checked(upload)
        return upload
