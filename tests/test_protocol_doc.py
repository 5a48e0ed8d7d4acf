"""docs/protocol.md stays true: its tables match the code's constants."""

from __future__ import annotations

import re
import sys
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


MiB = 1024 * 1024
KiB = 1024
# The document's text with its line breaks and indentation as single spaces.
FLAT = " ".join(DOC.split())


def _names(text: str) -> set[str]:
    """The well-known handle names text mentions."""
    return set(re.findall(r"\b[A-Z][A-Z_]+\b", text)) & set(handles.WELL_KNOWN)


def test_command_output_window_matches():
    from transport import commands
    from transport.core import commands as target_commands

    assert (commands.STARTED, commands.ACKS) == (target_commands.STARTED, target_commands.ACKS)
    assert f"A command's output has a window of {target_commands.OUTPUT_WINDOW // MiB} MiB" in FLAT
    assert f"Once {target_commands.WINDOW_OPENS // MiB} MiB of messages" in FLAT
    assert f"the target sends `({commands.ACKS}, handle)` on the output handle" in FLAT
    assert f"first `({commands.STARTED}, b'')`: the command has started" in FLAT
    assert commands.ACK_EVERY == MiB and "again after each further MiB it receives" in FLAT
    assert (f"reads no more of the command's output while {target_commands.OUTPUT_WINDOW // MiB} "
            "MiB are unacknowledged") in FLAT
    assert f"input larger than min({commands.INLINE_INPUT // MiB} MiB, `max_message_size` / 2)" in FLAT


def test_file_transfer_window_chunks_and_give_up_match():
    from transport import files
    from transport.core import files as target_files

    assert files.CHUNK == target_files.CHUNK and files.ACK_TIMEOUT == target_files.ACK_TIMEOUT
    assert (f"File transfer runs in chunks of {files.CHUNK // KiB} KiB and windows of "
            f"{files.WINDOW // MiB} MiB") in FLAT
    assert f"with the {files.WINDOW // MiB} MiB window" in FLAT
    assert f"either side gives up after {files.ACK_TIMEOUT:g} s" in FLAT
    assert f"acknowledges each later chunk with `{target_files.GAVE_UP}`" in FLAT
    assert f"sends the acknowledgement `{target_files.GAVE_UP}`" in FLAT


def test_tunnel_words_window_and_limits_match():
    from transport import tunnels as controller_tunnels
    from transport.core import tunnels

    for word in (f"`({tunnels.DATA}, bytes)` DATA", f"`({tunnels.ACK}, n)` ACK",
                 f"`({tunnels.EOF}, 0)` EOF", f"`({tunnels.RESET}, 0)` RESET",
                 f"`({tunnels.PEER}, handle)` PEER"):
        assert word in FLAT
    window, chunk = tunnels.WINDOW // MiB, tunnels.CHUNK // KiB
    assert f"at most {chunk} KiB a read, and a read only while less than {window} MiB" in FLAT
    assert f"at most {window} MiB + {chunk} KiB - 1 in flight" in FLAT
    assert f"window and a chunk ({window} MiB + {chunk} KiB) unwritten" in FLAT
    assert f"connects (giving up after {tunnels.CONNECT_TIMEOUT:g} s)" in FLAT
    assert f"at most {controller_tunnels.MAX_TUNNELS} tunnels open per forward" in FLAT


def test_module_request_limits_match():
    from transport import modules
    from transport.core import forwarding, relaying

    assert f"beyond {modules.MAX_HELD} held requests from one context" in FLAT
    assert f"requests from a context with {modules.MAX_WAITING} queued and not yet served" in FLAT
    backlog = relaying.ANSWER_BACKLOG // MiB
    assert modules.BACKLOG_LIMIT == relaying.ANSWER_BACKLOG
    assert f"while more than {backlog} MiB wait to be written" in FLAT
    assert f"a request from a child with over {backlog} MiB unread" in FLAT
    assert f"(over {relaying.MAX_NAME} characters, or not dotted identifiers)" in FLAT
    assert f"Its own import gives up after {forwarding.REQUEST_TIMEOUT:g} s" in FLAT
    for probe in modules.STDLIB_PROBES:
        assert f"`{probe}`" in FLAT


