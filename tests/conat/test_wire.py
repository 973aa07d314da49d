"""Engine.IO / Socket.IO v4 packet encoding and decoding, checked against python-socketio's
own packet codec (a second, independent implementation of the same wire format)."""

from __future__ import annotations

import json

import pytest
from socketio import packet as sio_packet

from cohub.conat import wire
from cohub.conat.wire import ProtocolError, decode_message


def _python_socketio_decode(frames: list[wire.Frame]) -> sio_packet.Packet:
    text = frames[0]
    assert isinstance(text, str) and text[0] == "4"
    pkt = sio_packet.Packet(encoded_packet=text[1:])
    for attachment in frames[1:]:
        pkt.add_attachment(attachment)
    return pkt


@pytest.mark.parametrize(
    ("event", "args", "ack_id"),
    [
        ("info", [{"user": {"account_id": "x"}}], None),
        ("info", [{"max_payload": 8_000_000}], 12),
        ("publish", [["s", "id", 0, 1, 0, b"\x00\x01", {"h": "ü"}]], 3),
        ("x.y.>", [{"subject": "x.y.z", "data": ["id", 0, 1, 0, b"raw", None]}], None),
        ("many", [b"a", [b"b", {"c": b"c"}]], 99),
    ],
)
def test_events_decode_with_python_socketio(event: str, args: list, ack_id: int | None) -> None:
    frames = wire.encode_event(event, args, ack_id)
    pkt = _python_socketio_decode(frames)
    assert pkt.data == [event, *args]
    assert pkt.id == ack_id


def test_acks_decode_with_python_socketio() -> None:
    for args in ([{"count": 1}], [None], [[None, None]], [b"bin"]):
        pkt = _python_socketio_decode(wire.encode_ack(7, args))
        assert pkt.id == 7 and pkt.data == args


def test_delivery_matches_the_generic_encoder() -> None:
    data = ["mid", 0, 1, 0, b"\x93\x01\x02\x03", {"CN-Reply": "_INBOX.x.y"}]
    fast = wire.encode_delivery("a.>", "a.b", data)
    generic = wire.encode_event("a.>", [{"subject": "a.b", "data": data}])
    assert fast == generic
    assert _python_socketio_decode(fast).data == ["a.>", {"subject": "a.b", "data": data}]


@pytest.mark.parametrize(
    "packet",
    [
        sio_packet.Packet(sio_packet.EVENT, data=["publish", ["s", "i", 0, 1, 0, b"xx"]], id=5),
        sio_packet.Packet(
            sio_packet.EVENT, data=["subscribe", {"subject": "a", "queue": "q"}], id=0
        ),
        sio_packet.Packet(sio_packet.EVENT, data=["stats", {"recv0": {"messages": 1}}]),
        sio_packet.Packet(sio_packet.ACK, data=[], id=1),
        sio_packet.Packet(sio_packet.ACK, data=[b"x"], id=2),
        sio_packet.Packet(sio_packet.CONNECT, data={"token": "t"}),
        sio_packet.Packet(sio_packet.DISCONNECT),
    ],
)
def test_decodes_what_python_socketio_encodes(packet: sio_packet.Packet) -> None:
    encoded = packet.encode()
    frames = encoded if isinstance(encoded, list) else [encoded]
    ours = decode_message(frames[0])
    for attachment in frames[1:]:
        ours.add_attachment(attachment)
    assert ours.complete
    assert ours.id == packet.id
    assert ours.data == packet.data


def test_namespaces_are_parsed() -> None:
    p = decode_message('2/admin,7["x",1]')
    assert (p.namespace, p.id, p.data) == ("/admin", 7, ["x", 1])
    p = decode_message("0/other,")
    assert p.namespace == "/other" and p.data is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "9",
        "x",
        '2["unterminated',
        "5-[]",
        "5x-[]",
        f"5{wire.MAX_ATTACHMENTS + 1}-[]",
        "2" + "1" * 20 + "[]",
        "3{}",
        "2" + "[" * 100_000,
    ],
)
def test_malformed_packets_are_protocol_errors(text: str) -> None:
    with pytest.raises(ProtocolError):
        decode_message(text)


@pytest.mark.parametrize(
    "placeholder",
    [
        {"_placeholder": True, "num": 1},
        {"_placeholder": True, "num": "0"},
        {"_placeholder": True, "num": -1},
    ],
)
def test_placeholders_must_name_real_attachments(placeholder: dict) -> None:
    p = decode_message("51-" + json.dumps(["publish", placeholder]))
    with pytest.raises(ProtocolError):
        p.add_attachment(b"x")


