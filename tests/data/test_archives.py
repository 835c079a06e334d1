import io
import stat
import struct
import zipfile
import zlib

import pytest

from doggan.data.archives import (
    ArchiveError,
    copy_member,
    is_image_name,
    is_intact,
    open_zip,
    read_member,
    safe_members,
    unsafe_reason,
    write_member,
)


def info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    member = zipfile.ZipInfo(name)
    member.external_attr = mode << 16
    return member


@pytest.mark.parametrize(
    ("name", "mode", "reason"),
    [
        ("/etc/passwd", stat.S_IFREG, "absolute path"),
        ("\\windows\\x.jpg", stat.S_IFREG, "absolute path"),
        ("C:/x.jpg", stat.S_IFREG, "absolute path"),
        ("all-dogs/../../x.jpg", stat.S_IFREG, "path with '..'"),
        ("all-dogs\\..\\x.jpg", stat.S_IFREG, "path with '..'"),
        ("all-dogs/link.jpg", stat.S_IFLNK | 0o777, "symbolic link"),
        ("all-dogs/fifo", stat.S_IFIFO | 0o644, "special file"),
        ("all-dogs/a..b.jpg", stat.S_IFREG | 0o644, None),
        ("all-dogs/a.jpg", 0, None),
    ],
)
def test_unsafe_members_are_named(name, mode, reason):
    assert unsafe_reason(info(name, mode)) == reason


def test_safe_members_splits_files_from_refused_and_drops_folders(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info("all-dogs/", stat.S_IFDIR | 0o755), b"")
        zf.writestr("all-dogs/a.jpg", b"a")
        zf.writestr("../b.jpg", b"b")
    with open_zip(path) as zf:
        safe, refused = safe_members(zf)
    assert [i.filename for i in safe] == ["all-dogs/a.jpg"] and refused == {"../b.jpg": "path with '..'"}


@pytest.mark.parametrize(
    ("content", "problem"), [(None, "not found"), (b"", "empty"), (b"PK junk", "not a valid")]
)
def test_open_zip_names_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "all-dogs.zip"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArchiveError, match=rf"all-dogs\.zip: .*{problem}"):
        open_zip(path)


@pytest.mark.parametrize(
    ("name", "image"),
    [
        ("a/b.JPG", True),
        ("b.png", True),
        ("a/.b.jpg", False),
        ("__MACOSX/a/._b.jpg", False),
        ("a/b.txt", False),
    ],
)
def test_image_names(name, image):
    assert is_image_name(name) is image


