"""Endpoints as people write them, and the Curator endpoints nodes advertise."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trionodes._core.endpoints import (
    DEFAULT_PORT,
    Endpoint,
    EndpointError,
    curator_endpoint,
    parse_endpoint,
)
from trionodes._errors import ProtocolError
from trionodes.testing import make_node


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", Endpoint("10.0.0.1", DEFAULT_PORT)),
        ("10.0.0.1:99", Endpoint("10.0.0.1", 99)),
        (" node-1.example ", Endpoint("node-1.example", DEFAULT_PORT)),
        ("localhost", Endpoint("localhost", DEFAULT_PORT)),
        ("[::1]", Endpoint("::1", DEFAULT_PORT)),
        ("[fd00::1]:7836", Endpoint("fd00::1", 7836)),
    ],
)
def test_what_people_write(text: str, expected: Endpoint) -> None:
    assert parse_endpoint(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "an empty endpoint"),
        ("http://127.0.0.1:42689", "URL scheme: drop it"),
        ("::1", "put it in brackets, as [::1]"),
        ("[::1", "does not close"),
        ("[::1]7835", "after the address"),
        ("[not-v6]:1", "no IPv6 address in its brackets"),
        ("host:", "no valid port"),
        ("host:0", "no valid port"),
        ("host:65536", "no valid port"),
        ("host:http", "no valid port"),
        (":7835", "has no host"),
        ("a b:1", "not a host name or address"),
    ],
)
def test_mistakes_are_named_with_an_example(text: str, says: str) -> None:
    with pytest.raises(EndpointError, match=r"as 10\.0\.0\.1:7835|as \[") as caught:
        parse_endpoint(text)
    assert says in str(caught.value)


hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True),
)


@given(hosts, st.integers(1, 65535))
def test_an_endpoint_reads_back_as_itself(host: str, port: int) -> None:
    endpoint = Endpoint(host, port)
    assert parse_endpoint(str(endpoint)) == endpoint
    assert str(endpoint).startswith("[") == (":" in host)


@given(st.integers(1, 2000), st.integers(1, 65535))
def test_a_node_running_a_curator_advertises_it(index: int, port: int) -> None:
    node = make_node(index, curator_port=port)
    assert node.status is not None
    assert curator_endpoint(bytes(node)) == Endpoint(node.status.external_address, port)


def test_nodes_without_a_curator_or_an_address_advertise_nothing() -> None:
    assert curator_endpoint(bytes(make_node(1))) is None
    assert curator_endpoint(bytes(make_node(1, address="", curator_port=7835))) is None


def test_a_damaged_node_is_a_protocol_error() -> None:
    raw = bytes(make_node(1, curator_port=7835))
    with pytest.raises(ProtocolError):
        curator_endpoint(raw[:-3])
