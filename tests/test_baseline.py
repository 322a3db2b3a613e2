"""The notebook's recipe, kept as the benchmark baseline, is the notebook's."""

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

import numpy as np
import tensorflow as tf

from ncf_tfrs.bench import baseline
from ncf_tfrs.bench import train as bench_train
from ncf_tfrs import data as data_lib


def test_model_has_the_notebooks_parameter_count():
  model = baseline.NotebookNcf(num_users=200948, num_items=84432)
  model({"user_id": tf.constant([0]), "item_id": tf.constant([0])})
  # The notebook's model.summary(): "Trainable params: 9,136,913".
  assert model.count_params() == 9_136_913


def test_pandas_mapping_keeps_pairs_and_labels(data_dir):
  ratings = data_lib.load("synthetic-small", data_dir)
  train, test = data_lib.split(ratings, "random")
  data = baseline.notebook_data(train, test)
  assert len(data.train_x) == len(train) and len(data.test_x) == len(test)
  assert data.num_users == len(np.unique(np.concatenate([train.user,
                                                         test.user])))
  np.testing.assert_array_equal(data.train_y, train.liked)
  # The same raw user always maps to the same index, in train and test.
  raw = np.concatenate([train.user_ids[train.user], test.user_ids[test.user]])
  index = np.concatenate([data.train_x[:, 0], data.test_x[:, 0]])
  first = {}
  for r, i in zip(raw, index):
    assert first.setdefault(r, i) == i


def test_notebook_stage_learns_and_records_its_curve(data_dir):
  result = bench_train.notebook_stage("synthetic-small", data_dir,
                                      curve_points=2,
                                      max_train_ratings=40_000)
  assert result["train_ratings"] == 40_192  # 157 batches of 256
  assert result["test"]["auc"] > 0.6
  steps = [p["step"] for p in result["curve"]]
  assert steps == [78, 156, 157]
  assert result["curve"][-1]["ratings"] == result["train_ratings"]
  seconds = [p["train_seconds"] for p in result["curve"]]
  assert seconds == sorted(seconds)
