"""Pascal VOC annotations: the dog boxes of a Stanford Dogs / Kaggle annotation file.

Parsing is hardened: no DTD, no entity expansion, no network, so billion-laughs and XXE files are
refused instead of being expanded or fetched.
"""

from __future__ import annotations

from typing import NamedTuple

from lxml import etree

from doggan.errors import DogganError


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


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _number(obj: etree._Element, tag: str) -> int:
    text = obj.findtext(f"bndbox/{tag}")
    if text is None:
        raise AnnotationError("malformed XML", f"object without bndbox/{tag}")
    try:
        return round(float(text))
    except ValueError:
        raise AnnotationError("malformed XML", f"bndbox/{tag} is {text!r}, not a number") from None


def parse(xml_bytes: bytes) -> list[Box]:
    """Every object box of a VOC annotation, in file order; raises AnnotationError when unusable."""
    if not xml_bytes or not xml_bytes.strip():
        raise AnnotationError("empty XML")
    if b"<!DOCTYPE" in xml_bytes.upper() or b"<!ENTITY" in xml_bytes.upper():
        raise AnnotationError("XML with DOCTYPE or entities", "refused (entity expansion is unsafe)")
    try:
        root = etree.fromstring(xml_bytes, _parser())
    except etree.XMLSyntaxError as exc:
        raise AnnotationError("malformed XML", str(exc)) from None
    if root.tag != "annotation":
        raise AnnotationError("malformed XML", f"root element is <{root.tag}>, not <annotation>")
    boxes = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise AnnotationError("malformed XML", "object without a name")
        boxes.append(Box(name, *(_number(obj, t) for t in ("xmin", "ymin", "xmax", "ymax"))))
    return boxes
