"""The training entry point: end to end, resume after a kill, and failures."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)
import tensorflow as tf

from ncf_tfrs.training import config as config_lib
from ncf_tfrs import data as data_lib
from ncf_tfrs import train
from ncf_tfrs.training import callbacks
from ncf_tfrs.training import resume
from ncf_tfrs.training import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke_config(data_dir, model_dir, export_dir="", **train_overrides):
  """The smoke flagfile's settings, parsed the way the command parses them."""
  with flagsaver.flagsaver():
    flags.FLAGS(["train", f"--flagfile={ROOT}/configs/smoke.flags",
                 f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                 f"--export_dir={export_dir}"])
    cfg = train.config_from_flags()
  return dataclasses.replace(
      cfg, train=dataclasses.replace(cfg.train, **train_overrides))


def test_train_writes_model_dir_metrics_curve_and_export(data_dir, tmp_path):
  # 72,000 training ratings (80,000 less the validation tenth) make 8 steps
  # of 8192, 3 per call into the graph: the curve's points fall at the first
  # execution end past each multiple of 4 steps.
  metrics = train.run(_smoke_config(
      data_dir, str(tmp_path), export_dir=str(tmp_path / "export"),
      steps_per_execution=3, eval_every_steps=4))
  with open(tmp_path / "metrics.json") as f:
    assert json.load(f) == json.loads(json.dumps(metrics))
  assert metrics["train_ratings"] == 72_000
  assert metrics["validation_ratings"] == 8_000
  assert metrics["test_ratings"] == 20_000
  for name in ("ranking_auc", "ranking_accuracy", "ranking_log_loss",
               "ranking_mse", "ranking_mae", "retrieval_loss"):
    assert name in metrics["test"]
  # Better than chance after one epoch on data with a planted signal.
  assert metrics["test"]["ranking_auc"] > 0.6
  for name in ("retrieval_recall_at_10", "retrieval_recall_at_100",
               "rerank_liked_ndcg_at_10", "popularity_liked_recall_at_10"):
    assert 0.0 <= metrics["lists"][name] <= 1.0
  assert metrics["lists"]["retrieval_recall_at_100"] > (
      metrics["lists"]["retrieval_recall_at_10"])
  vocab = data_lib.Vocabulary.load(str(tmp_path / "vocabulary"))
  assert len(vocab.movie_ids) > 1000
  assert os.listdir(tmp_path / "checkpoints")
  assert os.listdir(tmp_path / "logs")
  with open(tmp_path / "logs" / "metadata.tsv") as f:
    assert len(f.read().splitlines()) == len(vocab.movie_ids) + 1  # + header

  assert metrics["steps_run"] == 8
  curve = metrics["curve"]
  assert [p["step"] for p in curve] == [6, 8]
  assert curve[0]["train_seconds"] < curve[1]["train_seconds"]
  assert all(0.0 < p["ranking_auc"] <= 1.0 for p in curve)
  # Each point records what it cost the run.
  assert all(p["evaluation_seconds"] > 0.0 for p in curve)

  # Validation after the one epoch, in metrics.json and in TensorBoard's
  # validation run; the weights kept are the export's.
  valid = metrics["validation"]
  assert [e["epoch"] for e in valid["history"]] == [1]
  assert 0.5 < valid["history"][0]["ranking_auc"] <= 1.0
  assert 0.0 < valid["history"][0]["retrieval_recall_at_100"] <= 1.0
  assert valid["kept_epoch"] == {"ranking": 1, "retrieval": 1}
  assert os.listdir(tmp_path / "logs" / "validation")
  assert metrics["export"] == str(tmp_path / "export" / "ncf_tfrs" / "1")
  assert os.path.exists(os.path.join(metrics["export"], "saved_model.pb"))
  # The export carries every training user's history, validation included.
  rated = data_lib.RatedHistory.load(str(tmp_path / "vocabulary" /
                                         "rated.npz"))
  assert len(rated.movies) == 80_000
  assert os.path.exists(tmp_path / "export" / "ncf_tfrs_index" / "1" /
                        "rated.npz")
  # No history side in this model: none of the *_history signatures.
  with open(tmp_path / "export" / "ncf_tfrs_index" / "1" /
            "manifest.json") as f:
    assert json.load(f)["history_side"] is False
  assert not [name for name in tf.saved_model.load(metrics["export"])
              .signatures if name.endswith("_history")]