def test_connect_answer_margin_matches():
    from transport import controller

    assert f"It waits `connect_timeout` + {controller.ANSWER_MARGIN:g} s" in FLAT


def test_log_forwarding_limits_match():
    from transport import context
    from transport.core import logs

    assert f"the text cut at {logs.MAX_TEXT // KiB} KiB" in FLAT
    assert f"at most {context.MAX_REMOTE_LOGGERS} logger names per context" in FLAT


def test_codec_hash_limit_matches():
    import pytest

    from transport.core import codec

    found = re.search(r"of more than (\d+) keys whose count exceeds the number of distinct "
                      r"hashes among its keys by more than (\d+) is rejected", FLAT)
    assert found, "the hash limit is not documented"
    least, excess = map(int, found.groups())
    assert least == excess  # (the code's two bounds are one number)
    modulus = sys.hash_info.modulus  # every multiple of it hashes to 0

    def same_hash(count):
        return frozenset(k * modulus for k in range(count))

    assert len(codec.decode(codec.encode(same_hash(excess + 1)))) == excess + 1
    with pytest.raises(codec.CodecError):
        codec.decode(codec.encode(same_hash(excess + 2)))


def _well_known_policies() -> dict[str, str]:
    """(Run in a target.) The accept policy of each well-known handle it has a handler for."""
    from transport.core import dispatch

    table = dispatch.current.router._handlers
    return {name: table[handle].accept.__name__ for name, handle in handles.WELL_KNOWN.items()
            if handle in table}


def _documented_policies() -> dict[str, str | None]:
    """What the direction column of the handle table says of each handle's handler."""
    policies: dict[str, str | None] = {}
    for row in _table_rows("## Handles")[1:]:
        direction = row[2]
        if "accepted from any context" in direction:
            policies[row[1]] = "accept_from_anyone"
        elif direction.startswith("parent side"):
            policies[row[1]] = "accept_from_parent"
        elif direction.startswith("child"):
            policies[row[1]] = "accept_from_child"
        else:
            policies[row[1]] = None  # (BOOT_CONFIG: no handler)
    return policies


def test_handle_directions_match_the_accept_policies(router, ctx):
    documented = _documented_policies()
    assert set(documented) == set(handles.WELL_KNOWN)
    core = router._core._handlers
    on_controller = {name: core[handle].accept.__name__ for name, handle in handles.WELL_KNOWN.items()
                     if handle in core}
    router.local(via=ctx)  # an intermediary: it has every handler a target may have
    on_target = ctx.call(_well_known_policies)
    intermediary_only = re.search(r"A target has its handlers for (.*?) only once it has "
                                  r"started a child", FLAT)
    assert intermediary_only, "the handlers only intermediaries have are not documented"
    on_leaf = router.local().call(_well_known_policies)
    assert set(on_target) - set(on_leaf) == _names(intermediary_only.group(1))
    for where, policies in (("target", on_target), ("controller", on_controller)):
        for name, policy in policies.items():
            assert policy == documented[name], f"{name} on the {where}"
    found = re.search(r"Every target has a handler for each handle except (.*?); "
                      r"the controller has one for (.*?) only\.", FLAT)
    assert found, "which contexts handle which handles is not documented"
    assert set(on_target) == set(handles.WELL_KNOWN) - _names(found.group(1))
    assert set(on_controller) == _names(found.group(2))
    rule = re.search(r"- ([A-Z_, ]+?(?: and [A-Z_]+)) are accepted only from the parent side", FLAT)
    assert rule, "the routing rules do not list the parent-side handles"
    assert _names(rule.group(1)) == {name for name, policy in on_target.items()
                                     if policy == "accept_from_parent"}
