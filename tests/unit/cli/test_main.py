"""How the CLI lists and shows jobs (the jobs table, the status lines of the caller's
contract, the --meta filter) and reads its flags (worker.cli.main)."""

from __future__ import annotations

import pytest

from tests.unit.job_fakes import listed_job as job
from worker.cli.main import contract_lines, format_table, has_meta, main, meta_pair, metadata

VIDEO, AUDIO = "https://videos.example.com/v.mp4", "https://videos.example.com/a.wav"


def test_jobs_table_has_a_header_and_one_row_per_job() -> None:
    table = format_table([job(), job(id="b" * 32, status="failed", error="gone")]).splitlines()
    assert table[0].split()[:2] == ["JOB", "STATUS"]
    assert len(table) == 3 and "gone" in table[2]


def test_a_meta_flag_without_an_equals_sign_is_a_usage_error_naming_it(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["submit", VIDEO, AUDIO, "--meta", "campaign"])

    assert exited.value.code == 2
    assert "argument --meta: expected NAME=VALUE, got 'campaign'" in capsys.readouterr().err


def test_meta_flags_split_at_the_first_equals_sign() -> None:
    assert meta_pair("note=a=b") == ("note", "a=b")
    assert metadata([meta_pair("a=1"), meta_pair("b=")]) == {"a": "1", "b": ""}
    assert metadata(None) is None


def test_a_meta_name_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="--meta 'a' is given twice"):
        metadata([("a", "1"), ("a", "2")])


def test_submit_needs_both_urls_or_a_batch(capsys) -> None:
    assert main(["submit", VIDEO]) == 2
    assert "submit needs VIDEO_URL and AUDIO_URL" in capsys.readouterr().err


def test_a_batch_takes_no_urls_keys_or_metadata_on_the_command_line(capsys) -> None:
    assert main(["submit", "--batch", "jobs.csv", "--meta", "a=1"]) == 2
    assert "with --batch" in capsys.readouterr().err


def test_jobs_match_every_meta_pair_given() -> None:
    tagged = job(metadata={"campaign": "spring", "user": "42"})

    assert has_meta(tagged, [("campaign", "spring")])
    assert has_meta(tagged, [("campaign", "spring"), ("user", "42")])
    assert not has_meta(tagged, [("campaign", "spring"), ("user", "7")])
    assert not has_meta(job(), [("campaign", "spring")])
    assert has_meta(job(), None)


def test_status_lines_show_the_keys_the_adoption_and_the_metadata() -> None:
    adopted = job(
        akool_id="ak1",
        idempotency_key="order-17",
        archive_key="spring/17.mp4",
        adopted_ts=1_700_000_000.0,
        metadata={"user": "42", "campaign": "spring"},
    )

    assert contract_lines(adopted) == [
        "idempotency key: order-17",
        "archive key: spring/17.mp4",
        "adopted: submitted to Akool by other code (Akool id ak1)",
        "meta.campaign: spring",
        "meta.user: 42",
    ]
    assert contract_lines(job()) == []


def test_status_lines_escape_control_characters_that_would_drive_a_terminal() -> None:
    hostile = job(metadata={"note\x1b[2J": "a\x1b]0;owned\x07b\nc"}, idempotency_key="k\x9b")
    lines = contract_lines(hostile)
    assert not any(c in "".join(lines) for c in "\x1b\x07\x9b\n")
    assert "meta.note\\x1b[2J: a\\x1b]0;owned\\x07b\\x0ac" in lines


def test_status_lines_list_a_translations_extra_files_archived() -> None:
    done = job(
        kind="video_translation",
        assets={"translated_srt_url": "s3://b/k.translated.srt", "original_srt_url": "s3://b/k.o"},
    )
    assert contract_lines(done) == [
        "extra file original_srt_url: s3://b/k.o",
        "extra file translated_srt_url: s3://b/k.translated.srt",
    ]