def test_held_out_users_are_served_from_their_first_ratings(data_dir,
                                                             tmp_path):
  cfg = _smoke_config(data_dir, str(tmp_path))
  cfg = dataclasses.replace(
      cfg, data=dataclasses.replace(cfg.data, cold_user_fraction=0.1),
      model=dataclasses.replace(cfg.model, history_share=0.25))
  metrics = train.run(cfg)
  cold = metrics["cold_users"]
  assert sorted(cold) == ["given_10", "given_20", "given_5"]
  assert 0 < cold["given_20"]["cold_users"] <= cold["given_5"]["cold_users"]
  for name in ("history_served", "history_retrieval", "popularity"):
    assert 0.0 <= cold["given_10"][f"{name}_liked_recall_at_10"] <= 1.0
  # Nobody held out was trained on or split into the test.
  vocab = data_lib.Vocabulary.load(str(tmp_path / "vocabulary"))
  ratings = data_lib.load("synthetic-small", data_dir)
  _, held = data_lib.hold_out_users(ratings, 0.1, cfg.data.seed)
  assert not set(held.user_ids[held.user]) & set(vocab.user_ids)
  assert metrics["train_ratings"] + metrics["validation_ratings"] + (
      metrics["test_ratings"]) == len(ratings) - len(held)
  with pytest.raises(ValueError, match="history_share"):
    dataclasses.replace(cfg, model=dataclasses.replace(cfg.model,
                                                       history_share=0.0))


def test_held_out_users_can_train_on_their_first_ratings_as_known_users(
    data_dir, tmp_path):
  cfg = _smoke_config(data_dir, str(tmp_path))
  cfg = dataclasses.replace(cfg, data=dataclasses.replace(
      cfg.data, cold_user_fraction=0.1, cold_known_ratings=3))
  metrics = train.run(cfg)
  ratings = data_lib.load("synthetic-small", data_dir)
  kept, held = data_lib.hold_out_users(ratings, 0.1, cfg.data.seed)
  given, later = data_lib.first_by_time(held, 3)
  # Their first 3 ratings are trained on (and left out of their lists);
  # the kept users split as without them; the later ratings are scored.
  vocab = data_lib.Vocabulary.load(str(tmp_path / "vocabulary"))
  rated = data_lib.RatedHistory.load(str(tmp_path / "vocabulary" /
                                         "rated.npz"))
  row = {u: i for i, u in enumerate(rated.user_ids)}
  for user in set(held.user_ids[held.user]):
    mine = given.movie_ids[given.movie[given.user_ids[given.user] == user]]
    assert sorted(np.asarray(vocab.movie_ids)[rated.row(row[user])]) == (
        sorted(mine.astype(bytes)))
  assert metrics["train_ratings"] + metrics["validation_ratings"] + (
      metrics["test_ratings"]) == len(kept) + len(given)
  assert metrics["test_ratings"] == len(data_lib.split(
      kept, "random", cfg.data.test_fraction, cfg.data.seed)[1])
  known = metrics["cold_users"]
  assert sorted(known) == ["known_given_3"]
  assert known["known_given_3"]["eval_users"] == len(set(later.user))
  assert 0.0 < known["known_given_3"]["rerank_liked_recall_at_10"] <= 1.0
  with pytest.raises(ValueError, match="cold_user_fraction"):
    dataclasses.replace(cfg.data, cold_user_fraction=0.0)


def _same(resumed, whole, path=""):
  """Asserts two metrics.json agree on every figure but wall-clock time."""
  if isinstance(whole, dict):
    assert resumed.keys() == whole.keys(), path
    for key in whole:
      if "seconds" not in key and not key.endswith("per_s"):
        _same(resumed[key], whole[key], f"{path}.{key}")
  elif isinstance(whole, list):
    assert len(resumed) == len(whole), path
    for i, (r, w) in enumerate(zip(resumed, whole)):
      _same(r, w, f"{path}[{i}]")
  elif isinstance(whole, float):
    assert resumed == pytest.approx(whole, rel=1e-6, abs=1e-6), path
  else:
    assert resumed == whole, path


