"""Which chat content counts as a fetch, and the allow-list's prefixes (services/gateway/chat_content.py)."""

import pytest

from services.gateway.chat_content import FetchRefused, allowed_prefixes, check_messages

pytestmark = pytest.mark.unit


def image(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]


def test_an_allow_listed_prefix_passes_and_its_look_alikes_do_not():
    allowed = allowed_prefixes(" https://img.example.com , http://10.0.0.5:9000/public/")
    assert allowed == ("https://img.example.com/", "http://10.0.0.5:9000/public/")
    check_messages(image("https://img.example.com/cat.png"), allowed)
    check_messages(image("http://10.0.0.5:9000/public/a.png"), allowed)
    for url in ["https://img.example.com.evil.net/x", "https://img.example.com@evil.net/", "http://10.0.0.5:9000/"]:
        with pytest.raises(FetchRefused):
            check_messages(image(url), allowed)


def test_without_an_allow_list_only_data_uris_pass():
    check_messages(image("data:image/png;base64,AAAA"), allowed_prefixes(""))
    with pytest.raises(FetchRefused) as refused:
        check_messages(image("https://img.example.com/cat.png"), allowed_prefixes(""))
    assert refused.value.field == "messages.0.content.0.image_url.url"


def test_text_and_plain_base64_are_not_fetches():
    check_messages([{"role": "user", "content": "https://example.com /etc/passwd"}], ())
    check_messages([{"role": "user", "content": [{"type": "text", "text": "file:///etc/passwd"}]}], ())
    audio = {"type": "input_audio", "input_audio": {"data": "/9j/4AAQSkZJRgABAQ==", "format": "wav"}}
    check_messages([{"role": "user", "content": [audio]}], ())


def test_a_single_part_object_as_content_is_checked_too():
    with pytest.raises(FetchRefused):
        check_messages([{"role": "user", "content": {"type": "image_url", "image_url": "http://x/"}}], ())
