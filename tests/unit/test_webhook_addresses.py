"""Where webhooks may go (services/scheduler/webhooks/addresses.py): public addresses, and what the admin's allow
list names; every spelling of a refused address is refused, because the check is made on what the host resolves to.
And which job state change is which event (services/scheduler/webhooks/outbox.py)."""

from __future__ import annotations

import ipaddress

import pytest

from services.scheduler.webhooks.addresses import Allowed, Refused, checked_address, is_public, parse_url, pinned_url
from services.scheduler.webhooks.outbox import job_event

pytestmark = pytest.mark.unit

NOBODY = Allowed.parse("")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_a_non_public_address_is_not_public(address):
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"])
def test_a_public_address_is(address):
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f.1/",  # and in hex
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",  # 169.254.169.254 inside IPv6
        "http://[fd00::1]/",
    ],
)
async def test_every_spelling_of_a_refused_address_is_refused(url):
    with pytest.raises(Refused, match="LLMCT_WEBHOOK_ALLOW"):
        await checked_address(url, NOBODY)


@pytest.mark.parametrize(
    "url, why",
    [
        ("ftp://example.com/", "https://"),
        ("file:///etc/passwd", "https://"),
        ("gopher://127.0.0.1:6379/_INFO", "https://"),
        ("http://user:secret@example.com/", "credentials"),
        ("http://:pw@example.com/", "credentials"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "not a URL"),
        ("http://exa mple.com/", "spaces"),
        ("https://example.com/" + "a" * 3000, "longer"),
    ],
)
def test_a_url_that_is_not_an_http_endpoint_is_refused(url, why):
    with pytest.raises(Refused, match=why):
        parse_url(url)


async def test_the_allow_list_names_networks_and_hosts():
    allowed = Allowed.parse(" 10.0.0.0/8 , hooks.internal., 127.0.0.1 ,")
    assert allowed.hosts == frozenset({"hooks.internal"})
    assert (await checked_address("http://10.1.2.3/x", allowed))[1] == ipaddress.ip_address("10.1.2.3")
    assert (await checked_address("http://127.0.0.1:9/x", allowed))[1].is_loopback
    with pytest.raises(Refused):
        await checked_address("http://192.168.0.1/", allowed)
    with pytest.raises(Refused):
        await checked_address("http://169.254.169.254/", allowed)


def test_the_request_goes_to_the_checked_address():
    parts = parse_url("https://hooks.example.com/in?x=1#frag")
    assert pinned_url(parts, ipaddress.ip_address("93.184.216.34")) == "https://93.184.216.34:443/in?x=1"
    assert pinned_url(parse_url("http://h:81/"), ipaddress.ip_address("2001:db8::1")) == "http://[2001:db8::1]:81/"


@pytest.mark.parametrize(
    "kind, state, event",
    [
        ("train", "succeeded", "job.succeeded"),
        ("eval", "failed", "job.failed"),
        ("export", "cancelled", "job.cancelled"),
        ("train", "running", None),
        ("train", "pending", None),
        ("deploy", "failed", "deployment.failed"),
        ("deploy", "cancelled", "deployment.stopped"),
        ("deploy", "succeeded", "deployment.stopped"),
        ("deploy", "running", None),  # ready is told by the engine's first answer (DeploymentReady), not a state
    ],
)
def test_which_state_change_is_which_event(kind, state, event):
    assert job_event(kind, state) == event