def test_killed_run_resumes_to_the_uninterrupted_runs_metrics(data_dir,
                                                              tmp_path):
  # 8 steps an epoch, 2 per call into the graph, a backup every 4 steps:
  # backups fall inside epochs and at their ends; the learning curve too.
  def command(model_dir):
    return [sys.executable, "-m", "ncf_tfrs.train",
            f"--flagfile={ROOT}/configs/smoke.flags",
            f"--data_dir={data_dir}", f"--model_dir={model_dir}",
            "--epochs=2", "--checkpoint_every_steps=4",
            "--steps_per_execution=2", "--eval_every_steps=6",
            "--early_stopping_patience=3", "--export_dir="]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  # The uninterrupted run, beside the killed one and its resumption.
  whole_log = open(tmp_path / "whole.log", "wb")  # pylint: disable=consider-using-with
  whole = subprocess.Popen(command(tmp_path / "whole"), cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=whole_log)
  killed = tmp_path / "killed"
  first = subprocess.Popen(command(killed), cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  backup = killed / "backup" / "chief" / "checkpoint"
  # Hang detectors, not timings: ~10 s on a quiet machine.
  deadline = time.monotonic() + 900
  while not backup.exists():
    assert first.poll() is None, first.stderr.read().decode()[-3000:]
    assert time.monotonic() < deadline, "no backup written in 900 s"
    time.sleep(0.05)
  first.send_signal(signal.SIGKILL)
  first.wait(timeout=300)
  assert not (killed / "metrics.json").exists()
  assert 0 < resume.backup_step(str(killed / "backup"), 8) < 16

  second = subprocess.run(command(killed), cwd=ROOT, env=env,
                          capture_output=True, timeout=1800, check=False)
  assert second.returncode == 0, second.stderr.decode()[-3000:]
  code = whole.wait(timeout=1800)
  whole_log.close()
  assert code == 0, (tmp_path / "whole.log").read_text()[-3000:]
  with open(killed / "metrics.json") as f:
    metrics = json.load(f)
  with open(tmp_path / "whole" / "metrics.json") as f:
    expected = json.load(f)
  # The resumed run is the uninterrupted one: steps, epochs, each epoch's
  # loss, the validation curve and the epochs kept, the learning curve's
  # steps and figures, and the test metrics.
  _same(metrics, expected)
  assert metrics["steps_run"] == 16 and metrics["epochs_run"] == 2
  assert len(metrics["train_loss_by_epoch"]) == 2
  assert [e["epoch"] for e in metrics["validation"]["history"]] == [1, 2]
  assert [p["step"] for p in metrics["curve"]] == [6, 12, 16]
  # The command runs TensorFlow with its own thread pools, not TF's default.
  assert metrics["op_threads"] == dict(zip(
      ("intra_op", "inter_op"), threads.resolve(threads.ThreadConfig())))
  # Gone once training finished.
  assert not os.listdir(killed / "backup")
  # The command ends with a short summary of metrics.json, not all of it.
  out = second.stdout.decode().splitlines()
  assert out[-1] == f"metrics: {killed}/metrics.json"
  assert f"test: AUC {metrics['test']['ranking_auc']:.4f}," in out[-3]
  assert not any(line.startswith("{") for line in out)


class _CountingBackup(resume.RunBackup):
  """Records (epoch, batch) of every backup it takes."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.backups = []

  def _backup(self, epoch, batch=0):
    self.backups.append((epoch, batch))
    super()._backup(epoch, batch)


@pytest.mark.parametrize("save_freq, every_seconds, expected", [
    # By time, an interval already over: every execution's end. The last
    # epoch's end takes none (training ends there; its backup is deleted).
    (None, 0.0, [(e, b) for e in (0, 1) for b in range(5)][:-1]),
    # By time, an interval never over: the first epoch's end only.
    (None, 1e9, [(0, 4)]),
    # By steps (every 2), the clock is not read.
    (2, 0.0, [(0, 1), (0, 3), (0, 4), (1, 1), (1, 3)]),
])
def test_backups_are_taken_by_time_unless_steps_are_given(
    tmp_path, save_freq, every_seconds, expected):
  model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
  model.compile(optimizer="sgd", loss="mse")
  x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
  backup = _CountingBackup(str(tmp_path / "backup"), save_freq,
                           steps_per_epoch=5, every_seconds=every_seconds)
  model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0,
            callbacks=[backup])
  assert backup.backups == expected


def test_nan_loss_stops_with_a_clear_message(data_dir, tmp_path):
  cfg = _smoke_config(data_dir, str(tmp_path))
  cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(
      cfg.optimizer, embedding_learning_rate=1e38, dense_learning_rate=1e38))
  with pytest.raises(callbacks.NaNLossError, match="learning rate"):
    train.run(cfg)


def test_missing_dataset_says_how_to_get_it(tmp_path):
  cfg = config_lib.ExperimentConfig(data=config_lib.DataConfig(
      dataset="100k", data_dir=str(tmp_path), download=False))
  with pytest.raises(data_lib.DatasetNotFoundError, match="manual_dir"):
    train.run(dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, model_dir=str(tmp_path))))


def test_bad_flags_are_rejected_with_the_flag_named():
  with flagsaver.flagsaver():
    flags.FLAGS(["train", "--ncf_mlp_layers=64,wide"])
    with pytest.raises(Exception, match="ncf_mlp_layers"):
      train.config_from_flags()
  with flagsaver.flagsaver():
    flags.FLAGS(["train", "--ranking_weight=0", "--rating_weight=1"])
    with pytest.raises(Exception, match="rating_weight"):
      train.config_from_flags()
  with flagsaver.flagsaver():
    with pytest.raises(flags.IllegalFlagValueError, match="epochs"):
      flags.FLAGS(["train", "--epochs=0"])


@pytest.mark.parametrize(
    "flagfile", sorted(f for f in os.listdir(f"{ROOT}/configs")
                       if f.endswith(".flags")))
def test_every_flagfile_parses_into_a_config(flagfile, monkeypatch):
  monkeypatch.chdir(ROOT)  # Flagfiles may include others by relative path.
  with flagsaver.flagsaver():
    flags.FLAGS(["train", f"--flagfile=configs/{flagfile}"])
    cfg = train.config_from_flags()
  assert cfg.data.dataset in data_lib.DATASET_CONFIGS
  assert cfg.train.model_dir.startswith("runs/")
