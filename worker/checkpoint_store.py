"""Committed checkpoints and reference log-prob caches in the object store, so a job resumes
on another host with an empty work folder (docs/RELIABILITY.md "Resume on another host").

The commit order is: checkpoint written locally (fenced, clo.checkpoint) -> lease confirmed
-> checkpoint uploaded under `jobs/<job>/checkpoints/<owner>/step-N.tar` -> step and path
recorded in Postgres under the lease -> older checkpoint objects pruned. So the row never
names a checkpoint the store lacks, and a worker that lost its lease uploads nothing (it can
at worst leave an object under its own owner folder that no resume reads; `remove_all` takes
it when the job ends).

On a resume the committed path (recorded by whichever host wrote it) is mapped into this
host's work folder and downloaded there when it is missing.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path

from clo.checkpoint import checkpoint_at
from persistence.artifact_store import BlobStore, make_key

logger = logging.getLogger(__name__)

REFERENCE_DIR = ("train", "reference")  # clo.pipeline.stage_train's reference_cache_dir


def localize(recorded: Path, job_id: str, workdir: Path) -> Path:
    """The folder on this host that `recorded` (an owner folder another host wrote, under
    its own `<work_root>/<job id>/`) corresponds to inside `workdir`."""
    parts = recorded.parts
    if job_id in parts:
        rel = parts[parts.index(job_id) + 1 :]
    else:  # not under a job folder: the trainer's layout
        rel = ("train", "checkpoints", recorded.name)
    if not rel or any(p in ("", ".", "..") for p in rel):
        rel = ("train", "checkpoints", recorded.name)
    return workdir.joinpath(*rel)


class CheckpointSync:
    """Uploads and downloads one job's checkpoints and reference caches."""

    def __init__(
        self, store: BlobStore, job_id: str, workdir: Path, confirm: Callable[[], bool]
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.workdir = workdir
        self.confirm = confirm  # asked before every write: the store is outside the fence
        self._pushed_reference: set[str] = set()

    def key(self, checkpoint: Path) -> str:
        """`jobs/<job>/checkpoints/<owner>/<step-N>.tar` for a checkpoint folder."""
        return make_key(
            "jobs", self.job_id, "checkpoints", checkpoint.parent.name, f"{checkpoint.name}.tar"
        )

    # ---- upload -------------------------------------------------------------------------

    def push(self, checkpoint: Path) -> bool:
        """Upload a checkpoint (and reference caches not stored yet); False when the lease is
        lost or the store is away (the checkpoint is then not committed: the previous one,
        which is in the store, stays the resume point)."""
        try:
            self._push_reference()
            if not self.confirm():
                return False
            stored = self.store.write_dir_archive(self.key(checkpoint), checkpoint)
        except OSError:
            logger.warning("job %s: checkpoint %s not uploaded", self.job_id, checkpoint,
                           exc_info=True)  # fmt: skip
            return False
        logger.info("job %s: checkpoint %s uploaded (%d bytes)", self.job_id, stored.key,
                    stored.size)  # fmt: skip
        return True

    def _push_reference(self) -> None:
        folder = self.workdir.joinpath(*REFERENCE_DIR)
        if not folder.is_dir():
            return
        for path in sorted(folder.glob("*.safetensors")):
            if path.name in self._pushed_reference:
                continue
            key = make_key("jobs", self.job_id, "reference", path.name)
            if not self.store.exists(key):
                if not self.confirm():
                    return
                self.store.write_file(key, path)
            self._pushed_reference.add(path.name)

    def prune(self, keep: Path) -> None:
        """Delete every stored checkpoint but the committed one (called after the commit)."""
        keep_key = self.key(keep)
        try:
            for key in self.store.list_keys(make_key("jobs", self.job_id, "checkpoints")):
                if key != keep_key:
                    self.store.delete(key)
        except OSError:
            logger.warning("job %s: could not prune stored checkpoints", self.job_id,
                           exc_info=True)  # fmt: skip

    def remove_all(self) -> None:
        """The job is over: its checkpoints and reference caches are no longer needed."""
        for sub in ("checkpoints", "reference"):
            try:
                for key in self.store.list_keys(make_key("jobs", self.job_id, sub)):
                    self.store.delete(key)
            except OSError:
                logger.warning("job %s: stored %s not removed", self.job_id, sub,
                               exc_info=True)  # fmt: skip

    # ---- download -----------------------------------------------------------------------

    def restore(self, recorded: str, step: int) -> Path:
        """The committed checkpoint as a local folder, downloaded when this host lacks it;
        with it, the reference caches the store holds."""
        checkpoint = checkpoint_at(localize(Path(recorded), self.job_id, self.workdir), step)
        self._pull_reference()
        if (checkpoint / "state.json").is_file():
            return checkpoint
        key = self.key(checkpoint)
        if not self.store.exists(key):
            logger.warning("job %s: committed checkpoint %s is neither here nor in the store",
                           self.job_id, key)  # fmt: skip
            return checkpoint
        self._extract(key, checkpoint)
        logger.info("job %s: checkpoint at step %d downloaded from the store", self.job_id, step)
        return checkpoint

    def _pull_reference(self) -> None:
        folder = self.workdir.joinpath(*REFERENCE_DIR)
        for key in self.store.list_keys(make_key("jobs", self.job_id, "reference")):
            target = folder / key.rsplit("/", 1)[-1]
            if target.exists():
                continue
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".pull-{uuid.uuid4().hex}"
            with self.store.open(key) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, target)
            self._pushed_reference.add(target.name)

    def _extract(self, key: str, checkpoint: Path) -> None:
        """Unpack into a temp folder beside the target and rename: all or nothing."""
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.parent / f".pull-{uuid.uuid4().hex}"
        try:
            with self.store.open(key) as src, tarfile.open(fileobj=src, mode="r|") as tar:
                tar.extractall(tmp, filter="data")  # no links, no paths leaving tmp
            os.replace(tmp, checkpoint)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
