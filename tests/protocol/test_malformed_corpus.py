from __future__ import annotations

import pytest

from tableside.protocol import JsonCodec, Limits, MsgpackCodec, ProtocolError, read_client_frame

from .corpus import MalformedCase, malformed_frames, valid_frames

LIMITS = Limits()
CODECS: dict[str, JsonCodec | MsgpackCodec] = {"json": JsonCodec(LIMITS), "msgpack": MsgpackCodec(LIMITS)}
CASES = malformed_frames()


def test_corpus_is_large_and_covers_both_codecs() -> None:
    assert len(CASES) >= 200
    assert {c.codec for c in CASES} == {"json", "msgpack"}
    assert {c.expected_code for c in CASES} == {"bad_request", "unknown_type", "too_large"}
    assert any(c.fatal for c in CASES)


@pytest.mark.parametrize("codec_name, frame, msg_type", valid_frames())
def test_baselines_are_valid(codec_name: str, frame: str | bytes, msg_type: str) -> None:
    # The field cases mutate these; if a baseline were itself invalid the corpus would prove nothing.
    assert read_client_frame(CODECS[codec_name], frame, LIMITS) is not None


@pytest.mark.parametrize("case", CASES, ids=[f"{i}-{c.codec}-{c.note[:40]}" for i, c in enumerate(CASES)])
def test_malformed_frame(case: MalformedCase) -> None:
    try:
        read_client_frame(CODECS[case.codec], case.frame, LIMITS)
    except ProtocolError as exc:
        assert exc.code == case.expected_code, repr(exc)
        assert exc.fatal is case.fatal
        # Messages are bounded, never an echo of the (possibly 64 KiB) input.
        assert len(exc.message) <= 200
        assert exc.request_id is None or len(exc.request_id) <= LIMITS.max_id_chars
    else:
        pytest.fail(f"no ProtocolError for {case.note!r}")