def test_is_intact_catches_truncation_corruption_and_a_zip_inside_a_cut_zip(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("Annotation/x/1", b"<annotation/>" * 50)
    path = tmp_path / "outer.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("all-dogs.zip", b"photo bytes " * 500)
        zf.writestr("Annotation.zip", inner.getvalue())

    def wanted(names):
        return {"all-dogs.zip", "Annotation.zip"} <= set(names)

    data = path.read_bytes()
    with zipfile.ZipFile(path) as zf:
        inner_end = (
            zf.getinfo("Annotation.zip").header_offset + 30 + len("Annotation.zip") + len(inner.getvalue())
        )
    assert is_intact(path, wanted)
    path.write_bytes(data[:inner_end])  # the outer directory is gone; the inner zip's is still there
    assert zipfile.is_zipfile(path) and not is_intact(path, wanted)
    corrupt = bytearray(data)
    corrupt[100] ^= 0xFF
    path.write_bytes(bytes(corrupt))
    assert not is_intact(path)
    assert not is_intact(tmp_path / "missing.zip")


def test_members_are_written_with_reproducible_bytes(tmp_path):
    def build(path):
        with zipfile.ZipFile(path, "w") as zf:
            write_member(zf, "a/x.xml", b"<annotation/>", zipfile.ZIP_DEFLATED)
        with zipfile.ZipFile(path) as source, zipfile.ZipFile(path.with_suffix(".copy.zip"), "w") as target:
            copy_member(source, source.getinfo("a/x.xml"), target, "b/x.xml")
        return path.read_bytes(), path.with_suffix(".copy.zip").read_bytes()

    first = build(tmp_path / "one.zip")
    assert first == build(tmp_path / "two.zip")
    with zipfile.ZipFile(tmp_path / "one.copy.zip") as zf:
        assert zf.read("b/x.xml") == b"<annotation/>" and zf.getinfo("b/x.xml").date_time == (
            1980,
            1,
            1,
            0,
            0,
            0,
        )


def with_local_extra(info: zipfile.ZipInfo, extra: bytes) -> zipfile.ZipInfo:
    """A member whose local header carries an extra field the directory does not (as some zippers write)."""
    info.extra = extra
    return info


def test_read_member_reads_every_member_as_zipfile_does_without_moving_the_offset(tmp_path):
    path = tmp_path / "a.zip"
    photo = bytes(range(256)) * 300
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("all-dogs/stored.jpg", photo)
        zf.writestr("Annotation/deflated", b"<annotation/>" * 40, zipfile.ZIP_DEFLATED)
        zf.writestr("bz2", photo, zipfile.ZIP_BZIP2)
        zf.writestr("lzma", photo, zipfile.ZIP_LZMA)
        zf.writestr("empty", b"", zipfile.ZIP_DEFLATED)
        zf.writestr("all-dogs/ünïcode.jpg", photo)
        zf.writestr(
            with_local_extra(zipfile.ZipInfo("extra.jpg"), struct.pack("<HH", 0xCAFE, 64) + bytes(64)), photo
        )
    with open_zip(path) as zf:
        zf.fp.seek(7)
        for info in zf.infolist():
            assert read_member(zf, info) == zf.read(info), info.filename
            zf.fp.seek(7)
            read_member(zf, info)
            assert zf.fp.tell() == 7


def corrupt(path, name, change):
    """Rewrite the archive with `change(data, data_start, header_offset)` applied to its bytes."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
    data = bytearray(path.read_bytes())
    change(data, info.header_offset + 30 + len(info.filename.encode()), info.header_offset)
    path.write_bytes(bytes(data))


def flip(index):
    def change(data, start, header):
        data[index(start, header)] ^= 0xFF

    return change


CORRUPTIONS = {
    "data byte (CRC)": flip(lambda start, header: start + 100),
    "compressed byte": flip(lambda start, header: start + 2),
    "signature": flip(lambda start, header: header),
    "name in the local header": flip(lambda start, header: start - 1),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_read_member_refuses_what_zipfile_refuses(tmp_path, case, compression):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("all-dogs/a.jpg", bytes(range(256)) * 40)
        zf.writestr("all-dogs/b.jpg", b"intact")
    corrupt(path, "all-dogs/a.jpg", CORRUPTIONS[case])
    with open_zip(path) as zf:
        with pytest.raises((zipfile.BadZipFile, EOFError, zlib.error)):
            zf.read("all-dogs/a.jpg")
        with pytest.raises((zipfile.BadZipFile, EOFError, zlib.error)):
            read_member(zf, zf.getinfo("all-dogs/a.jpg"))
        assert read_member(zf, zf.getinfo("all-dogs/b.jpg")) == b"intact"


def test_read_member_refuses_an_encrypted_member_as_unreadable(tmp_path):
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("all-dogs/a.jpg", b"ciphertext")
    data = bytearray(path.read_bytes())
    data[6] |= 1  # the encryption flag, in the local header and in the directory
    data[data.find(b"PK\x01\x02") + 8] |= 1
    path.write_bytes(bytes(data))
    with open_zip(path) as zf:
        with pytest.raises(RuntimeError, match="encrypted"):
            zf.read("all-dogs/a.jpg")
        with pytest.raises(zipfile.BadZipFile, match="encrypted"):
            read_member(zf, zf.getinfo("all-dogs/a.jpg"))
