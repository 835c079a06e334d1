"""Pascal VOC annotations: the dog boxes of a Stanford Dogs / Kaggle annotation file.

Parsing is hardened: no DTD, no entity expansion, no network, so billion-laughs and XXE files are
refused instead of being expanded or fetched.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from lxml import etree

from doggan.errors import DogganError

DOCTYPE = "XML with DOCTYPE or entities"


class AnnotationError(DogganError):
    """An annotation that cannot be used; `reason` is the short label counted in the crop report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Box(NamedTuple):
    breed: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


_local = threading.local()


def _parser() -> etree.XMLParser:
    """The hardened parser, built once per thread (lxml parsers must not be shared between threads)."""
    if not hasattr(_local, "parser"):
        _local.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
    return _local.parser


def _number(obj: etree._Element, tag: str) -> int:
    text = obj.findtext(f"bndbox/{tag}")
    if text is None:
        raise AnnotationError("malformed XML", f"object without bndbox/{tag}")
    try:
        return round(float(text))
    except (ValueError, OverflowError):
        raise AnnotationError("malformed XML", f"bndbox/{tag} is {text!r}, not a number") from None


def parse(xml_bytes: bytes) -> list[Box]:
    """Every object box of a VOC annotation, in file order; raises AnnotationError when unusable."""
    if not xml_bytes or not xml_bytes.strip():
        raise AnnotationError("empty XML")
    upper = xml_bytes.upper()
    if b"<!DOCTYPE" in upper or b"<!ENTITY" in upper:
        raise AnnotationError(DOCTYPE, "refused (entity expansion is unsafe)")
    try:
        root = etree.fromstring(xml_bytes, _parser())
    except etree.XMLSyntaxError as exc:
        raise AnnotationError("malformed XML", str(exc)) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:  # e.g. a DOCTYPE in UTF-16, unseen above
        raise AnnotationError(DOCTYPE, "refused (entity expansion is unsafe)")
    if root.tag != "annotation":
        raise AnnotationError("malformed XML", f"root element is <{root.tag}>, not <annotation>")
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationError("malformed XML", "object without a name")
        boxes.append(Box(name, *(_number(obj, t) for t in ("xmin", "ymin", "xmax", "ymax"))))
    return boxes
