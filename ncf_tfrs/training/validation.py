"""Validation inside training: it decides the epochs kept; the test split only reports.

The loop carves a seeded validation slice out of the training split
(`ncf_tfrs.data.carve_validation`), trains on the rest, and Keras evaluates the
slice after every epoch (`fit(validation_data=...)`: `val_ranking_*` and
`val_retrieval_loss`, also written to TensorBoard's `validation` run).
`ValidationMonitor` adds the retrieval lists' recall@K on the same slice,
keeps the per-epoch history in the model directory (so a killed and resumed
run remembers the epochs before the kill), and stops training when no task
has improved for `patience` epochs.

The two tasks share no variables, so each keeps its own best epoch: the NCF
scorer the epoch of best validation AUC, the retrieval towers the epoch of
best validation recall@K. The backup taken at the end of each epoch that
may be kept (`ValidationMonitor.best_so_far`) is kept under checkpoints/
(`resume.RunBackup`), and `restore_kept_weights` assembles the tasks' kept
epochs from them at the end; the test split is then scored once.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Optional

import tensorflow as tf

from ncf_tfrs import model as model_lib
from ncf_tfrs.training import callbacks
from ncf_tfrs.training import checkpoints

HISTORY_FILE = "validation.json"


@dataclasses.dataclass(frozen=True)
class Monitor:
  """One task's validation metric (higher is better) and the variables it
  decides."""
  task: str
  metric: str


def monitors(config: model_lib.ModelConfig, recall_k: int) -> list[Monitor]:
  """What decides each trained task's epoch: AUC for NCF, recall@K for
  retrieval."""
  out = []
  if config.ranking_weight:
    out.append(Monitor("ranking", "ranking_auc"))
  if config.retrieval_weight:
    out.append(Monitor("retrieval", f"retrieval_recall_at_{recall_k}"))
  return out


def best_epochs(history: list[dict[str, float]],
                watched: list[Monitor]) -> dict[str, int]:
  """Task -> the (1-based) epoch of its best validation metric; the earliest
  wins a tie."""
  best = {}
  for monitor in watched:
    scored = [(entry[monitor.metric], -entry["epoch"]) for entry in history
              if monitor.metric in entry]
    if scored:
      best[monitor.task] = -max(scored)[1]
  return best


class ValidationMonitor(tf.keras.callbacks.Callback):
  """Per-epoch validation history, list metrics and early stopping.

  Placed before Keras's TensorBoard callback, the list metrics it adds to the
  epoch's logs (as `val_<name>`) are written to the `validation` run with the
  rest.
  """

  def __init__(self, list_metrics: Callable[[tf.keras.Model], dict],
               watched: list[Monitor], patience: int,
               history_path: Optional[str]):
    """Initializes the monitor.

    Args:
      list_metrics: model -> retrieval list metrics on the validation slice.
      watched: the tasks' metrics that decide the epochs kept.
      patience: epochs without improvement of any watched metric before
        training stops; 0 never stops early.
      history_path: where the history is kept across a resume (the chief's
        model directory); None keeps it in memory only.
    """
    super().__init__()
    self._list_metrics = list_metrics
    self._watched = watched
    self._patience = patience
    self._path = history_path
    self.history: list[dict[str, float]] = []
    self.stopped_early = False

  def on_train_begin(self, logs=None):
    if self._path and tf.io.gfile.exists(self._path):
      with tf.io.gfile.GFile(self._path) as f:
        self.history = json.load(f)["history"]

  def on_epoch_end(self, epoch, logs=None):
    logs = logs if logs is not None else {}
    lists = self._list_metrics(self.model)
    for name, value in lists.items():
      logs[f"val_{name}"] = value
    entry = {"epoch": epoch + 1}
    entry.update({k[len("val_"):]: float(v) for k, v in logs.items()
                  if k.startswith("val_")})
    entry["train_loss"] = float(logs.get("loss", float("nan")))
    # A resumed run repeats the epoch it was killed in.
    self.history = [e for e in self.history if e["epoch"] < epoch + 1]
    self.history.append(entry)
    if self._path:
      with tf.io.gfile.GFile(self._path, "w") as f:
        json.dump({"history": self.history}, f, indent=2)
    best = best_epochs(self.history, self._watched)
    if (self._patience and best and
        epoch + 1 - max(best.values()) >= self._patience):
      self.stopped_early = True
      self.model.stop_training = True

  def best_so_far(self, epoch: int) -> bool:
    """Whether `epoch` (1-based, already validated) is some task's best yet:
    only such an epoch can end up kept, since a later epoch must beat it
    and the earliest wins a tie."""
    return epoch in best_epochs(self.history, self._watched).values()


class LastEpochCheckpoint(tf.keras.callbacks.ModelCheckpoint):
  """The last epoch's weights, for a distributed run's chief, which reloads
  them on one device after training (`checkpoints.load_trained`).

  A run on one device needs none: its model still holds them, and the loop
  writes them as `kept`.
  """

  def __init__(self, filepath: str):
    super().__init__(filepath, save_weights_only=True)

  def on_epoch_end(self, epoch, logs=None):
    if callbacks.is_last_epoch(self, epoch):
      super().on_epoch_end(epoch, logs)


def _task_variables(model: model_lib.RecommenderModel,
                    task: str) -> list[tf.Variable]:
  if task == "retrieval":
    return model.query_tower.variables + model.candidate_tower.variables
  retrieval = {v.ref() for v in _task_variables(model, "retrieval")}
  return [v for v in model.variables if v.ref() not in retrieval]


def restore_kept_weights(model: model_lib.RecommenderModel,
                         epochs: dict[str, int],
                         checkpoint_path: Callable[[int], str],
                         make_model: Callable[[], model_lib.RecommenderModel]
                         ) -> None:
  """Sets each task's variables to those of its kept epoch.

  Args:
    model: the trained model, on one device.
    epochs: task -> kept epoch (1-based), from `best_epochs`.
    checkpoint_path: epoch -> that epoch's checkpoint (a kept backup or
      weights).
    make_model: builds an empty model of the same architecture, into which
      a kept epoch's checkpoint is read.
  """
  for task, epoch in epochs.items():
    kept = make_model()
    checkpoints.read_weights(kept, checkpoint_path(epoch))
    for target, source in zip(_task_variables(model, task),
                              _task_variables(kept, task)):
      target.assign(source)
