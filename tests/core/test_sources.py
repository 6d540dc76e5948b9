import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_emotion.app.core.sources import SourceError, VideoSource, kind_of, read_image


@pytest.fixture()
def photo(astronaut):
    return Image.fromarray(astronaut)


def test_jpeg_reads_as_rgb(tmp_path, photo, astronaut):
    photo.save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == astronaut.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - astronaut).mean() < 4


def test_exif_orientation_is_respected(tmp_path):
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to show
    wide.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "LA"])
def test_other_modes_become_rgb(tmp_path, photo, mode):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    photo.convert(mode).save(tmp_path / f"x{suffix}")
    image = read_image(tmp_path / f"x{suffix}")
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    assert image.std() > 20  # still a picture, not a blank


def test_transparent_pixels_are_laid_on_white(tmp_path):
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    clear.save(tmp_path / "clear.png")
    assert read_image(tmp_path / "clear.png").min() == 255


def test_sixteen_bit_images_are_scaled_to_eight(tmp_path):
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.dtype == np.uint8 and image[0, 0, 0] == 0 and image[-1, -1, 0] == 255


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    image = read_image(tmp_path / "anim.gif")
    assert image[8, 8, 0] > 200 and image[8, 8, 2] < 50


def png_with_declared_size(width, height) -> bytes:
    """A PNG header claiming ``width`` x ``height`` pixels, as a decompression bomb does."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    body = struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\x00" * 64)
    idat = b"IDAT" + data
    return b"\x89PNG\r\n\x1a\n" + body + struct.pack(">I", len(data)) + idat + struct.pack(">I", zlib.crc32(idat))


@pytest.mark.parametrize("name, content, message", [
    ("empty.jpg", b"", "empty file"),
    ("text.jpg", b"this is not a picture at all", "not an image"),
    ("bomb.png", png_with_declared_size(60_000, 60_000), "too large to decode safely"),
])
def test_bad_files_give_one_line_errors(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(SourceError, match=message) as caught:
        read_image(tmp_path / name)
    assert "\n" not in str(caught.value) and name in str(caught.value)


def test_truncated_jpeg_is_reported(tmp_path, photo):
    photo.save(tmp_path / "whole.jpg")
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(SourceError, match="broken or truncated"):
        read_image(tmp_path / "cut.jpg")


def test_unreadable_video_is_reported(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"no video here")
    with pytest.raises(SourceError, match="clip.mp4"):
        list(VideoSource(tmp_path / "clip.mp4"))


def test_video_frames_come_as_rgb_with_times(tmp_path):
    path = tmp_path / "red.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for _ in range(5):
        writer.write(np.dstack([np.zeros((48, 64), np.uint8)] * 2 + [np.full((48, 64), 255, np.uint8)]))  # BGR red
    writer.release()
    with VideoSource(path) as source:
        frames = list(source)
    assert len(frames) == 5 and frames[0].image[24, 32, 0] > 200
    assert frames[3].index == 3 and frames[3].timestamp == pytest.approx(0.3)


def test_kind_by_suffix(tmp_path):
    assert kind_of(tmp_path / "a.JPG") == "image"
    assert kind_of(tmp_path / "a.mp4") == "video"
    assert kind_of(tmp_path / "a.txt") is None
