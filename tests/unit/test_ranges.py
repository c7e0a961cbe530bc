"""Which bytes a Range header asks for (RFC 9110 §14), and when If-Range turns it into the whole file."""

from __future__ import annotations

import pytest

from services.common.errors import ApiError
from services.common.ranges import Span, Unsatisfiable, attachment, requested_span, resume_span

pytestmark = pytest.mark.unit

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "span"),
    [
        ("bytes=0-99", Span(0, 99)),
        ("bytes=100-", Span(100, 999)),
        ("bytes=-100", Span(900, 999)),
        ("bytes=-5000", Span(0, 999)),  # a suffix longer than the file: all of it
        ("bytes=990-5000", Span(990, 999)),  # a last byte past the end is cut to the end
        ("bytes=999-999", Span(999, 999)),
        ("Bytes = 5 - 6", Span(5, 6)),
    ],
)
def test_one_range_is_read_as_rfc_9110_says(header, span):
    assert requested_span(header, SIZE) == span


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",  # several ranges: the whole file (our choice, documented in services/common/ranges.py)
        "items=0-1",  # another unit
        "bytes=9-3",  # last before first: invalid, ignored
        "bytes=-",
        "bytes=a-b",
        "bytes=" + "9" * 5000 + "-",  # too long a number is no range (and no ValueError from int())
    ],
)
def test_what_is_no_single_range_means_the_whole_file(header):
    assert requested_span(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=1000-2000", "bytes=-0"])
def test_a_range_past_the_end_is_unsatisfiable(header):
    with pytest.raises(Unsatisfiable):
        requested_span(header, SIZE)


def test_an_empty_file_is_sent_whole_whatever_the_range():
    assert requested_span("bytes=0-10", 0) is None


def test_if_range_with_another_etag_means_the_whole_file():
    headers = {"range": "bytes=10-", "if-range": '"old"'}
    assert resume_span(headers, SIZE, '"new"') is None
    assert resume_span({**headers, "if-range": '"new"'}, SIZE, '"new"') == Span(10, 999)
    assert resume_span({**headers, "if-range": 'W/"new"'}, SIZE, '"new"') is None  # a weak validator never matches
    assert resume_span({**headers, "if-range": "Wed, 21 Oct 2015 07:28:00 GMT"}, SIZE, '"new"') is None


def test_416_says_how_long_the_file_is():
    with pytest.raises(ApiError) as caught:
        resume_span({"range": "bytes=5000-"}, SIZE, '"e"')
    assert caught.value.status == 416 and caught.value.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("job-1.zip", 'attachment; filename="job-1.zip"'),
        ("模型.bin", "attachment; filename*=utf-8''%E6%A8%A1%E5%9E%8B.bin"),
        ('a"b\r\n.log', "attachment; filename*=utf-8''a%22b%0D%0A.log"),  # no quote or line break gets through
    ],
)
def test_a_download_is_named_in_a_header_that_can_carry_it(name, header):
    value = attachment(name)["content-disposition"]
    assert value == header and value.isascii()
