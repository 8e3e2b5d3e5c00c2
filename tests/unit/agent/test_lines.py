"""Line handling shared by executors: splitting, masking, cutting, the error message tail (agents.md §3, §4)."""

from stackl.agent.executors.base import LINE_MAX_BYTES, TAIL_MAX_BYTES, LineSink, LineSplitter, LogLine
from stackl.agent.secrets import Masker


def test_splitter_joins_chunks_and_keeps_the_last_partial_line() -> None:
    splitter = LineSplitter(100)
    assert splitter.feed(b"one\ntw") == [("one", 0)]
    assert splitter.feed(b"o\r\nthr") == [("two", 0)]
    assert splitter.flush() == [("thr", 0)]
    assert splitter.flush() == []


def test_splitter_counts_what_it_drops() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdefgh") == []
    assert splitter.feed(b"ij\nk\n") == [("abcd", 6), ("k", 0)]


async def test_sink_masks_then_cuts() -> None:
    lines: list[LogLine] = []
    sink = LineSink(lines.append, Masker({"token": "hunter22"}))
    await sink.line("stdout", "password hunter22")
    await sink.line("stderr", "x" * (LINE_MAX_BYTES + 10))
    await sink.system("note hunter22")
    assert lines[0] == LogLine("stdout", "password ********")
    assert lines[1].line == "x" * LINE_MAX_BYTES + "…[truncated 10 bytes]"
    assert lines[2] == LogLine("system", "note ********")


async def test_sink_accepts_async_emit() -> None:
    lines: list[LogLine] = []

    async def emit(line: LogLine) -> None:
        lines.append(line)

    sink = LineSink(emit, Masker({}))
    await sink.line("stdout", "hello")
    assert lines == [LogLine("stdout", "hello")]


async def test_error_message_is_summary_then_tail_of_output() -> None:
    sink = LineSink(lambda _line: None, Masker({"token": "hunter22"}))
    for i in range(10_000):
        await sink.line("stdout", f"line {i} hunter22")
    await sink.system("system lines are not part of it")
    message = sink.error_message("command exited with code 1 (hunter22)")
    assert len(message.encode()) <= TAIL_MAX_BYTES
    assert message.endswith("line 9999 ********")
    assert "hunter22" not in message
    assert "system lines" not in message
    short = LineSink(lambda _line: None, Masker({}))
    assert short.error_message("timed out after 5 s") == "timed out after 5 s"
