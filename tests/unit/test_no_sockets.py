"""Unit tests touch no network: a TCP connect from a unit test is refused before it leaves."""

import socket

import pytest
from pytest_socket import SocketBlockedError


def test_tcp_socket_is_blocked() -> None:
    with pytest.raises(SocketBlockedError):
        socket.create_connection(("127.0.0.1", 9), timeout=0.1)


def test_boto3_call_is_blocked() -> None:
    import boto3

    client = boto3.client(
        "sqs",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    with pytest.raises(Exception) as caught:
        client.list_queues()
    chain = []
    exc: BaseException | None = caught.value
    while exc is not None:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    assert any(isinstance(e, SocketBlockedError) for e in chain), chain