def test_binary_event_waits_for_all_attachments() -> None:
    p = decode_message('52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    assert not p.complete
    assert not p.add_attachment(b"a")
    assert p.add_attachment(b"b")
    assert p.data == ["e", b"a", b"b"]


def test_open_and_connect_packets() -> None:
    opened = json.loads(wire.open_packet("sid1", 25000, 20000, 8_000_000)[1:])
    assert opened == {
        "sid": "sid1",
        "upgrades": [],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 8_000_000,
    }
    assert wire.connect_packet("abc") == '40{"sid":"abc"}'
    assert (
        wire.connect_error_packet("/x", "Invalid namespace")
        == '44/x,{"message":"Invalid namespace"}'
    )


def test_base64_binary() -> None:
    assert wire.decode_base64("AAE=") == b"\x00\x01"
    with pytest.raises(ProtocolError):
        wire.decode_base64("zz!")


def test_publish_fast_path_and_placeholders_elsewhere() -> None:
    p = decode_message('51-["publish",["s","id",0,1,0,{"_placeholder":true,"num":0},{"h":1}]]')
    assert p.add_attachment(b"chunk")
    assert p.data == ["publish", ["s", "id", 0, 1, 0, b"chunk", {"h": 1}]]
    # a placeholder in the headers too: both are filled the generic way
    p = decode_message(
        '51-["publish",["s","id",0,1,0,{"_placeholder":true,"num":0},'
        '{"h":{"_placeholder":true,"num":0}}]]'
    )
    assert p.add_attachment(b"c")
    assert p.data == ["publish", ["s", "id", 0, 1, 0, b"c", {"h": b"c"}]]


@pytest.mark.parametrize(
    "data",
    [
        ["id", 0, 1, 0, b"x", None],
        ['id\u00e9"\\', 3, 0, 1, b"", {"CN-Reply": "_INBOX.a.b", "ü": [1, None]}],
        ["i", 0, True, 0, b"y", {}],
        ["i", 7, False, 1, b"z", {"n": 1.5}],
    ],
)
def test_hand_built_delivery_is_the_json_of_the_generic_one(data: list) -> None:
    for pattern, subject in [("a.>", "a.b"), ("é.*", "é.\u2028"), ('q"uote', 'q"uote')]:
        fast = wire.encode_delivery(pattern, subject, data)
        generic = wire.encode_event(pattern, [{"subject": subject, "data": data}])
        assert json.loads(fast[0][4:]) == json.loads(generic[0][4:])
        assert fast[1:] == generic[1:]
        assert _python_socketio_decode(fast).data == [pattern, {"subject": subject, "data": data}]


def _generic_decode(frames: list) -> wire.Packet:
    """Decode with the generic placeholder filling only (the reference for the fast paths)."""
    packet = decode_message(frames[0][1:])
    packet.buffers = list(frames[1:])
    packet.data = wire._fill(packet.data, packet.buffers)
    return packet


@pytest.mark.parametrize(
    "frame",
    [
        ["s", "id", 0, 1, 0, b"chunk"],
        ["s", "id", 0, 1, 0, b"chunk", {"CN-Reply": "_INBOX.x.y", "n": [1, None]}],
        ["s", "id", 0, 1, 0, b"", {"bin": b"in the headers"}],  # two buffers: generic
        ["s", "id", 0, 1, 0, bytearray(b"ba")],  # not bytes: generic
        ["s", b"odd id", 0, 1, 0, b"c"],  # binary before the chunk: generic
        ["s", "id", 0, 1, 0],  # too short: generic
    ],
)
def test_publish_encoding_fast_path_equals_the_generic_one(frame: list) -> None:
    fast = wire.encode_event("publish", [frame], 7)
    buffers: list[bytes] = []
    body = wire._extract(["publish", frame], buffers)
    ident = "7"
    generic = (
        [f"45{len(buffers)}-{ident}{wire._dumps(body)}", *buffers]
        if buffers
        else [f"42{ident}{wire._dumps(body)}"]
    )
    assert fast == generic
    # and the router reads back what was sent
    assert _generic_decode(fast).data == [
        "publish",
        [bytes(v) if isinstance(v, bytearray) else v for v in frame],
    ]


@pytest.mark.parametrize(
    "data",
    [
        ["id", 0, 1, 0, b"x", None],
        ["id", 0, 1, 0, b"x", {"h": {"_placeholder": True, "num": 0}}],  # headers too
        ["id", 0, 1, 0, b"x"],  # no headers slot
        [{"_placeholder": True, "num": 0}, 0, 1, 0, b"x", None],  # a placeholder elsewhere
    ],
)
def test_delivery_fill_fast_path_equals_the_generic_one(data: list) -> None:
    frames = wire.encode_event("a.>", [{"subject": "a.b", "data": data}])
    assert len(frames) == 2  # the chunk is the one attachment; the other references it
    fast = decode_message(frames[0][1:])
    assert fast.add_attachment(frames[1])
    assert fast.data == _generic_decode(frames).data
    assert fast.data[1]["data"][4] == b"x"
