"""Validation decides the epochs kept: early stopping, per-task best epochs, resume."""

import json

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import pytest
import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs import model as model_lib
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


def test_each_task_gets_the_weights_of_its_own_kept_epoch(tmp_path):
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
    model.save_weights(saved[epoch])

  model = make()
  validation.restore_kept_weights(model, {"ranking": 2, "retrieval": 3},
                                  saved.__getitem__, make)
  retrieval = {v.ref() for v in model.query_tower.variables +
               model.candidate_tower.variables}
  assert retrieval
  for v in model.variables:
    expected = 3 if v.ref() in retrieval else 2
    np.testing.assert_array_equal(v.numpy(), np.full(v.shape, expected))


@pytest.mark.parametrize("write_last", [False, True])
def test_epoch_checkpoints_hold_the_epochs_that_may_be_kept(tmp_path,
                                                            write_last):
  model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
  model.build((None, 2))
  monitor = validation.ValidationMonitor(lambda m: {}, WATCHED, patience=0,
                                         history_path=None)
  saver = validation.EpochCheckpoints(str(tmp_path / "epoch-{epoch:03d}"),
                                      monitor, write_last=write_last)
  for callback in (monitor, saver):
    callback.set_model(model)
    callback.set_params({"epochs": 5})
  monitor.on_train_begin()
  # Best so far: epoch 1 (both tasks), 2 (AUC), 4 (recall), 5 (AUC, but
  # the last); epoch 3 beats neither.
  for epoch, (auc, recall) in enumerate(zip([0.70, 0.80, 0.75, 0.79, 0.90],
                                            [0.30, 0.20, 0.25, 0.35, 0.10])):
    monitor._list_metrics = lambda m, r=recall: {  # pylint: disable=protected-access
        "retrieval_recall_at_100": r}
    monitor.on_epoch_end(epoch, {"val_ranking_auc": auc})
    saver.on_epoch_end(epoch, {})
  written = sorted(p.name[:-len(".index")] for p in tmp_path.glob("*.index"))
  assert written == ["epoch-001", "epoch-002", "epoch-004"] + (
      ["epoch-005"] if write_last else [])
  # The ranking keeps epoch 5, which the model holds when training ends.
  assert validation.best_epochs(monitor.history, WATCHED) == {
      "ranking": 5, "retrieval": 4}
