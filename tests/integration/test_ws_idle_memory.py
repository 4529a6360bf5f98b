"""What an idle guest socket keeps after the upgrade (issue 14: memory per idle connection).

The handler drops the handshake's state once open, and keeps its attributes within the names registered
with the class up front (``GUEST_SOCKET_ATTRIBUTES``): a name outside that list would silently turn every
socket's attributes into a full dict again. Behaviour after the shedding is covered by the websocket
suites; these tests pin the shedding itself."""

from __future__ import annotations

import gc

from tableside.server.ws import GUEST_SOCKET_ATTRIBUTES, GuestSocket
from tests.integration.conftest import Harness


def open_guest_sockets() -> list[GuestSocket]:
    return [o for o in gc.get_objects() if isinstance(o, GuestSocket) and o.ws_connection is not None
            and not o.ws_connection.is_closing()]


async def test_guest_socket_attributes_stay_within_the_registered_names(harness: Harness) -> None:
    _, phone = await harness.member()
    pong = await phone.request({"type": "ping"})  # a message: the rate limiter now exists too
    assert pong["type"] == "pong"
    sockets = open_guest_sockets()
    assert sockets
    for sock in sockets:
        assert set(vars(sock)) <= set(GUEST_SOCKET_ATTRIBUTES), set(vars(sock)) - set(GUEST_SOCKET_ATTRIBUTES)
    await phone.close()


async def test_an_open_guest_socket_keeps_no_handshake_state(harness: Harness) -> None:
    joined, phone = await harness.member()
    sockets = open_guest_sockets()
    assert sockets
    for sock in sockets:
        request = sock.request
        assert len(request.headers) == 0 and not request.arguments and not request.query_arguments
        assert request.connection is None and request.server_connection is None
        assert joined["token"] not in request.uri and request.uri == request.path == "/ws"
        assert len(sock._headers) == 0
    # and the socket still works both ways
    answer = await phone.request({"type": "add_item", "menu_item_id": "gyoza", "qty": 1})
    assert answer["type"] == "ack", answer
    await phone.close()
