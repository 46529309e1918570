"""Tests of the simulator's generated videos."""

from __future__ import annotations

import hashlib

from worker.dev.simulator import content_sha256, generate_content


def test_generated_content_is_deterministic_and_exactly_sized() -> None:
    first = b"".join(generate_content("abc", 100_001, chunk_size=4096))
    second = b"".join(generate_content("abc", 100_001))
    assert first == second
    assert len(first) == 100_001
    assert first != b"".join(generate_content("abd", 100_001))


def test_content_sha256_is_the_digest_of_the_generated_content() -> None:
    content = b"".join(generate_content("abc", 70_000))
    assert content_sha256("abc", 70_000) == hashlib.sha256(content).hexdigest()
