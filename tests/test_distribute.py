"""Training under tf.distribute: real processes on 127.0.0.1, each one waited
for with a timeout, so a hung worker fails the test instead of hanging CI."""

import contextlib
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs.training import checkpoints
from ncf_tfrs import data as data_lib

import tensorflow as tf  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 1800


def _free_ports(count):
  """Ports free on 127.0.0.1 now (held open together, so all distinct)."""
  with contextlib.ExitStack() as stack:
    sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]


def _train_command(data_dir, model_dir, strategy, *extra):
  return [sys.executable, "-m", "ncf_tfrs.train",
          f"--flagfile={ROOT}/configs/smoke.flags", f"--data_dir={data_dir}",
          f"--model_dir={model_dir}", "--export_dir=", "--eval_users=100",
          f"--distribution_strategy={strategy}", "--cluster_timeout_s=900",
          *extra]


def _start(command, cluster, task_type, index, log_dir):
  tf_config = {"cluster": cluster, "task": {"type": task_type, "index": index}}
  env = dict(os.environ, TF_CONFIG=json.dumps(tf_config),
             TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  with open(os.path.join(log_dir, f"{task_type}-{index}.log"), "wb") as log:
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _log(log_dir, name):
  with open(os.path.join(log_dir, f"{name}.log"), "rb") as f:
    return f.read().decode(errors="replace")[-3000:]


@contextlib.contextmanager
def _killed_at_exit(processes):
  try:
    yield
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
      p.wait(timeout=30)


def _wait(process, name, log_dir):
  try:
    code = process.wait(timeout=TIMEOUT_S)
  except subprocess.TimeoutExpired:
    pytest.fail(f"{name} still running after {TIMEOUT_S} s:\n"
                f"{_log(log_dir, name)}")
  assert code == 0, f"{name} exited with {code}:\n{_log(log_dir, name)}"


def _test_split(data_dir):
  ratings = data_lib.load("synthetic-small", data_dir,
                          data_lib.load_movies("synthetic-small", data_dir))
  train, test = data_lib.split(ratings, "random", 0.2, 42)
  train, _ = data_lib.carve_validation(train, "random", 0.1, 42)
  return train, test


def _assert_restores_under_mirrored(model, vocabulary, model_dir):
  """The checkpoint also loads under another strategy, with equal weights."""
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    mirrored = type(model)(vocabulary.user_ids, vocabulary.movie_ids,
                           model.config)
    users = tf.constant(vocabulary.user_ids[:50])
    movies = tf.constant(vocabulary.movie_ids[:50])
    mirrored({"user_id": users, "movie_id": movies})
    mirrored.load_weights(checkpoints.latest_checkpoint(model_dir)).expect_partial()
  np.testing.assert_allclose(mirrored.query_embeddings(users),
                             model.query_embeddings(users))
  np.testing.assert_allclose(mirrored.rerank_logits(users[:, None],
                                                    movies[:, None]),
                             model.rerank_logits(users[:, None],
                                                 movies[:, None]), rtol=1e-6)


def test_multi_worker_mirrored_two_workers_train_and_chief_checkpoint_restores(
    data_dir, tmp_path):
  model_dir, log_dir = tmp_path / "run", tmp_path
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  command = _train_command(data_dir, model_dir, "multi_worker_mirrored")
  workers = [_start(command, cluster, "worker", i, log_dir) for i in range(2)]
  with _killed_at_exit(workers):
    for i, worker in enumerate(workers):
      _wait(worker, f"worker-{i}", log_dir)

  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  assert metrics["replicas_per_step"] == 2
  # The smoke config's 8 global steps of 8192 ratings, 4096 per worker.
  assert metrics["steps_run"] == 8 and metrics["epochs_run"] == 1.0
  # Only the chief writes: no worker's temporary copies are left.
  assert not [p for p in model_dir.rglob("*") if "workertemp" in p.name]

  # The chief's checkpoint, restored here on one device, predicts what the
  # two-worker model predicted in training.
  model, vocabulary, _ = checkpoints.load_trained(str(model_dir))
  _assert_restores_under_mirrored(model, vocabulary, str(model_dir))
  model.compile()
  train, test = _test_split(data_dir)
  counts = np.bincount(train.movie, minlength=len(train.movie_ids))
  restored = model.evaluate(
      data_lib.make_dataset(test, 65536, shuffle=False, movie_counts=counts),
      return_dict=True, verbose=0)
  in_training = metrics["test_in_training_strategy"]
  for name in ("ranking_auc", "ranking_log_loss", "ranking_mse"):
    assert restored[name] == pytest.approx(in_training[name], rel=1e-4), name
  # Each worker cut its half of the test batch into its own retrieval chunks,
  # so its negatives differ from one device's: equal within noise only.
  assert restored["retrieval_loss"] == pytest.approx(
      in_training["retrieval_loss"], rel=1e-2)
  for name in ("ranking_auc", "ranking_log_loss", "retrieval_loss"):
    assert metrics["test"][name] == pytest.approx(restored[name], rel=1e-5)
  assert restored["ranking_auc"] > 0.6


def test_parameter_server_shards_tables_over_ps_and_reduces_the_loss(
    data_dir, tmp_path):
  model_dir, log_dir = tmp_path / "run", tmp_path
  ports = iter(_free_ports(5))
  cluster = {"chief": [f"127.0.0.1:{next(ports)}"],
             "worker": [f"127.0.0.1:{next(ports)}" for _ in range(2)],
             "ps": [f"127.0.0.1:{next(ports)}" for _ in range(2)]}
  # Small shards, so that even synthetic-small's tables are split.
  command = _train_command(data_dir, model_dir, "parameter_server",
                           "--epochs=3", "--ps_min_shard_bytes=4096")
  servers = [_start(command, cluster, task, i, log_dir)
             for task in ("ps", "worker") for i in range(2)]
  chief = _start(command, cluster, "chief", 0, log_dir)
  with _killed_at_exit([chief, *servers]):
    _wait(chief, "chief-0", log_dir)
    for server in servers:
      assert server.poll() is None, "a server task exited during training"

  with open(model_dir / "metrics.json") as f:
    metrics = json.load(f)
  shards = metrics["embedding_shards"]
  assert len(shards) == 4  # Retrieval and NCF tables of users and movies.
  for name, devices in shards.items():
    assert sorted(d.split("/device:")[0] for d in devices) == [
        "/job:ps/replica:0/task:0", "/job:ps/replica:0/task:1"], name
  losses = metrics["train_loss_by_epoch"]
  assert len(losses) == 3 and losses[-1] < losses[0]

  # The sharded checkpoint restores whole tables on one device.
  model, vocabulary, _ = checkpoints.load_trained(str(model_dir))
  table = model.query_tower.embedding.embeddings
  assert isinstance(table, tf.Variable)
  assert table.shape[0] == len(vocabulary.user_ids) + 1
  _assert_restores_under_mirrored(model, vocabulary, str(model_dir))
  assert metrics["test"]["ranking_auc"] > 0.5


def _pairs(batch):
  return set(zip(batch["user_id"].numpy().tolist(),
                 batch["movie_id"].numpy().tolist()))


def test_worker_shards_of_a_pass_are_disjoint_and_make_the_global_batches():
  n = 100
  ratings = data_lib.Ratings(
      user_ids=np.array([str(i).encode() for i in range(n)]),
      movie_ids=np.array([b"a", b"b", b"c"]),
      user=np.arange(n, dtype=np.int32),
      movie=(np.arange(n) % 3).astype(np.int32),
      rating=np.full(n, 4.0, np.float32),
      timestamp=np.arange(n, dtype=np.int64))
  one_device = list(data_lib.make_dataset(ratings, 20, seed=7,
                                          drop_remainder=True, passes=2))
  shards = [list(data_lib.make_dataset(ratings, 10, seed=7,
                                       drop_remainder=True, num_shards=2,
                                       shard_index=w, passes=2))
            for w in range(2)]
  assert [len(s) for s in shards] == [10, 10]
  passes = []
  for p in range(2):  # Each pass reshuffles, identically on every worker.
    global_batches = [_pairs(b) for b in one_device[5 * p:5 * (p + 1)]]
    worker_batches = [[_pairs(b) for b in shard[5 * p:5 * (p + 1)]]
                      for shard in shards]
    seen = set()
    for step, (first, second) in enumerate(zip(*worker_batches)):
      assert not first & second and not (first | second) & seen
      assert first | second == global_batches[step]
      seen |= first | second
    passes.append(global_batches)
  assert passes[0] != passes[1]
