import io
import stat
import zipfile

import pytest

from doggan.data.archives import (
    ArchiveError,
    copy_member,
    is_image_name,
    is_intact,
    open_zip,
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
