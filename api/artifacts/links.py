"""Signed, expiring download links: a browser streams a large artifact straight to disk.

An API key travels in a header, which a plain link cannot carry; the dashboard would have to
fetch the whole file into memory first. A link is instead a token signed by the server that
names one artifact of one job and expires after `download_link_seconds`. It is issued only
to a caller whose key owns the job, and carries nothing secret. It also names the key that
asked for it: revoking that key invalidates its links (410 `download_link_revoked`) at once,
not when they expire.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from api.errors import Gone, NotFound
from persistence.settings import Settings

# v2: links name the issuing key; v1 links (which did not) no longer verify (404).
_SALT = "clo.artifact-download.v2"
_KEY_FILE = ".download-link-key"


def signing_key(settings: Settings) -> bytes:
    """Same key in every API process: derived from the admin secret (required in
    production), else a random key kept in the data dir (development, one machine)."""
    if settings.admin_secret:
        return hmac.new(settings.admin_secret.encode(), _SALT.encode(), hashlib.sha256).digest()
    path = Path(settings.data_dir) / _KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside, then hard-linked into place: of processes starting together, one
        # link wins and every reader sees a whole key.
        tmp = path.with_name(f"{_KEY_FILE}.{uuid.uuid4().hex}")
        tmp.write_text(secrets.token_hex(32))
        tmp.chmod(0o600)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


class LinkSigner:
    def __init__(self, settings: Settings) -> None:
        self.lifetime = settings.download_link_seconds
        self._serializer = URLSafeTimedSerializer(signing_key(settings), salt=_SALT)

    def issue(self, job_id: uuid.UUID, name: str, key_id: uuid.UUID) -> tuple[str, datetime]:
        """(token, expiry) for one artifact of one job, asked for with API key `key_id`."""
        token = self._serializer.dumps([str(job_id), name, str(key_id)])
        return token, datetime.now(UTC) + timedelta(seconds=self.lifetime)

    def read(self, token: str) -> tuple[uuid.UUID, str, uuid.UUID]:
        """(job id, artifact name, issuing key id); 410 for an expired link, 404 for anything
        not ours."""
        try:
            job_id, name, key_id = self._serializer.loads(token, max_age=self.lifetime)
            return uuid.UUID(job_id), str(name), uuid.UUID(key_id)
        except SignatureExpired:
            raise Gone(
                "download link expired: ask for a new one", code="download_link_expired"
            ) from None
        except (BadSignature, ValueError, TypeError):
            raise NotFound("no such download link", code="download_link_not_found") from None
