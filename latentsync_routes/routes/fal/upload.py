"""fal's CDN multipart upload with parts streamed from disk, for inputs too large to hold in memory.

It is its own module because it replaces one fal-client helper (``upload_file``) for large inputs and has
its own concerns (part sizes, concurrency, flat memory); the fal route decides when to use it and maps its
errors. Importing this module does not import fal-client or httpx.
"""

from __future__ import annotations

import math
import mimetypes
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: Multipart parts in flight at once (each streams in 1 MiB blocks).
MULTIPART_CONCURRENCY = 4


def upload_multipart(sync: Any, path: str, lifecycle: Any, *, timeout_s: float) -> str:
    """fal's CDN multipart upload with parts streamed from disk, so memory stays flat for any size.

    fal-client's own ``upload_file`` reads the whole file (below 100 MiB) or 10 MiB parts into memory,
    10 at a time, and the allocator keeps much of it; a 1 GB input grew the process by ~170 MB. Here
    fal-client still supplies the CDN token and opens the upload (``MultipartUpload.create``, with the
    lifecycle headers); each part is then a PUT whose body is read in 1 MiB blocks. ``sync`` is the
    route's fal-client ``SyncClient``, ``lifecycle`` its ``StorageSettings`` or None, and ``timeout_s``
    the read timeout of each part PUT and of the completing POST.
    """
    import httpx
    from fal_client.client import MultipartUpload

    mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
    preference = {"expiration_duration_seconds": lifecycle.expires_in} if lifecycle is not None else None
    size = os.path.getsize(path)
    client = sync._get_cdn_client()
    try:
        upload = MultipartUpload(
            file_name=os.path.basename(path), client=client, token_manager=sync._token_manager, content_type=mime
        )
        upload.create(object_lifecycle_preference=preference)
        step = upload.chunk_size
        base = f"{upload.access_url}/multipart/{upload.upload_id}"

        def put(number: int) -> dict[str, Any]:
            start = (number - 1) * step
            length = min(step, size - start)
            response = client.put(
                f"{base}/{number}",
                content=_file_blocks(path, start, length),
                headers={
                    **upload.auth_headers,
                    "Content-Type": mime,
                    "Content-Length": str(length),
                    "Accept-Encoding": "identity",
                },
                timeout=httpx.Timeout(timeout_s, connect=10.0),
            )
            response.raise_for_status()
            return {"partNumber": number, "etag": response.headers["etag"]}

        with ThreadPoolExecutor(MULTIPART_CONCURRENCY, thread_name_prefix="fal-part") as pool:
            futures = [pool.submit(put, number) for number in range(1, math.ceil(size / step) + 1)]
            try:
                parts = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()  # one failed part fails the try; do not send the rest
                raise
        client.post(
            f"{base}/complete",
            headers=upload.auth_headers,
            json={"parts": parts},
            timeout=httpx.Timeout(timeout_s, connect=10.0),
        ).raise_for_status()
        return str(upload.access_url)
    finally:
        client.close()


def _file_blocks(path: str, start: int, length: int, block: int = 1024 * 1024) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        handle.seek(start)
        while length > 0:
            data = handle.read(min(block, length))
            if not data:
                raise OSError(f"{path} shrank while uploading")
            length -= len(data)
            yield data
