"""The reconcile's own listing parser gives what minio-py's listing gives, and refuses pages it cannot read."""
from __future__ import annotations

import io

import pytest

from actors.minio.listing import ListingError, list_objects, parse_page

KEYS = ["a+b", "100%", "kb/知识库/报告.pdf", "with space", "kb/deep/x.txt", "kb/deep/y.txt", "z"]


class OnlyPublicListing:
    """A client with minio-py's public listing only (as a release without its request method would be)."""

    def __init__(self, client):
        self.list_objects = client.list_objects


def described(listing) -> list[tuple]:
    return [(obj.object_name, obj.etag, obj.size, obj.last_modified) for obj in listing]


def test_the_listing_across_pages_matches_minio_pys_with_every_key_as_stored(minio_client, bucket):
    for number, key in enumerate(KEYS):
        data = b"x" * (number + 1)
        minio_client.put_object(bucket, key, io.BytesIO(data), len(data))
    expected = described(minio_client.list_objects(bucket, recursive=True))

    assert described(list_objects(minio_client, bucket, page=2)) == expected  # four pages of two
    assert sorted(name for name, *_ in expected) == sorted(KEYS)
    assert described(list_objects(minio_client, bucket, "kb/deep/")) == [e for e in expected if e[0].startswith("kb/deep/")]
    assert described(list_objects(OnlyPublicListing(minio_client), bucket)) == expected


def test_a_page_that_is_not_a_listing_or_is_cut_short_is_refused_so_nothing_is_removed():
    with pytest.raises(ListingError, match="could not be read"):
        parse_page(b"<ListBucketResult", "b")
    ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
    with pytest.raises(ListingError, match="could not be read"):  # an object without a key
        parse_page(f"<ListBucketResult {ns}><Contents><Size>1</Size></Contents></ListBucketResult>".encode(), "b")
    with pytest.raises(ListingError, match="no continuation token"):
        parse_page(f"<ListBucketResult {ns}><IsTruncated>true</IsTruncated></ListBucketResult>".encode(), "b")
