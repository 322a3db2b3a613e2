"""Atomic publishing of export versions: a watching server never sees half a version.

Each version is written into a dot-prefixed temporary folder next to its
final place (TF Serving ignores names that are not integers) and renamed into
place when complete.
"""

from __future__ import annotations

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


def _remove_abandoned(model_root: str) -> None:
  """Deletes temp folders whose writer process is gone (killed exports)."""
  for name in os.listdir(model_root):
    parts = name.split("-")
    if not (name.startswith(".tmp-") and len(parts) == 3 and
            parts[2].isdigit()):
      continue
    pid = int(parts[2])
    try:
      alive = pid != os.getpid() and (os.kill(pid, 0) is None)
    except ProcessLookupError:
      alive = False
    except PermissionError:
      alive = True
    if not alive:
      shutil.rmtree(os.path.join(model_root, name), ignore_errors=True)


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
  temp = os.path.join(model_root, f".tmp-{version}-{os.getpid()}")
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
