"""Validation decides the epochs kept: early stopping, per-task best epochs, resume."""

import json
import os

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs import model as model_lib
from ncf_tfrs.training import checkpoints
from ncf_tfrs.training import resume
from ncf_tfrs.training import validation

WATCHED = [validation.Monitor("ranking", "ranking_auc"),
           validation.Monitor("retrieval", "retrieval_recall_at_100")]


class _Model:
  stop_training = False


def _run_epochs(monitor, aucs, recalls, first_epoch=0):
  """Feeds the monitor one epoch per value, as Keras's fit would; returns
  the epochs that ran."""
  model = _Model()
  monitor.set_model(model)
  monitor.on_train_begin()
  ran = []
  for epoch, (auc, recall) in enumerate(zip(aucs, recalls), first_epoch):
    recalls_of_epoch = {"retrieval_recall_at_100": recall}
    monitor._list_metrics = lambda m, r=recalls_of_epoch: r  # pylint: disable=protected-access
    monitor.on_epoch_end(epoch, {"loss": 1.0, "val_ranking_auc": auc})
    ran.append(epoch + 1)
    if model.stop_training:
      break
  return ran


def test_stops_when_no_task_improved_for_patience_epochs():
  monitor = validation.ValidationMonitor(lambda m: {}, WATCHED, patience=2,
                                         history_path=None)
  # AUC peaks at epoch 2, recall at epoch 3; epochs 4 and 5 improve neither.
  ran = _run_epochs(monitor, [0.70, 0.75, 0.74, 0.73, 0.72, 0.80],
                    [0.10, 0.20, 0.30, 0.29, 0.28, 0.50])
  assert ran == [1, 2, 3, 4, 5]
  assert monitor.stopped_early
  assert validation.best_epochs(monitor.history, WATCHED) == {
      "ranking": 2, "retrieval": 3}
  assert [e["ranking_auc"] for e in monitor.history] == [
      0.70, 0.75, 0.74, 0.73, 0.72]


def test_patience_zero_runs_every_epoch_and_still_reports_the_best():
  monitor = validation.ValidationMonitor(lambda m: {}, WATCHED, patience=0,
                                         history_path=None)
  ran = _run_epochs(monitor, [0.7, 0.8, 0.6, 0.5], [0.1, 0.2, 0.1, 0.1])
  assert ran == [1, 2, 3, 4] and not monitor.stopped_early
  assert validation.best_epochs(monitor.history, WATCHED)["ranking"] == 2


def test_a_resumed_run_remembers_the_epochs_before_the_kill(tmp_path):
  path = str(tmp_path / validation.HISTORY_FILE)
  first = validation.ValidationMonitor(lambda m: {}, WATCHED, 2, path)
  _run_epochs(first, [0.70, 0.80, 0.79], [0.1, 0.3, 0.2])
  # Killed during epoch 4 (index 3), resumed at epoch 3 from a backup taken
  # before epoch 3 ended: epoch 3 runs again and replaces its entry.
  second = validation.ValidationMonitor(lambda m: {}, WATCHED, 2, path)
  ran = _run_epochs(second, [0.78, 0.77], [0.2, 0.2], first_epoch=2)
  assert ran == [3, 4] and second.stopped_early
  assert [e["epoch"] for e in second.history] == [1, 2, 3, 4]
  assert second.history[2]["ranking_auc"] == 0.78
  with open(path) as f:
    assert json.load(f)["history"] == second.history


