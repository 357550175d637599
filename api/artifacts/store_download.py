"""Downloads of an artifact kept in an object store: streamed with Range support, or by
setting (CLO_DOWNLOAD_MODE=redirect) a 307 to a presigned URL so the bytes skip the API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from urllib.parse import quote

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.errors import NotFound, ServiceUnavailable
from persistence.artifact_store import BlobStore

logger = logging.getLogger(__name__)

RangeParser = Callable[[str, int], list[tuple[int, int]]]  # (header, size) -> [start, end)


class StoreRangeResponse(StreamingResponse):
    """One object streamed from the store: 200 whole, or 206 for one byte range, chosen from
    the request's Range / If-Range headers as FileResponse chooses for a local file."""

    def __init__(
        self,
        store: BlobStore,
        key: str,
        size: int,
        filename: str,
        headers: dict[str, str],
        parse_range: RangeParser,
    ) -> None:
        super().__init__(
            iter(()),
            media_type="application/octet-stream",
            headers={
                **headers,
                "Accept-Ranges": "bytes",
                "Content-Disposition": f'attachment; filename="{quote(filename)}"',
            },
        )
        self.store, self.key, self.size, self.parse_range = store, key, size, parse_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        span = self._span(request_headers.get("range"), request_headers.get("if-range"))
        start, end = span or (0, self.size)
        if span is not None:
            self.status_code = 206
            self.headers["Content-Range"] = f"bytes {start}-{end - 1}/{self.size}"
        self.headers["Content-Length"] = str(end - start)
        # Store reads run in the thread pool, so they never block the event loop.
        self.body_iterator = iterate_in_threadpool(self._chunks(start, end))
        await super().__call__(scope, receive, send)

    def _span(self, http_range: str | None, if_range: str | None) -> tuple[int, int] | None:
        """The [start, end) a 206 sends, or None for a whole 200. Several ranges are answered
        whole (RFC 9110 lets a server ignore Range), as is an If-Range naming another version."""
        if http_range is None or (if_range is not None and if_range != self.headers.get("etag")):
            return None
        ranges = self.parse_range(http_range, self.size)  # raises the 400 / 416 envelopes
        return ranges[0] if len(ranges) == 1 else None

    def _chunks(self, start: int, end: int) -> Iterator[bytes]:
        if end > start:
            yield from self.store.iter_range(self.key, start, end - 1)


def store_download(
    store: BlobStore,
    key: str,
    filename: str,
    headers: dict[str, str],
    parse_range: RangeParser,
    *,
    head: bool = False,
) -> Response:
    """The response for an artifact in an object store, 404 when the object is missing."""
    try:
        size = store.size(key)
    except FileNotFoundError:
        logger.error("artifact object missing from store", extra={"key": key})
        raise NotFound(f"artifact {filename!r} is unavailable", code="artifact_missing") from None
    except OSError:
        logger.exception("artifact store unreachable")
        raise ServiceUnavailable(
            "the artifact store is unreachable; retry shortly",
            code="storage_unavailable",
            headers={"Retry-After": "5"},
        ) from None
    if head:  # answered here even in redirect mode: a presigned GET URL refuses a HEAD
        return Response(
            status_code=200,
            media_type="application/octet-stream",
            headers={
                **headers,
                "Accept-Ranges": "bytes",
                "Content-Disposition": f'attachment; filename="{quote(filename)}"',
                "Content-Length": str(size),
            },
        )
    seconds = store.download_redirect_seconds
    if seconds is not None:
        # The store checks the signature; the checksum header lets the client verify bytes
        # it fetched elsewhere. Not cached: the URL expires.
        return RedirectResponse(
            store.presigned_url(key, seconds, filename),
            status_code=307,
            headers={
                "X-Checksum-Sha256": headers["X-Checksum-Sha256"],
                "Cache-Control": "no-store",
            },
        )
    return StoreRangeResponse(store, key, size, filename, headers, parse_range)
