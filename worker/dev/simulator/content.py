"""The simulator's generated videos: deterministic bytes derived from a job id.

A job's "video" is never stored: it is regenerated on every download, a chunk at a time, so a
simulated result of hundreds of MiB costs no memory, and a test can check an archived copy
against ``content_sha256`` without having downloaded it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

CHUNK_SIZE = 64 * 1024
HASH_BLOCK = 32  # bytes produced by one sha256 digest


def generate_content(job_id: str, size: int, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Yield ``size`` deterministic bytes derived from ``job_id``, ``chunk_size`` at a time.

    The stream is sha256(job_id + counter) blocks concatenated; only one chunk is in memory.
    """
    seed = job_id.encode()
    counter = 0
    remaining = size
    while remaining > 0:
        want = min(chunk_size, remaining)
        blocks = -(-want // HASH_BLOCK)
        parts = [
            hashlib.sha256(seed + (counter + i).to_bytes(8, "big")).digest() for i in range(blocks)
        ]
        counter += blocks
        remaining -= want
        yield b"".join(parts)[:want]


def content_sha256(job_id: str, size: int) -> str:
    """Hex sha256 of the full generated content of a job, computed by streaming."""
    digest = hashlib.sha256()
    for chunk in generate_content(job_id, size):
        digest.update(chunk)
    return digest.hexdigest()
