"""Akool's video kinds in the `lipsync` command, without Redis: `submit --kind` and its
flags, the `kind` column of a batch and each kind's columns, the derived keys of lip-sync
files made before kinds, the KIND column and the `--kind` filter of `jobs`, and the kind
lines of `status`. Every refusal here is raised before anything would be stored."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from tests.unit.job_fakes import listed_job as job
from worker.cli.batch import BadBatch, derived_key, parse_batch
from worker.cli.kinds import ARGS, KIND_NAMES, kind_request, read_args
from worker.cli.main import format_table, kind_lines, listed, main
from worker.contract import lipsync_request
from worker.video_kinds import character_swap_request, talking_photo_request

URL = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
IMAGE = "https://images.example.com/face.png"


def parse(text: str):
    return parse_batch(io.StringIO(text, newline=""))


def problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(BadBatch) as refused:
        parse(text)
    return refused.value.problems


# --- each kind's arguments -------------------------------------------------------------------


def test_every_kind_of_the_akool_table_has_its_arguments_in_the_cli() -> None:
    from worker.akool import KINDS

    assert set(KIND_NAMES) == set(KINDS)
    assert all(len({a.flag for a in args}) == len(args) for args in ARGS.values())


def test_each_kinds_text_is_read_as_the_type_its_call_takes() -> None:
    swap = read_args(
        "character_swap", {"image_url": IMAGE, "video_url": URL, "duration": "10"}, flags=False
    )
    avatar = read_args(
        "talking_avatar",
        {"elements": '[{"type": "image", "url": "' + IMAGE + '"}]', "avatar_from": "3"},
        flags=False,
    )
    translation = read_args(
        "video_translation", {"video_url": URL, "language": "fr", "lipsync": "TRUE"}, flags=False
    )

    assert swap["duration"] == 10 and isinstance(swap["duration"], int)
    assert read_args("character_swap", {"image_url": IMAGE, "video_url": URL, "duration": "2.5"},
                     flags=False)["duration"] == 2.5  # fmt: skip
    assert avatar == {"elements": [{"type": "image", "url": IMAGE}], "avatar_from": 3}
    assert translation["lipsync"] is True
    assert kind_request("character_swap", swap).digest == (
        character_swap_request(IMAGE, URL, duration=10).digest
    )


@pytest.mark.parametrize(
    ("kind", "texts", "says"),
    [
        ("talking_photo", {"photo_url": IMAGE}, "kind talking_photo needs audio_url"),
        ("lipsync", {"video_url": URL, "audio_url": AUDIO, "prompt": "x"}, "prompt is not an"),
        ("character_swap", {"image_url": IMAGE, "video_url": URL, "duration": "ten"}, "number"),
        ("talking_avatar", {"elements": "[", "avatar_from": "3"}, "elements must be JSON"),
        ("talking_avatar", {"elements": "[]", "avatar_from": "two"}, "whole number"),
        ("video_translation", {"video_url": URL, "language": "fr", "lipsync": "maybe"}, "true or"),
        ("slideshow", {}, "kind must be one of lipsync, talking_photo"),
    ],
)
def test_a_missing_foreign_or_unreadable_argument_is_refused_naming_it(
    kind: str, texts: dict[str, str], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        read_args(kind, texts, flags=False)


# --- submit --kind: refusals exit 2 before anything is stored ----------------------------------


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--kind", "talking_photo", "--photo", IMAGE], "kind talking_photo needs --audio"),
        (["--kind", "talking_photo", URL, AUDIO], "--kind talking_photo takes its arguments as"),
        (["--prompt", "smile", URL, AUDIO], "--prompt is not an argument of kind lipsync"),
        (["--video", URL, URL, AUDIO], "give the URLs as VIDEO_URL AUDIO_URL or as --video"),
        (
            ["--kind", "talking_photo", "--photo", IMAGE, "--audio", AUDIO, "--resolution", "4k"],
            "resolution must be one of '720', '1080'",
        ),
        (
            ["--kind", "character_swap", "--image", IMAGE, "--video", URL, "--duration", "121"],
            "duration must be 1 to 120 seconds",
        ),
        (
            ["--kind", "video_translation", "--video", "ftp://x/y.mp4", "--language", "fr"],
            "video_url must be an http(s) URL",
        ),
        (
            ["--kind", "talking_avatar", "--elements", "/nonexistent/e.json", "--avatar-from", "3"],
            "--elements '/nonexistent/e.json' cannot be read",
        ),  # fmt: skip
        (["--batch", "jobs.csv", "--kind", "talking_photo"], "with --batch, the kinds"),
        (["--batch", "jobs.csv", "--prompt", "x"], "with --batch, the kinds"),
    ],
)
def test_a_submit_refused_for_its_kind_exits_2_saying_why(
    argv: list[str], says: str, capsys
) -> None:
    assert main(["submit", *argv]) == 2
    assert says in capsys.readouterr().err


def test_an_elements_file_that_is_not_a_list_of_elements_is_refused_by_the_check(
    tmp_path: Path, capsys
) -> None:
    elements = tmp_path / "elements.json"
    elements.write_text(json.dumps([{"type": "video", "url": URL}]))

    argv = ["submit", "--kind", "talking_avatar", "--elements", str(elements)]
    assert main([*argv, "--avatar-from", "3"]) == 2
    assert "elements[0].type must be one of" in capsys.readouterr().err


def test_an_unknown_kind_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["submit", "--kind", "slideshow"])
    assert exited.value.code == 2


# --- batches with a kind column -----------------------------------------------------------------


def test_a_lipsync_file_made_before_kinds_keeps_its_derived_keys() -> None:
    # Keys computed by the release before kinds: a re-run of such a file submits nothing new.
    rows = parse(
        "video_url,audio_url,meta.row,archive_key\n"
        "https://videos.example.com/1.mp4,https://videos.example.com/voice.wav,7,a/b.mp4\n"
        "https://videos.example.com/2.mp4,https://videos.example.com/voice.wav,,\n"
    )

    assert [row.request.idempotency_key for row in rows] == [
        "batch:85402ea69a14922b6c4c3f73bc89238bae64009b860bcb06f84677e11e034752",
        "batch:2e59e2b79c8883973b9b8d475bd8c41f9a677be2931da1ab7a6c4b04f98dbe33",
    ]


def test_a_kind_column_of_lipsync_or_empty_is_the_same_lipsync_request() -> None:
    plain = parse(f"video_url,audio_url\n{URL},{AUDIO}\n")
    kinded = parse(f"kind,video_url,audio_url\nlipsync,{URL},{AUDIO}\n,{URL},{AUDIO}\n")

    assert [r.request for r in kinded] == [plain[0].request, plain[0].request]
    assert plain[0].request.digest == lipsync_request(URL, AUDIO).digest


def test_each_row_of_a_mixed_file_is_its_kinds_request_with_a_derived_key() -> None:
    rows = parse(
        "kind,video_url,audio_url,photo_url,image_url,prompt,duration,meta.n\n"
        f"talking_photo,,{AUDIO},{IMAGE},,smile,,1\n"
        f"character_swap,{URL},,,{IMAGE},,12,2\n"
        f"lipsync,{URL},{AUDIO},,,,,3\n"
    )

    assert [row.kind for row in rows] == ["talking_photo", "character_swap", "lipsync"]
    expected = talking_photo_request(IMAGE, AUDIO, prompt="smile", metadata={"n": "1"})
    assert rows[0].request.digest == expected.digest
    assert rows[0].request.idempotency_key == derived_key(expected)
    assert rows[1].args == {"image_url": IMAGE, "video_url": URL, "duration": 12}
    assert len({row.request.idempotency_key for row in rows}) == 3


def test_a_translation_and_an_avatar_row_read_their_flag_and_json_cells() -> None:
    elements = json.dumps([{"type": "image", "url": IMAGE}]).replace('"', '""')
    rows = parse(
        "kind,video_url,language,lipsync,elements,avatar_from,width\n"
        f"video_translation,{URL},fr,true,,,\n"
        f'talking_avatar,,,,"{elements}",3,720\n'
    )

    assert rows[0].request.fields["body"]["lipsync"] is True
    assert rows[1].args["elements"] == [{"type": "image", "url": IMAGE}]
    assert rows[1].request.fields["body"]["width"] == 720


def test_bad_rows_of_new_kinds_are_named_by_line_and_nothing_is_read() -> None:
    found = problems(
        "kind,video_url,audio_url,photo_url,prompt,duration\n"
        f"talking_photo,,{AUDIO},{IMAGE},,\n"  # line 2: fine
        f"talking_photo,,,{IMAGE},,\n"  # line 3: no audio
        f"lipsync,{URL},{AUDIO},,smile,\n"  # line 4: a prompt is not lip-sync's
        f"character_swap,{URL},,,,\n"  # line 5: no image
        f"slideshow,{URL},{AUDIO},,,\n"  # line 6
        f"talking_photo,,{AUDIO},{IMAGE},{'x' * 501},\n"  # line 7: prompt too long
    )

    assert [line for line, _ in found] == [3, 4, 5, 6, 7]
    assert "kind talking_photo needs audio_url" in found[0][1]
    assert "prompt is not an argument of kind lipsync" in found[1][1]
    assert "kind character_swap needs image_url" in found[2][1]
    assert "kind must be one of" in found[3][1]
    assert "prompt is 501 characters long" in found[4][1]


def test_a_header_with_a_kind_column_needs_no_lipsync_columns_but_unknown_ones_are_refused() -> (
    None
):
    assert parse(f"kind,photo_url,audio_url\ntalking_photo,{IMAGE},{AUDIO}\n")[0].kind == (
        "talking_photo"
    )
    (problem,) = problems("kind,photo,audio_url\n")
    assert "unknown column 'photo'" in problem[1] and "photo_url" in problem[1]


# --- jobs and status ---------------------------------------------------------------------------


def test_the_jobs_table_has_a_kind_column() -> None:
    table = format_table([job(), job(id="b" * 32, kind="talking_photo")]).splitlines()

    assert table[0].split()[:3] == ["JOB", "STATUS", "KIND"]
    assert table[1].split()[2] == "lipsync" and table[2].split()[2] == "talking_photo"


def test_jobs_kind_and_status_filter_together() -> None:
    photo = job(kind="talking_photo")
    wanted = argparse.Namespace(status=None, kind="talking_photo")

    assert listed(photo, wanted) and not listed(job(), wanted)
    assert not listed(photo, argparse.Namespace(status="failed", kind="talking_photo"))
    assert listed(job(), argparse.Namespace(status=None, kind=None))


def test_status_shows_the_kind_and_a_kinds_akool_body_escaped() -> None:
    photo = job(kind="talking_photo", body={"talking_photo_url": IMAGE, "prompt": "a\x1b[2Jb"})

    assert kind_lines(job()) == ["kind: lipsync"]
    lines = kind_lines(photo)
    assert lines[0] == "kind: talking_photo"
    assert lines[1].startswith("Akool body: {") and IMAGE in lines[1]
    assert "\x1b" not in lines[1] and "a\\u001b[2Jb" in lines[1]
