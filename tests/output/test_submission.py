"""The submission validator, on real zips of real PNGs."""

import io
import struct
import subprocess
import sys
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from doggan.output import submission

N = submission.N_IMAGES


def test_good_zip_passes(good_zip):
    assert submission.validate(good_zip) == []


def test_zip_with_9999_images_fails(tmp_path, png_zip):
    problems = submission.validate(png_zip(tmp_path / "a.zip", N - 1))
    assert problems == ["9,999 images at the zip root, expected exactly 10,000; missing 9999.png"]


def test_zip_with_one_65x64_image_fails(tmp_path, png, png_zip):
    assert submission.validate(png_zip(tmp_path / "a.zip", odd={"123.png": png((65, 64))})) == [
        "123.png: 65×64 pixels, expected 64×64"
    ]


def test_repeated_problems_are_capped_with_a_count(tmp_path, png, png_zip):
    wrong = {f"{i}.png": png((65, 64)) for i in range(N)}
    problems = submission.validate(png_zip(tmp_path / "a.zip", odd=wrong))
    assert problems[:2] == ["0.png: 65×64 pixels, expected 64×64", "1.png: 65×64 pixels, expected 64×64"]
    assert len(problems) == submission.LINES_PER_KIND + 1
    assert problems[-1] == f"and {N - submission.LINES_PER_KIND:,} more images of size 65×64"


@pytest.mark.parametrize(("mode", "shown"), [("L", "L"), ("LA", "LA"), ("RGBA", "RGBA"), ("P", "P")])
def test_images_that_are_not_rgb_fail(tmp_path, png, png_zip, mode, shown):
    problems = submission.validate(png_zip(tmp_path / "a.zip", odd={"7.png": png(mode=mode)}))
    assert problems == [f"7.png: mode {shown}, expected 8-bit RGB"]


def png_48bit(w=64, h=64) -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (PIL cannot write one; it reads it as plain 'RGB')."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + (bytes(range(256)) * 2)[: w * 6] for _ in range(h))
    return (
        submission.PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_pngs_fail(tmp_path, png_zip):
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64), 40000, np.uint16)).save(buffer, format="PNG")
    odd = {"3.png": buffer.getvalue(), "4.png": png_48bit()}
    problems = submission.validate(png_zip(tmp_path / "a.zip", odd=odd))
    assert problems == [
        "3.png: mode I;16, 16-bit, expected 8-bit RGB",
        "4.png: mode RGB, 16-bit, expected 8-bit RGB",
    ]


def test_jpeg_named_png_fails(tmp_path, png_zip):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, format="JPEG")
    odd = {"5.png": buffer.getvalue(), "6.png": b"hello, not an image at all"}
    problems = submission.validate(png_zip(tmp_path / "a.zip", odd=odd))
    assert problems == ["5.png: not a PNG (a JPEG file)", "6.png: not a PNG (not an image)"]


def test_truncated_png_fails(tmp_path, png, png_zip):
    problems = submission.validate(png_zip(tmp_path / "a.zip", odd={"42.png": png()[: len(png()) // 2]}))
    assert len(problems) == 1 and problems[0].startswith("42.png: PNG does not decode")


def test_extra_files_fail(tmp_path, png, png_zip):
    extra = [("readme.txt", b"dogs"), ("10.jpg", png())]
    problems = submission.validate(png_zip(tmp_path / "a.zip", extra=extra))
    assert problems == [
        "readme.txt: unexpected file; only the images may be in the zip",
        "10.jpg: unexpected file; only the images may be in the zip",
    ]


def test_folders_fail(tmp_path, png, png_zip):
    extra = [("images/", b""), *[(f"images/{i}.png", png()) for i in range(N)]]
    problems = submission.validate(png_zip(tmp_path / "a.zip", 0, extra=extra))
    assert problems[0] == "images/: a folder; the images must sit at the zip root"
    assert problems[1] == "images/0.png: inside a folder; the images must sit at the zip root"
    assert f"and {N - submission.LINES_PER_KIND:,} more entries inside folders" in problems
    assert problems[-1] == "0 images at the zip root, expected exactly 10,000; missing 0.png … 9999.png"


def test_bad_names_fail(tmp_path, png, png_zip):
    names = ["00.png", "10000.png", "2.PNG", *(f"{i}.png" for i in range(3, N))]
    problems = submission.validate(png_zip(tmp_path / "a.zip", 0, extra=[(n, png()) for n in names]))
    assert problems == [
        "00.png: unexpected name; expected 0.png … 9999.png",
        "10000.png: unexpected name; expected 0.png … 9999.png",
        "2.PNG: unexpected name; expected 0.png … 9999.png",
        "missing 0.png … 2.png",
    ]


def test_duplicate_and_unsafe_entries_fail(tmp_path, png, png_zip):
    extra = [("17.png", png()), ("../0.png", png())]
    problems = submission.validate(png_zip(tmp_path / "a.zip", extra=extra))
    assert problems == ["17.png: appears more than once in the zip", "../0.png: path with '..'"]


def test_corrupt_zip_entry_fails(tmp_path, png_zip):
    path = png_zip(tmp_path / "a.zip")
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("9.png").compress_type == zipfile.ZIP_STORED
        offset = zf.getinfo("9.png").header_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 30 + len("9.png") + 100] ^= 0xFF  # a byte of 9.png's stored data: its CRC no longer matches
    path.write_bytes(bytes(raw))
    problems = submission.validate(path)
    assert len(problems) == 1 and problems[0].startswith("9.png: cannot be read from the zip (Bad CRC-32")


def test_missing_empty_and_non_zip_files_fail(tmp_path):
    assert submission.validate(tmp_path / "nothing.zip") == ["file not found"]
    (tmp_path / "empty.zip").write_bytes(b"")
    assert submission.validate(tmp_path / "empty.zip")[0].startswith("not a zip archive")
    (tmp_path / "text.zip").write_text("0.png\n")
    assert submission.validate(tmp_path / "text.zip") == ["not a zip archive (File is not a zip file)"]


def test_file_over_the_upload_limit_fails(tmp_path, png):
    path = tmp_path / "big.zip"
    with open(path, "wb") as f:
        f.truncate(submission.MAX_UPLOAD_BYTES)  # a sparse prefix: zips may carry data before them
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("0.png", png())
    size = path.stat().st_size
    assert submission.validate(path, n_images=1) == [
        f"{size:,} bytes, over Kaggle's upload limit of 524,288,000 bytes (500 MiB)"
    ]


def test_encrypted_entries_fail(tmp_path, png_zip):
    path = png_zip(tmp_path / "a.zip", 1)
    raw = bytearray(path.read_bytes())
    # Set the 'encrypted' flag bit, as a password-protected zip has, in the local and central headers.
    raw[6] |= 0x1
    raw[raw.index(b"PK\x01\x02") + 8] |= 0x1
    path.write_bytes(bytes(raw))
    assert submission.validate(path, n_images=1) == ["0.png: encrypted; Kaggle cannot read it"]


def test_smaller_test_zips_validate_against_their_own_count(tmp_path, png_zip):
    path = png_zip(tmp_path / "a.zip", 200)
    assert submission.validate(path, n_images=200) == []
    assert submission.validate(path) == [
        "200 images at the zip root, expected exactly 10,000; missing 200.png … 9999.png"
    ]


def test_the_validator_loads_no_model_or_client():
    """`doggan.output.submission` is the light, stable check: importing it pulls in neither TF nor Kaggle."""
    code = (
        "import sys, doggan.output.submission; "
        "print(sorted({'tensorflow', 'keras', 'kaggle'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
