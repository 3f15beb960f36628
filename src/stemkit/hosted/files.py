"""Files on the wire, streamed: uploads read from disk in chunks (raw or multipart), downloads written to a
temporary file beside their destination and renamed into place only when whole.

Nothing here holds a file in memory or touches the disk on the event loop: chunks are read and written in
worker threads. A download is bounded: a declared ``Content-Length`` over the limit is refused before the
body is read, and the bytes actually received (after decompression) are counted as they arrive.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from stemkit._atomic import part_path
from stemkit.hosted._retry import BodyTooLarge, IncompleteBody

__all__ = ["CHUNK_SIZE", "TransferProgress", "file_chunks", "multipart_body", "receive_file"]

CHUNK_SIZE = 1 << 20

TransferProgress = Callable[[int, int | None], None]
"""Called with (bytes transferred so far, total bytes or None) while a file moves."""


async def file_chunks(path: Path, size: int, progress: TransferProgress | None) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, read in worker threads, reporting progress."""
    sent = 0
    async with await anyio.open_file(path, "rb") as fh:
        while chunk := await fh.read(CHUNK_SIZE):
            sent += len(chunk)
            if progress:
                progress(sent, size)
            yield chunk


def _quote(value: str) -> str:
    """A form-data parameter value, escaped as browsers do (HTML's multipart/form-data rules)."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def multipart_body(
    fields: Mapping[str, str],
    *,
    field: str,
    filename: str,
    content_type: str | None,
    path: Path,
    size: int,
    progress: TransferProgress | None,
) -> tuple[dict[str, str], int, Callable[[], AsyncIterator[bytes]]]:
    """(headers, content length, body factory) of a ``multipart/form-data`` POST of ``fields`` and one file.

    The body is produced afresh by each call of the factory (a retry sends it again) and streams the file
    from disk, so an upload of any size takes one chunk of memory.
    """
    boundary = secrets.token_hex(16)
    head = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(k)}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(field)}"; filename="{_quote(filename)}"\r\n'
        f"Content-Type: {content_type or 'application/octet-stream'}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        async for chunk in file_chunks(path, size, progress):
            yield chunk
        yield tail

    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return headers, len(head) + size + len(tail), body


async def receive_file(
    response: httpx.Response, dest: Path, *, max_bytes: int | None, progress: TransferProgress | None
) -> Path:
    """Write a streamed response body to ``dest`` through a temporary file; nothing is left on failure.

    Raises :class:`BodyTooLarge` when the declared or received size passes ``max_bytes`` and
    :class:`IncompleteBody` when fewer bytes than declared arrive.
    """
    declared_text = response.headers.get("content-length")
    declared = int(declared_text) if declared_text is not None and declared_text.isdigit() else None
    if max_bytes is not None and declared is not None and declared > max_bytes:
        raise BodyTooLarge(max_bytes, declared)
    tmp = part_path(dest)  # the atomic writer's naming: a killed download's leftover is swept like any other
    received = 0
    try:
        async with await anyio.open_file(tmp, "wb") as out:
            async for chunk in response.aiter_bytes(CHUNK_SIZE):
                received += len(chunk)
                if max_bytes is not None and (received > max_bytes or response.num_bytes_downloaded > max_bytes):
                    raise BodyTooLarge(max_bytes, declared)
                await out.write(chunk)
                if progress:
                    progress(received, declared)
        if declared is not None and response.num_bytes_downloaded != declared:
            raise IncompleteBody(response.num_bytes_downloaded, declared)
        await anyio.to_thread.run_sync(os.replace, tmp, dest)
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled download still removes its temporary file
            await anyio.to_thread.run_sync(_unlink, tmp)
    return dest


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
