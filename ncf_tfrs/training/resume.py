"""Resume: where a killed run was, and the history it had made by then.

Keras's `BackupAndRestore` brings back the weights, the optimizer's slots
and the epoch a killed run had reached, but not the rest of the run: which
batches of the epoch in progress it had trained on, the steps it had run,
each epoch's loss and time, its learning curve. A resumed run then trained
on other batches and wrote a metrics.json of its own process only.

Here the backup also records that history (`progress.json`, beside the
backup, written before each checkpoint and keyed by its step), and
`backup_step` tells the loop how many batches the backup covers. Each
epoch's order of batches depends only on the seed and the epoch
(`data.make_dataset`), so the loop builds its input from that batch on, and
the resumed run is the uninterrupted one, metrics.json included.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Callable, Optional

from absl import logging
import tensorflow as tf

from ncf_tfrs.training import callbacks
from ncf_tfrs.training import checkpoints

PROGRESS_FILE = "progress.json"
_CHIEF = "chief"  # Where BackupAndRestore keeps the chief's checkpoint.
_EPOCH_KEY = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
_BATCH_KEY = "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"


@dataclasses.dataclass
class RunProgress:
  """What a run has done up to a backup, across the processes that ran it.

  Attributes:
    steps: training steps done (batches of one replica's pipeline).
    epoch_losses: the training loss each finished epoch ended with.
    epoch_seconds: the seconds of each finished epoch.
    epoch_boundary_seconds: the seconds between each finished epoch's last
      step and the next epoch (validation, checkpoints, backups).
    train_seconds: seconds spent in training steps.
    curve: the held-out learning curve's points so far.
  """
  steps: int = 0
  epoch_losses: list[float] = dataclasses.field(default_factory=list)
  epoch_seconds: list[float] = dataclasses.field(default_factory=list)
  epoch_boundary_seconds: list[float] = dataclasses.field(
      default_factory=list)
  train_seconds: float = 0.0
  curve: list[dict[str, float]] = dataclasses.field(default_factory=list)


def _steps_covered(epoch: int, batch: int, steps_per_epoch: int,
                   by_epoch: bool) -> int:
  """Steps done by a backup saved at (`epoch`, `batch`), as Keras resumes it:
  epoch backups at the next epoch, batch backups after `batch`."""
  if epoch < 0:
    return 0
  if by_epoch:
    return (epoch + 1) * steps_per_epoch
  return epoch * steps_per_epoch + max(batch + 1, 0)


def backup_step(backup_dir: str, steps_per_epoch: int,
                by_epoch: bool = False) -> int:
  """The training steps the backup in `backup_dir` covers (0 if none).

  Args:
    backup_dir: `BackupAndRestore`'s directory.
    steps_per_epoch: steps of one epoch.
    by_epoch: whether backups are taken only at epoch ends (Keras then
      resumes at the next epoch, whatever batch was saved).
  """
  latest = tf.train.latest_checkpoint(os.path.join(backup_dir, _CHIEF))
  if latest is None:
    return 0
  reader = tf.train.load_checkpoint(latest)
  return _steps_covered(int(reader.get_tensor(_EPOCH_KEY)),
                        int(reader.get_tensor(_BATCH_KEY)), steps_per_epoch,
                        by_epoch)


def load_progress(backup_dir: str, step: int) -> RunProgress:
  """The history recorded with the backup of `step` (empty at step 0)."""
  if not step:
    return RunProgress()
  path = os.path.join(backup_dir, PROGRESS_FILE)
  entries = {}
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      entries = json.load(f)
  if str(step) not in entries:
    logging.warning("%s has no history for the backup of step %d: the "
                    "resumed run's metrics.json covers only what it runs.",
                    path, step)
    return RunProgress(steps=step)
  return RunProgress(**entries[str(step)])


def _save_progress(backup_dir: str, progress: RunProgress) -> None:
  """Adds `progress` under its step; the previous entry stays, for a kill
  between this write and its checkpoint's."""
  path = os.path.join(backup_dir, PROGRESS_FILE)
  entries = {}
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      entries = json.load(f)
  entries = {k: v for k, v in entries.items()
             if int(k) == max(map(int, entries))}
  entries[str(progress.steps)] = dataclasses.asdict(progress)
  tf.io.gfile.makedirs(backup_dir)
  temp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(temp, "w") as f:
    json.dump(entries, f)
  tf.io.gfile.rename(temp, path, overwrite=True)


class RunBackup(tf.keras.callbacks.BackupAndRestore):
  """`BackupAndRestore` that a resumed run continues exactly from.

  Five changes to Keras's callback:
  - the step saved is the last one trained (Keras saves the first step of
    the last execution, so with `steps_per_execution` a resumed run trained
    some steps twice, on other batches);
  - the backup at an epoch's last step is taken at the epoch's end, after
    the callbacks listed before this one (validation, epoch checkpoints):
    resumed at the next epoch, the run has them all;
  - `progress` (the chief's history so far) is written before each backup;
  - with `save_freq=None`, a backup is taken at the first execution end
    `every_seconds` after the last one;
  - the last epoch's end takes none: training ends there, and Keras deletes
    the backup when it does (a kill in between resumes from the backup
    before, and runs the last epoch again);
  - the chief keeps the backup of an epoch's end where `keep` says (the
    epochs validation may keep): that epoch's weights are not written twice.
  Place it last among the callbacks.
  """

  def __init__(self, backup_dir: str, save_freq: int | str | None,
               steps_per_epoch: int,
               progress: Optional[Callable[[int], RunProgress]] = None,
               every_seconds: float = 60.0,
               keep: Optional[Callable[[int], Optional[str]]] = None):
    # By time: Keras's own count of executions never reaches its frequency.
    super().__init__(backup_dir,
                     save_freq=sys.maxsize if save_freq is None else save_freq)
    self._backup_dir = backup_dir
    self._steps_per_epoch = steps_per_epoch
    self._progress = progress
    self._every_seconds = every_seconds if save_freq is None else None
    self._last_backup = time.monotonic()
    self._keep = keep

  def on_train_begin(self, logs=None):
    super().on_train_begin(logs)
    self._last_backup = time.monotonic()

  def on_train_batch_end(self, batch, logs=None):
    if self.save_freq != "epoch" and batch >= self._steps_per_epoch - 1:
      self._batches_count = 0  # The epoch's end backs up.
      return
    super().on_train_batch_end(batch, logs)
    if (self._every_seconds is not None and
        time.monotonic() - self._last_backup >= self._every_seconds):
      self._backup(self._current_epoch, batch)

  def on_epoch_end(self, epoch, logs=None):
    if callbacks.is_last_epoch(self, epoch):
      return  # `on_train_end` deletes the backup next.
    if self.save_freq == "epoch":
      super().on_epoch_end(epoch, logs)
    else:
      self._backup(epoch, self._steps_per_epoch - 1)
    target = self._keep and self._keep(epoch)
    if target and not self._writes_scratch_copy():  # Already removed if so.
      checkpoints.keep_backup(
          self._training_state.write_checkpoint_manager.latest_checkpoint,
          target)

  def on_train_end(self, logs=None):
    temporary = self._training_state.write_checkpoint_manager.directory
    if self._writes_scratch_copy() and tf.io.gfile.exists(temporary):
      # Each backup removes its scratch copy; the last epoch takes none.
      tf.io.gfile.rmtree(temporary)
    super().on_train_end(logs)
    path = os.path.join(self._backup_dir, PROGRESS_FILE)
    if self._progress and tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)

  def _writes_scratch_copy(self) -> bool:
    """Whether this worker's backups are scratch copies (a non-chief worker
    of a multi-worker run backs up with the others, into a directory that
    Keras removes after each backup)."""
    state = self._training_state
    return state.write_checkpoint_manager is not state.read_checkpoint_manager

  def _backup(self, epoch, batch=0):
    by_epoch = self.save_freq == "epoch"
    if not by_epoch:
      self._training_state._ckpt_saved_epoch.assign(epoch)  # pylint: disable=protected-access
      self._training_state._ckpt_saved_batch.assign(batch)  # pylint: disable=protected-access
    step = _steps_covered(epoch, batch, self._steps_per_epoch, by_epoch)
    if self._progress:
      _save_progress(self._backup_dir, self._progress(step))
    super()._backup(epoch, batch)
    self._last_backup = time.monotonic()
