"""The Kaggle notebook's recipe (../shared/seed/), kept runnable as the baseline.

The product grew from a notebook that trained NCF on ml-32m. Every speed and
quality figure of the product is reported next to this recipe, run on the
same split in the same benchmark run, so the comparison survives a noisy
machine. The recipe is reproduced as the notebook wrote it:

- ids mapped to indices with pandas (`enumerate(unique())` and `Series.map`),
  before the split, over the integer ids ratings.csv holds;
- tf.data from_tensor_slices over (user, movie) index pairs and liked labels,
  shuffled over the whole training split, batches of 256;
- its NCF model: separate GMF and MLP embedding tables (dim 16), ReLU MLP
  64-32-16, one Dense(1, sigmoid) over [GMF product, MLP output];
- Adam 1e-3 on every variable (dense updates of the embedding tables),
  binary cross-entropy, one epoch.

Metrics are the notebook's (accuracy, MSE, MAE, the loss) plus AUC, with the
same Keras metric classes the product's ranking task uses.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from ncf_tfrs import data as data_lib

BATCH_SIZE = 256
LEARNING_RATE = 1e-3


class NotebookNcf(tf.keras.Model):
  """The notebook's NCFModel, unchanged apart from Keras 2 and type hints."""

  def __init__(self, num_users: int, num_items: int, embedding_dim: int = 16,
               mlp_layers: Sequence[int] = (64, 32, 16), **kwargs) -> None:
    super().__init__(**kwargs)
    layers = tf.keras.layers
    self.user_embedding_gmf = layers.Embedding(num_users, embedding_dim)
    self.item_embedding_gmf = layers.Embedding(num_items, embedding_dim)
    self.user_embedding_mlp = layers.Embedding(num_users, embedding_dim)
    self.item_embedding_mlp = layers.Embedding(num_items, embedding_dim)
    self.mlp_layers = tf.keras.Sequential(
        [layers.Dense(units, activation="relu") for units in mlp_layers])
    self.concat_layer = layers.Concatenate()
    self.output_layer = layers.Dense(1, activation="sigmoid")

  def call(self, inputs):
    user_ids, item_ids = inputs["user_id"], inputs["item_id"]
    gmf_output = (self.user_embedding_gmf(user_ids) *
                  self.item_embedding_gmf(item_ids))
    mlp_input = tf.concat([self.user_embedding_mlp(user_ids),
                           self.item_embedding_mlp(item_ids)], axis=-1)
    mlp_output = self.mlp_layers(mlp_input)
    return self.output_layer(self.concat_layer([gmf_output, mlp_output]))


@dataclasses.dataclass(frozen=True)
class NotebookData:
  """The split as the notebook holds it: index pairs and liked labels."""

  train_x: np.ndarray  # (n_train, 2) int64: user index, movie index
  train_y: np.ndarray  # (n_train,) float32
  test_x: np.ndarray
  test_y: np.ndarray
  num_users: int
  num_items: int
  mapping_seconds: float  # wall time of the pandas id mapping


def _integer_ids(ids: np.ndarray) -> np.ndarray:
  """MovieLens ids as ratings.csv gives them to pandas: int64."""
  return np.asarray(ids).astype(np.int64)


def notebook_data(train: data_lib.Ratings,
                  test: data_lib.Ratings) -> NotebookData:
  """Maps ids the notebook's way (pandas, before the split) on our split."""
  start = time.perf_counter()
  data = pd.DataFrame({
      "userId": np.concatenate([_integer_ids(train.user_ids)[train.user],
                                _integer_ids(test.user_ids)[test.user]]),
      "movieId": np.concatenate([_integer_ids(train.movie_ids)[train.movie],
                                 _integer_ids(test.movie_ids)[test.movie]]),
      "rating": np.concatenate([train.rating, test.rating]),
  })
  user_mapping = {u: i for i, u in enumerate(data["userId"].unique())}
  item_mapping = {m: i for i, m in enumerate(data["movieId"].unique())}
  data["userId"] = data["userId"].map(user_mapping)
  data["movieId"] = data["movieId"].map(item_mapping)
  x = data[["userId", "movieId"]].values
  y = (data["rating"] > 3).astype(np.float32).values
  seconds = time.perf_counter() - start
  n = len(train)
  return NotebookData(x[:n], y[:n], x[n:], y[n:], len(user_mapping),
                      len(item_mapping), seconds)


def _features(x, y):
  return {"user_id": x[:, 0], "item_id": x[:, 1]}, y


def train_dataset(data: NotebookData, seed: int = 42) -> tf.data.Dataset:
  """The notebook's training input: full shuffle, batch 256."""
  ds = tf.data.Dataset.from_tensor_slices((data.train_x, data.train_y))
  ds = ds.shuffle(buffer_size=len(data.train_x), seed=seed).batch(BATCH_SIZE)
  return ds.map(_features)


def ordered_dataset(x: np.ndarray, y: np.ndarray,
                    batch_size: int = 65536) -> tf.data.Dataset:
  """Pairs in the order given, batched: held-out evaluation (where the batch
  size changes no metric, only the time) and pre-shuffled timing windows."""
  ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
  return ds.map(_features).prefetch(tf.data.AUTOTUNE)


def make_model(data: NotebookData) -> NotebookNcf:
  """The notebook's model, compiled as the notebook compiled it, plus AUC."""
  model = NotebookNcf(data.num_users, data.num_items)
  model.compile(
      optimizer=tf.keras.optimizers.Adam(learning_rate=LEARNING_RATE),
      loss="binary_crossentropy",
      metrics=["accuracy", "mse", "mae", tf.keras.metrics.AUC(name="auc")])
  return model
