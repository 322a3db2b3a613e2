"""Splits -> tf.data: batches of the dicts the model trains on."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs.data.movielens import Ratings


def num_batches(num_ratings: int, batch_size: int,
                drop_remainder: bool = False) -> int:
  """Batches of one pass over `num_ratings` (one device, one pipeline).

  What `make_dataset` yields per pass, without building it: training uses
  it as its steps per epoch.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}.")
  return (num_ratings // batch_size if drop_remainder
          else -(-num_ratings // batch_size))


def make_dataset(ratings: Ratings,
                 batch_size: int,
                 shuffle: bool = True,
                 seed: int = 42,
                 movie_counts: np.ndarray | None = None,
                 drop_remainder: bool = False,
                 num_shards: int = 1,
                 shard_index: int = 0,
                 passes: int = 1,
                 first_batch: int = 0,
                 batches_per_pass: int | None = None) -> tf.data.Dataset:
  """Batches `ratings` into the dicts the model trains on.

  Each batch is one gather from in-memory columns, so the pipeline costs
  little per rating. With `shuffle`, pass p is the permutation drawn from
  (`seed`, p): a new order every pass, as `shuffle(reshuffle_each_iteration
  =True)` would give without its per-element cost, and one that depends on
  nothing but the pass, so a resumed run can start where a killed one was.

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
    passes: passes over the ratings, one after the other (training: one per
      epoch, so Keras keeps one iterator for the whole run).
    first_batch: batches of this pipeline to leave out from the start of
      pass 0: those a resumed run already trained on.
    batches_per_pass: at most this many batches of each pass (a distributed
      run's steps per epoch, so that passes stay aligned with epochs).

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
  batches = num_batches(n, batch_size, drop_remainder)
  if not 0 <= shard_index < num_shards:
    raise ValueError(f"shard_index {shard_index} not in [0, {num_shards}).")
  if drop_remainder:
    batches -= batches % num_shards
  if batches < num_shards:
    raise ValueError(f"{n} ratings make no batch of {batch_size} for each of "
                     f"{num_shards} shards.")
  num_batches_here = len(range(shard_index, batches, num_shards))
  if batches_per_pass is not None:
    num_batches_here = min(num_batches_here, batches_per_pass)
  if not 0 <= first_batch <= passes * num_batches_here:
    raise ValueError(f"first_batch {first_batch} not in [0, "
                     f"{passes * num_batches_here}].")
  first_pass, first_in_pass = divmod(first_batch, num_batches_here)

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

  def pass_batches(p):
    order = tf.range(n)
    if shuffle:
      order = tf.random.experimental.stateless_shuffle(
          order, seed=tf.stack([tf.constant(seed, tf.int64), p]))
    skip = tf.where(p == first_pass, tf.constant(first_in_pass, tf.int64),
                    tf.constant(0, tf.int64))
    ds = tf.data.Dataset.range(shard_index + skip * num_shards,
                               shard_index + num_batches_here * num_shards,
                               num_shards).map(
        lambda i: order[i * batch_size:(i + 1) * batch_size])
    if drop_remainder:
      ds = ds.map(lambda index: tf.ensure_shape(index, [batch_size]))
    return ds

  ds = tf.data.Dataset.range(first_pass, passes).flat_map(pass_batches)
  ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.apply(tf.data.experimental.assert_cardinality(
      passes * num_batches_here - first_batch))
  return ds.prefetch(tf.data.AUTOTUNE)
