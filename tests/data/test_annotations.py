import pytest

from doggan.data.annotations import AnnotationError, Box, parse

VOC = b"""<annotation>
  <filename>n02085620_7</filename>
  <size><width>250</width><height>188</height><depth>3</depth></size>
  <object><name>Chihuahua</name><bndbox>
    <xmin>71</xmin><ymin>1</ymin><xmax>192</xmax><ymax>180</ymax></bndbox></object>
  <object><name>Chihuahua</name><bndbox>
    <xmin>10.6</xmin><ymin>20</ymin><xmax>60</xmax><ymax>90</ymax></bndbox></object>
</annotation>"""


def test_parse_returns_every_object_in_order():
    assert parse(VOC) == [Box("Chihuahua", 71, 1, 192, 180), Box("Chihuahua", 11, 20, 60, 90)]


def test_billion_laughs_is_refused_without_expansion():
    lol = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><object><name>&lol3;</name></object></annotation>"""
    with pytest.raises(AnnotationError) as err:
        parse(lol)
    assert err.value.reason == "XML with DOCTYPE or entities"


@pytest.mark.parametrize(
    "target", [b"file:///etc/passwd", b"http://127.0.0.1:9/secret"], ids=["local file", "url"]
)
def test_external_entities_are_refused(target):
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "' + target + b'">]>'
        b"<annotation><object><name>&xxe;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        b"<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(AnnotationError, match="DOCTYPE"):
        parse(xxe)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty XML"),
        (b"   \n", "empty XML"),
        (b"<annotation><object>", "malformed XML"),
        (b"<html></html>", "malformed XML"),
        (b"<annotation><object><name>x</name></object></annotation>", "malformed XML"),
        (
            b"<annotation><object><name>x</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
            b"<xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>",
            "malformed XML",
        ),
    ],
)
def test_malformed_and_empty_xml_give_a_reason(data, reason):
    with pytest.raises(AnnotationError) as err:
        parse(data)
    assert err.value.reason == reason


def test_a_doctype_in_another_encoding_is_still_refused():
    hidden = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY e "dog">]><annotation/>'
    with pytest.raises(AnnotationError) as err:
        parse(hidden.encode("utf-16"))
    assert err.value.reason == "XML with DOCTYPE or entities"


@pytest.mark.parametrize("number", ["inf", "nan", ""])
def test_boxes_that_are_not_finite_numbers_are_malformed(number):
    xml = (
        f"<annotation><object><name>x</name><bndbox><xmin>{number}</xmin><ymin>1</ymin>"
        "<xmax>2</xmax><ymax>3</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(AnnotationError) as err:
        parse(xml.encode())
    assert err.value.reason == "malformed XML"