@pytest.mark.parametrize("kind", ["weights", "kept backup"])
def test_each_task_gets_the_weights_of_its_own_kept_epoch(tmp_path, kind):
  users, movies = np.array([b"u0", b"u1"]), np.array([b"m0", b"m1", b"m2"])
  config = model_lib.ModelConfig(retrieval_embedding_dim=4,
                                 ncf_embedding_dim=2, ncf_mlp_layers=(4,))

  def make():
    model = model_lib.RecommenderModel(users, movies, config)
    model({features.USER_ID: tf.constant(users[:1]),
           features.MOVIE_ID: tf.constant(movies[:1])})
    return model

  saved = {}
  for epoch in (1, 2, 3):
    model = make()
    for v in model.variables:
      v.assign(tf.fill(v.shape, tf.cast(epoch, v.dtype)))
    saved[epoch] = str(tmp_path / f"epoch-{epoch:03d}")
    if kind == "weights":
      model.save_weights(saved[epoch])
    else:  # As BackupAndRestore writes it.
      tf.train.Checkpoint(model=model).write(saved[epoch])

  model = make()
  validation.restore_kept_weights(model, {"ranking": 2, "retrieval": 3},
                                  saved.__getitem__, make)
  retrieval = {v.ref() for v in model.query_tower.variables +
               model.candidate_tower.variables}
  assert retrieval
  for v in model.variables:
    expected = 3 if v.ref() in retrieval else 2
    np.testing.assert_array_equal(v.numpy(), np.full(v.shape, expected))


class _ScriptedValidation(tf.keras.callbacks.Callback):
  """Gives each epoch's logs a validation AUC from a script, as Keras's own
  validation would, and records the weights each epoch ended with."""

  def __init__(self, aucs):
    super().__init__()
    self._aucs = aucs
    self.weights = []

  def on_epoch_end(self, epoch, logs=None):
    logs["val_ranking_auc"] = self._aucs[epoch]
    self.weights.append(self.model.get_weights())


def test_the_backups_of_epochs_that_may_be_kept_are_kept(tmp_path):
  # Best so far: epoch 1 (both tasks), 2 (AUC), 4 (recall), 5 (AUC, but the
  # last, whose weights the model holds when training ends); epoch 3 beats
  # neither.
  aucs = [0.70, 0.80, 0.75, 0.79, 0.90]
  recalls = iter([0.30, 0.20, 0.25, 0.35, 0.10])
  scripted = _ScriptedValidation(aucs)
  monitor = validation.ValidationMonitor(
      lambda m: {"retrieval_recall_at_100": next(recalls)}, WATCHED,
      patience=0, history_path=None)
  kept = str(tmp_path / "checkpoints" / "epoch-{epoch:03d}")
  backup = resume.RunBackup(
      str(tmp_path / "backup"), None, steps_per_epoch=5, every_seconds=1e9,
      keep=lambda e: (kept.format(epoch=e + 1)
                      if monitor.best_so_far(e + 1) else None))
  model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
  model.fit(x, x[:, :1], batch_size=4, epochs=5, verbose=0,
            callbacks=[scripted, monitor, backup])

  written = sorted(p.name[:-len(".index")]
                   for p in (tmp_path / "checkpoints").glob("*.index"))
  assert written == ["epoch-001", "epoch-002", "epoch-004"]
  assert validation.best_epochs(monitor.history, WATCHED) == {
      "ranking": 5, "retrieval": 4}
  # Each holds its epoch's weights, though later backups replaced the one
  # it was kept from.
  for epoch in (1, 2, 4):
    restored = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    restored.build((None, 3))
    checkpoints.read_weights(restored, kept.format(epoch=epoch))
    for got, want in zip(restored.get_weights(), scripted.weights[epoch - 1]):
      np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("links", [True, False])
def test_a_kept_backup_outlives_the_backup(tmp_path, monkeypatch, links):
  # Hard links where the file system has them; copies where it has not.
  if not links:
    def no_links(source, target):
      raise OSError(f"no hard links: {source} -> {target}")
    monkeypatch.setattr(os, "link", no_links)
  base = str(tmp_path)
  model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
  model.build((None, 3))
  backup = tf.train.Checkpoint(model=model).write(f"{base}/backup/ckpt-1")
  checkpoints.keep_backup(backup, f"{base}/checkpoints/epoch-001")
  tf.io.gfile.rmtree(f"{base}/backup")  # As the next backup would.
  restored = tf.keras.Sequential([tf.keras.layers.Dense(2)])
  restored.build((None, 3))
  checkpoints.read_weights(restored, f"{base}/checkpoints/epoch-001")
  for got, want in zip(restored.get_weights(), model.get_weights()):
    np.testing.assert_array_equal(got, want)
