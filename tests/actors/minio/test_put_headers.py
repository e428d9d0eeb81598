"""The headers a restore sends, built from the (untrusted) mirror index: pure logic."""
from __future__ import annotations

import pytest

from actors.minio.put_headers import MAX_METADATA_BYTES, UnsafeHeaders, put_headers


def test_user_metadata_goes_back_under_x_amz_meta_whatever_its_name_looks_like():
    kind, headers = put_headers("text/plain; charset=utf-8", {"origin": "upload", "cache-control": "no-store",
                                                              "x-amz-object-lock-mode": "COMPLIANCE"})
    assert kind == "text/plain; charset=utf-8"
    assert headers == {"x-amz-meta-origin": "upload", "x-amz-meta-cache-control": "no-store",
                       "x-amz-meta-x-amz-object-lock-mode": "COMPLIANCE"}


def test_an_object_without_a_content_type_goes_back_as_octet_stream_with_empty_values_kept():
    assert put_headers(None, {"empty": ""}) == ("application/octet-stream", {"x-amz-meta-empty": ""})


@pytest.mark.parametrize(("content_type", "metadata", "words"), [
    ("text/plain", {"note": "a\r\nx-amz-tagging: a=b"}, "'note' has a value that is not printable"),
    ("text/plain", {"note": "caf\u00e9"}, "not printable US-ASCII"),
    ("text/plain", {"note": 7}, "not printable US-ASCII"),
    ("text/plain", {"Upper": "x"}, "is not an HTTP field name in lower case"),
    ("text/plain", {"a b": "x"}, "is not an HTTP field name"),
    ("text/plain", {"": "x"}, "is not an HTTP field name"),
    ("text/plain", ["a", "b"], "user metadata is a list"),
    ("text/plain\r\nx-amz-acl: public-read", {}, "content type"),
    (["text/plain"], {}, "content type"),
    ("text/plain", {"big": "x" * MAX_METADATA_BYTES}, "more than MinIO stores"),
])
def test_what_minio_never_sent_refuses_naming_what_is_wrong(content_type, metadata, words):
    with pytest.raises(UnsafeHeaders, match=words.replace("(", r"\(")):
        put_headers(content_type, metadata)


def test_content_headers_go_back_as_themselves_beside_the_user_metadata():
    kind, headers = put_headers("text/html", {"lang": "de"}, {"content-encoding": "gzip", "cache-control": "no-cache",
                                                              "content-disposition": 'attachment; filename="a.html"',
                                                              "content-language": "de"})
    assert kind == "text/html"
    assert headers == {"x-amz-meta-lang": "de", "content-encoding": "gzip", "cache-control": "no-cache",
                       "content-disposition": 'attachment; filename="a.html"', "content-language": "de"}


@pytest.mark.parametrize(("content", "words"), [
    ({"x-amz-tagging": "a=b"}, "is not one the mirror keeps"),
    ({"x-amz-website-redirect-location": "/x"}, "is not one the mirror keeps"),
    ({"Content-Encoding": "gzip"}, "is not one the mirror keeps"),
    ({"content-encoding": "gzip\r\nx-amz-acl: public-read"}, "'content-encoding' has a value that is not printable"),
    ("gzip", "content headers are a str"),
])
def test_a_content_header_the_mirror_does_not_keep_refuses(content, words):
    with pytest.raises(UnsafeHeaders, match=words):
        put_headers("text/plain", {}, content)
