"""Who a proxied caller is: X-Forwarded-For read from the right, only through trusted proxies."""

import pytest

from services.common.net import client_address, client_bucket, parse_networks

pytestmark = pytest.mark.unit

TRUSTED = parse_networks("127.0.0.0/8, ::1/128, 10.0.0.5/32")


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("203.0.113.9", "1.2.3.4", "203.0.113.9"),  # an untrusted peer's header is its own invention
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", "198.51.100.7", "198.51.100.7"),  # the gateway's word
        ("127.0.0.1", "198.51.100.7, 10.0.0.5", "198.51.100.7"),  # through the TLS proxy too
        ("127.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.5", "198.51.100.7"),  # what the client sent is skipped
        ("127.0.0.1", "10.0.0.5, 127.0.0.1", "10.0.0.5"),  # only proxies: the farthest
        ("127.0.0.1", "not-an-ip, 10.0.0.5", "not-an-ip"),
        ("127.0.0.1", " , ", "127.0.0.1"),
        ("testclient", "1.2.3.4", "testclient"),
        ("::1", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_address(peer, forwarded, client):
    assert client_address(peer, forwarded, TRUSTED) == client


def test_a_bad_trusted_proxy_entry_is_named():
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks("127.0.0.1, 10.0.0.300")


@pytest.mark.parametrize(
    ("address", "bucket"),
    [
        ("198.51.100.7", "198.51.100.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),  # one host's /64 is one client
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
        ("testclient", "testclient"),
    ],
)
def test_client_bucket(address, bucket):
    assert client_bucket(address) == bucket
