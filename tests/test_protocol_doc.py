"""docs/protocol.md stays true: its tables match the code's constants."""

from __future__ import annotations

import re
from pathlib import Path

from transport.core import framing, handles
from transport.core.handshake import (
    FIRST_STAGE_MARKER,
    PAYLOAD_HEADER_SIZE,
    READY_MARKER,
    UNSUPPORTED_PREFIX,
    WANT_SOURCE_MARKER,
    payload_header,
)

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


def _table_rows(heading: str) -> list[list[str]]:
    section = DOC.split(heading, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#") or (rows and not line.startswith("|")):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_every_well_known_handle_is_documented_with_its_number():
    rows = _table_rows("## Handles")
    documented = {row[1]: int(row[0]) for row in rows[1:] if row[0].isdigit()}
    assert documented == handles.WELL_KNOWN
    assert f"FIRST_DYNAMIC_HANDLE` = {handles.FIRST_DYNAMIC_HANDLE}" in DOC


def test_flags_are_documented():
    rows = _table_rows("Flags:")
    documented = {row[0]: int(row[1], 16) for row in rows[1:]}
    code = {name: getattr(handles, name) for name in dir(handles) if name.startswith("FLAG_")}
    assert documented == code


def test_header_layout_matches():
    rows = _table_rows("## Framing")
    fields = [row[0] for row in rows[1:]]
    assert fields == ["magic", "flags", "dst", "src", "handle", "reply_to", "length"]
    assert framing.HEADER.format == ">HHIIIII"
    assert f"{framing.HEADER_SIZE}-byte" in DOC
    assert f"`{framing.MAGIC:#06x}`" in DOC
    assert f"{framing.DEFAULT_MAX_MESSAGE_SIZE // (1024 * 1024)} MiB" in DOC


def test_boot_markers_match():
    for marker in (READY_MARKER, FIRST_STAGE_MARKER, WANT_SOURCE_MARKER):
        text = marker.decode().replace("\n", "\\n").replace("\x00", "\\0")
        assert f"`{text}`" in DOC
    assert UNSUPPORTED_PREFIX.decode().strip() in DOC


def test_payload_header_is_documented():
    assert f"{PAYLOAD_HEADER_SIZE}-byte payload header" in DOC
    assert "`%10d %10d %-17s\\n`" in DOC
    assert payload_header(1, 2, "source") == b"%10d %10d %-17s\n" % (1, 2, b"source")


def test_codec_tags_are_documented():
    rows = _table_rows("## Payload values")
    documented = set()
    for row in rows[1:]:
        documented.update(re.findall(r"`(\w)`", row[0]))
    source = (Path(handles.__file__).parent / "codec.py").read_text()
    used = set(re.findall(r"tag == b'(\w)'", source))
    used.update(*re.findall(r"tag in b'(\w+)'", source))
    assert used == documented


def test_live_input_words_and_window_match():
    from transport import commands
    from transport.core import commands as target_commands

    words = (commands.INPUT_READY, commands.INPUT_TAKEN, commands.INPUT_ENDED,
             commands.INPUT_TERMINAL)
    assert words == (0, 1, 2, 3) == (target_commands.INPUT_READY, target_commands.INPUT_TAKEN,
                                     target_commands.INPUT_ENDED, target_commands.INPUT_TERMINAL)
    assert commands.EXITED == target_commands.EXITED
    assert "`(0, handle)`" in DOC and "`(1, bytes written)`" in DOC and "`(2, 0)`" in DOC
    assert f"`({commands.EXITED}, reply)`" in DOC and "`(3, handle)`" in DOC
    assert f"never has more than {commands.INPUT_WINDOW // 1024} KiB" in DOC
