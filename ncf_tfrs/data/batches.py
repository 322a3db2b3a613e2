"""Splits -> tf.data: batches of the dicts the model trains on."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs.data.movielens import Ratings


def make_dataset(ratings: Ratings,
                 batch_size: int,
                 shuffle: bool = True,
                 seed: int = 42,
                 movie_counts: np.ndarray | None = None,
                 drop_remainder: bool = False,
                 num_shards: int = 1,
                 shard_index: int = 0) -> tf.data.Dataset:
  """Batches `ratings` into the dicts the model trains on.

  Each batch is one gather from in-memory columns, so the pipeline costs
  little per rating. With `shuffle`, every pass over the dataset draws a new
  permutation (deterministic given `seed`), as `shuffle(reshuffle_each_iteration
  =True)` would, without its per-element cost.

  Args:
    ratings: the split to batch.
    batch_size: ratings per batch; the last batch may be smaller.
    shuffle: whether to reshuffle the ratings on every pass.
    seed: seed of the permutations.
    movie_counts: training ratings per movie, indexed by `ratings.movie` codes
      (defaults to the counts in `ratings`); gives `movie_sampling_prob`.
    drop_remainder: drop the last, smaller batch of each pass, so every batch
      has a static size (the model then splits retrieval chunks statically).
      With `shuffle`, each pass drops different ratings.
    num_shards: deal the batches round-robin to this many input pipelines
      (one per worker of a distributed run, see `ncf_tfrs.distribute`); with
      `drop_remainder`, each pipeline gets the same number of batches.
    shard_index: which pipeline's batches (shard_index, shard_index +
      num_shards, ...) this dataset yields. Every pipeline draws the same
      permutations from `seed`, so the shards are disjoint.

  Returns:
    A dataset of dicts: user_id and movie_id (tf.string), liked and
    user_rating (float32), movie_sampling_prob (float32).
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  n = len(ratings)
  if movie_counts is None:
    movie_counts = np.bincount(ratings.movie, minlength=len(ratings.movie_ids))
  sampling_prob = tf.constant(movie_counts / max(movie_counts.sum(), 1),
                              dtype=tf.float32)
  user_ids = tf.constant(ratings.user_ids.astype(bytes))
  movie_ids = tf.constant(ratings.movie_ids.astype(bytes))
  user = tf.constant(ratings.user)
  movie = tf.constant(ratings.movie)
  rating = tf.constant(ratings.rating)
  num_batches = n // batch_size if drop_remainder else -(-n // batch_size)
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, {num_shards}).")
  if drop_remainder:
    num_batches -= num_batches % num_shards
  if num_batches < num_shards:
    raise ValueError(f"{n} ratings make no batch of {batch_size} for each of "
                     f"{num_shards} shards.")
  num_batches_here = len(range(shard_index, num_batches, num_shards))

  def batch(index):
    u = tf.gather(user, index)
    m = tf.gather(movie, index)
    r = tf.gather(rating, index)
    return {
        features.USER_ID: tf.gather(user_ids, u),
        features.MOVIE_ID: tf.gather(movie_ids, m),
        features.LIKED: tf.cast(r > features.LIKED_THRESHOLD, tf.float32),
        features.RATING: r,
        features.MOVIE_SAMPLING_PROB: tf.gather(sampling_prob, m),
    }

  def batches_of(order):
    ds = tf.data.Dataset.range(shard_index, num_batches, num_shards).map(
        lambda i: order[i * batch_size:(i + 1) * batch_size])
    if drop_remainder:
      ds = ds.map(lambda index: tf.ensure_shape(index, [batch_size]))
    return ds

  if shuffle:
    ds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = ds.take(1).flat_map(lambda s: batches_of(
        tf.random.experimental.stateless_shuffle(
            tf.range(n), seed=tf.stack([s, tf.constant(seed, tf.int64)]))))
  else:
    ds = batches_of(tf.range(n))
  ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.apply(tf.data.experimental.assert_cardinality(num_batches_here))
  return ds.prefetch(tf.data.AUTOTUNE)
