"""How `lipsync submit --batch` reads a CSV file (worker.cli.batch): the header's rules, the
meta columns, the line numbers of bad rows, the derived idempotency keys, BOMs and blank
lines, and the size limit. Nothing here touches Redis."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.cli.batch import (
    DERIVED_KEY_PREFIX,
    MAX_BATCH_ROWS,
    BadBatch,
    derived_key,
    parse_batch,
    read_batch,
    row_request,
    tally,
)
from worker.contract import MAX_METADATA_KEY_CHARS, lipsync_request

V1, V2 = "https://videos.example.com/1.mp4", "https://videos.example.com/2.mp4"
AUDIO = "https://videos.example.com/voice.wav"


def parse(text: str):
    return parse_batch(io.StringIO(text, newline=""))


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(BadBatch) as refused:
        parse(text)
    return refused.value.problems


def test_each_row_becomes_a_checked_request_with_its_line_number() -> None:
    rows = parse(f"video_url,audio_url\n{V1},{AUDIO}\n{V2},{AUDIO}\n")

    assert [row.line for row in rows] == [2, 3]
    assert [row.request.fields["video_url"] for row in rows] == [V1, V2]
    assert rows[0].request.metadata is None and rows[0].request.archive_key is None


def test_meta_columns_become_the_rows_metadata_and_an_empty_cell_is_not_given() -> None:
    rows = parse(
        "video_url,audio_url,meta.campaign,meta.user,archive_key,idempotency_key\n"
        f"{V1},{AUDIO},spring,42,spring/1.mp4,order-1\n"
        f"{V2},{AUDIO},spring,,,\n"
    )

    first, second = (row.request for row in rows)
    assert first.metadata == {"campaign": "spring", "user": "42"}
    assert first.archive_key == "spring/1.mp4" and first.idempotency_key == "order-1"
    assert second.metadata == {"campaign": "spring"} and second.archive_key is None
    assert second.idempotency_key == derived_key(second)


def test_the_columns_may_come_in_any_order_and_their_names_may_be_padded() -> None:
    (row,) = parse(f" audio_url , video_url\n{AUDIO},{V1}\n")

    assert row.request.fields["video_url"] == V1 and row.request.fields["audio_url"] == AUDIO


def test_an_unknown_column_is_refused_and_named() -> None:
    (problem,) = problems(f"video_url,audio_url,webhook\n{V1},{AUDIO},x\n")

    assert problem[0] == 1 and "unknown column 'webhook'" in problem[1]


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("video_url", "the header has no audio_url column"),
        ("audio_url,video_url,video_url", "column 'video_url' is named twice"),
        ("video_url,audio_url,meta.", "unknown column 'meta.'"),
    ],
)
def test_a_header_without_a_required_column_or_with_a_column_twice_is_refused(
    header: str, says: str
) -> None:
    assert any(says in why for _, why in problems(header + "\n"))


def test_an_empty_file_is_refused() -> None:
    assert "empty" in problems("\n\n")[0][1]


def test_a_header_alone_is_a_batch_of_no_rows() -> None:
    assert parse("video_url,audio_url\n") == []


def test_every_bad_row_is_reported_with_its_line_and_the_reason() -> None:
    text = (
        "\n"  # line 1: blank, skipped
        "video_url,audio_url,meta.note\n"  # line 2
        f"{V1},{AUDIO},ok\n"  # line 3
        f"ftp://example.com/v.mp4,{AUDIO},\n"  # line 4
        "\n"  # line 5
        f'{V2},{AUDIO},"two\nlines"\n'  # lines 6-7: one record, fine
        f"{V2},{AUDIO}\n"  # line 8: a field short
        f"{V1},{AUDIO},{'x' * 501}\n"  # line 9: a value too long
    )

    found = problems(text)

    assert [line for line, _ in found] == [4, 8, 9]
    assert "video_url must be an http(s) URL" in found[0][1]
    assert "has 2 fields; the header names 3" in found[1][1]
    assert "at most 500" in found[2][1]


def test_a_meta_column_with_a_name_too_long_is_refused_on_its_rows() -> None:
    name = "n" * (MAX_METADATA_KEY_CHARS + 1)
    found = problems(f"video_url,audio_url,meta.{name}\n{V1},{AUDIO},v\n")

    assert found[0][0] == 2 and "metadata keys must be 1 to 40 characters" in found[0][1]


def test_two_rows_with_one_idempotency_key_for_different_requests_are_refused() -> None:
    found = problems(
        f"video_url,audio_url,idempotency_key\n{V1},{AUDIO},k\n{V2},{AUDIO},k\n{V1},{AUDIO},k\n"
    )

    assert found == [(3, "idempotency_key 'k' is also on line 2, for another request")]


def test_two_rows_with_one_archive_key_for_different_requests_are_refused() -> None:
    found = problems(f"video_url,audio_url,archive_key\n{V1},{AUDIO},a.mp4\n{V2},{AUDIO},a.mp4\n")

    assert found == [(3, "archive_key 'a.mp4' is also on line 2, for another request")]


def test_equal_rows_get_one_derived_key_and_are_one_job() -> None:
    rows = parse(f"video_url,audio_url,archive_key\n{V1},{AUDIO},a.mp4\n{V1},{AUDIO},a.mp4\n")

    assert rows[0].request == rows[1].request


def test_a_derived_key_is_stable_and_differs_between_rows() -> None:
    text = f"video_url,audio_url\n{V1},{AUDIO}\n{V2},{AUDIO}\n"
    first, second = (row.request.idempotency_key for row in parse(text))

    assert first == parse(text)[0].request.idempotency_key
    assert first != second
    assert first is not None and first.startswith(DERIVED_KEY_PREFIX)
    assert first == DERIVED_KEY_PREFIX + lipsync_request(V1, AUDIO).digest


def test_a_derived_key_depends_on_the_metadata_and_the_archive_key() -> None:
    plain = lipsync_request(V1, AUDIO)
    tagged = lipsync_request(V1, AUDIO, metadata={"a": "1"})
    placed = lipsync_request(V1, AUDIO, archive_key="x.mp4")

    assert len({derived_key(plain), derived_key(tagged), derived_key(placed)}) == 3


def test_a_file_with_more_rows_than_the_limit_is_refused_whole() -> None:
    rows = "".join(f"{V1}?n={i},{AUDIO}\n" for i in range(MAX_BATCH_ROWS + 1))

    assert problems("video_url,audio_url\n" + rows) == [
        (0, f"the file has more than {MAX_BATCH_ROWS:,} rows; split it")
    ]


def test_a_file_of_exactly_the_limit_is_read() -> None:
    rows = "".join(f"{V1}?n={i},{AUDIO}\n" for i in range(MAX_BATCH_ROWS))

    assert len(parse("video_url,audio_url\n" + rows)) == MAX_BATCH_ROWS


def test_a_utf8_bom_and_crlf_line_ends_and_blank_lines_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    text = f"video_url,audio_url,meta.name\r\n\r\n{V1},{AUDIO},Zoë\r\n   \r\n{V2},{AUDIO},\r\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    rows = read_batch(str(path))

    assert [row.line for row in rows] == [3, 5]
    assert rows[0].request.metadata == {"name": "Zoë"}


def test_a_file_that_is_not_utf8_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"video_url,audio_url,meta.n\n{V1},{AUDIO},Zo\xeb\n".encode("latin-1"))

    with pytest.raises(BadBatch, match="latin1.csv: nothing submitted") as refused:
        read_batch(str(path))
    assert "not UTF-8" in str(refused.value)


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(BadBatch, match="cannot be read"):
        read_batch(str(tmp_path / "none.csv"))


def test_the_error_lists_at_most_100_bad_rows_and_counts_the_others() -> None:
    text = "video_url,audio_url\n" + "ftp://x,y\n" * 150

    with pytest.raises(BadBatch) as refused:
        parse(text)
    message = str(refused.value)
    assert message.count("line ") == 100 and "... and 50 more" in message


def test_the_wait_tally_counts_each_ending() -> None:
    ended = {"a": "archived", "b": "archived", "c": "failed", "d": "cancelled", "e": None}

    assert tally(ended, 7) == "5/7 ended: 2 archived, 1 failed, 1 cancelled, 1 gone"
    assert tally({}, 3) == "0/3 ended"


_names = st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=8)
_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)


@settings(max_examples=100, deadline=None, database=None)
@given(
    meta=st.dictionaries(_names, _values, max_size=5),
    archive=st.sampled_from(["", "out/a.mp4", "ü/b.mp4"]),
    order=st.randoms(use_true_random=False),
)
def test_the_derived_key_is_the_same_whatever_the_column_order(
    meta: dict[str, str], archive: str, order
) -> None:
    cells = {"video_url": V1, "audio_url": AUDIO, "archive_key": archive}
    cells.update({f"meta.{name}": value for name, value in meta.items()})
    columns = list(cells)
    shuffled = columns[:]
    order.shuffle(shuffled)

    def key(names: list[str]) -> str | None:
        out = io.StringIO()
        csv.writer(out).writerows([names, [cells[n] for n in names]])
        (row,) = parse(out.getvalue())
        return row.request.idempotency_key

    assert key(columns) == key(shuffled)
    given_meta = {name: value for name, value in meta.items() if value}
    expected = lipsync_request(V1, AUDIO, metadata=given_meta or None, archive_key=archive or None)
    assert key(columns) == derived_key(expected)


@settings(max_examples=100, deadline=None, database=None)
@given(first=st.integers(0, 10**6), second=st.integers(0, 10**6))
def test_rows_that_ask_for_different_videos_get_different_keys(first: int, second: int) -> None:
    one = row_request(["video_url", "audio_url"], [f"{V1}?n={first}", AUDIO])
    two = row_request(["video_url", "audio_url"], [f"{V1}?n={second}", AUDIO])

    assert (one.idempotency_key == two.idempotency_key) == (first == second)
