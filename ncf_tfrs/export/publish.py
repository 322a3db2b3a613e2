"""Atomic publishing of export versions: a watching server never sees half a version.

Each version is written into a dot-prefixed temporary folder next to its
final place (TF Serving ignores names that are not integers) and renamed into
place when complete. While it writes, the exporter holds an advisory lock on
a file beside that folder; the operating system drops the lock when the
process dies, however it dies, so a later export knows a folder is abandoned
without trusting that a process id was not reused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from typing import Callable

from ncf_tfrs.serving import contract


def next_version(export_dir: str, model_name: str) -> int:
  """One above every version of the model's folders, so versions only grow."""
  folders = [model_name + suffix
             for suffix in ("", contract.INDEX_SUFFIX, contract.SCANN_MODEL_SUFFIX)]
  published = [v for folder in folders
               for v in contract.versions(os.path.join(export_dir, folder))]
  return max(published, default=0) + 1


_TEMP_PREFIX = ".tmp-"
_LOCK_SUFFIX = ".lock"


@contextlib.contextmanager
def _writer_lock(temp: str):
  """Holds `<temp>.lock` locked while the caller writes `temp`."""
  lock = temp + _LOCK_SUFFIX
  with open(lock, "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      os.remove(lock)


def _remove_abandoned(model_root: str) -> None:
  """Deletes temp folders no live exporter holds the lock of (killed ones)."""
  for name in os.listdir(model_root):
    path = os.path.join(model_root, name)
    if not name.startswith(_TEMP_PREFIX) or not os.path.isdir(path):
      continue
    try:
      with open(path + _LOCK_SUFFIX, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      continue  # Its writer is alive.
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
      os.remove(path + _LOCK_SUFFIX)


def publish_version(model_root: str, version: int,
                    write: Callable[[str], None]) -> str:
  """Writes a version into a hidden temp folder, then renames it into place.

  Args:
    model_root: The model's folder (export_dir/<model_name>).
    version: The version to publish; must not exist yet.
    write: Writes the version's files into the folder it is given.

  Returns:
    The published version's path.
  """
  final = os.path.join(model_root, str(version))
  if os.path.exists(final):
    raise FileExistsError(f"{final} already exists; versions are immutable.")
  os.makedirs(model_root, exist_ok=True)
  _remove_abandoned(model_root)
  temp = os.path.join(model_root, f"{_TEMP_PREFIX}{version}-{os.getpid()}")
  with _writer_lock(temp):
    try:
      write(temp)
      os.rename(temp, final)
    except BaseException:
      shutil.rmtree(temp, ignore_errors=True)
      raise
  return final


def atomic_write_text(path: str, text: str) -> None:
  """Writes a text file beside its final name, then renames it into place."""
  temp = os.path.join(os.path.dirname(path),
                      f".tmp-{os.path.basename(path)}-{os.getpid()}")
  with open(temp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(temp, path)
