"""Legacy HTTP+SSE framing (mcp_tornado/transport/legacy.py); the transport itself is in e2e/test_legacy_sse.py."""

from __future__ import annotations

from mcp_tornado.transport.legacy import endpoint_frame, event_data, message_frame
from mcp_tornado.transport.sse import EventBuffer, frame


def test_a_session_event_is_reframed_as_a_message_without_its_id():
    _, chunk = EventBuffer(4).add("get", b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}')
    assert message_frame(event_data(chunk)) == (
        b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'
    )


def test_a_priming_event_has_no_data_to_send():
    assert event_data(frame(12, b"")) == b""


def test_the_endpoint_event_names_where_to_post():
    frame_ = endpoint_frame("/calc/messages?session_id=abc")
    assert frame_ == b"event: endpoint\ndata: /calc/messages?session_id=abc\n\n"
