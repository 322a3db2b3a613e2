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
                 batches_per_pass: int | None = None,
                 history_share: float = 0.0,
                 history_length: int = 20) -> tf.data.Dataset:
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
    history_share: give the first round(history_share * batch_size)
      examples of each batch a history: their user's first ratings by time
      in `ratings` (never the example's own movie), for the model's history
      encoder (`ncf_tfrs.model.history`).
    history_length: the most ratings in a history; each example draws its
      length from 1 to this.

  Returns:
    A dataset of dicts: user_id and movie_id (tf.string), liked and
    user_rating (float32), movie_sampling_prob (float32); with
    `history_share`, history_movie_id (tf.string, "" pads) and
    history_rating (float32, 0 pads), [N, history_length] for the batch's
    first N examples.
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

  histories = (_HistorySampler(ratings, movie_ids, history_length, seed)
               if history_share else None)
  num_history = int(round(history_share * batch_size))

  def batch(index):
    u = tf.gather(user, index)
    m = tf.gather(movie, index)
    r = tf.gather(rating, index)
    columns = {
        features.USER_ID: tf.gather(user_ids, u),
        features.MOVIE_ID: tf.gather(movie_ids, m),
        features.LIKED: tf.cast(r > features.LIKED_THRESHOLD, tf.float32),
        features.RATING: r,
        features.MOVIE_SAMPLING_PROB: tf.gather(sampling_prob, m),
    }
    if histories is not None:
      columns.update(histories(u[:num_history], m[:num_history], index))
    return columns

  def permutation(p):
    order = tf.range(n)
    if shuffle:
      order = tf.random.experimental.stateless_shuffle(
          order, seed=tf.stack([tf.constant(seed, tf.int64), p]))
    return p, order

  def pass_batches(p, order):
    skip = tf.where(p == first_pass, tf.constant(first_in_pass, tf.int64),
                    tf.constant(0, tf.int64))
    ds = tf.data.Dataset.range(shard_index + skip * num_shards,
                               shard_index + num_batches_here * num_shards,
                               num_shards).map(
        lambda i: order[i * batch_size:(i + 1) * batch_size])
    if drop_remainder:
      ds = ds.map(lambda index: tf.ensure_shape(index, [batch_size]))
    return ds

  # The next pass's order is drawn while this pass's batches stream, so an
  # epoch does not start by waiting for a shuffle of every rating.
  ds = tf.data.Dataset.range(first_pass, passes).map(permutation).prefetch(
      1).flat_map(pass_batches)
  ds = ds.map(batch, num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.apply(tf.data.experimental.assert_cardinality(
      passes * num_batches_here - first_batch))
  # No tf.data autotuning thread: an iterator that has reached its end joins
  # that thread when it is deleted, and the join sometimes waits out the
  # thread's sleep, up to 60 s (seen as `fit` returning 30-55 s after its
  # last epoch; docs/results/training_speed.md). Without it the parallel map
  # runs one call per core and the prefetch buffer still grows as needed.
  options = tf.data.Options()
  options.autotune.enabled = False
  # The first pass's shuffle and batches start when the iterator is made, not
  # at the first step: `fit` makes it, then traces the step meanwhile.
  options.experimental_warm_start = True
  return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


class _HistorySampler:
  """Draws each example's history from its user's ratings, in the graph.

  A history is what a new user's request brings: the user's first ratings by
  time, as many as the example draws (1 to `length`), less the example's own
  movie (the model must not see the rating it predicts). Trained on random
  ratings of the user instead, the encoder served users arriving with their
  first ratings barely better than the most rated movies (REAL ml-100k,
  docs/results/new_users.md). Each user's first `length` ratings are held as
  one [users, length] table, so a batch's histories are one gather. Draws
  are stateless, seeded by the batch's first rating row, so a resumed run
  draws the same histories.
  """

  def __init__(self, ratings: Ratings, movie_ids: tf.Tensor, length: int,
               seed: int):
    order = np.lexsort((ratings.timestamp, ratings.user))
    user = ratings.user[order]
    counts = np.bincount(user, minlength=len(ratings.user_ids))
    position = np.arange(len(user)) - np.concatenate(
        [[0], np.cumsum(counts)[:-1]])[user]
    first = position < length
    self._pad = len(ratings.movie_ids)
    movie = np.full((len(ratings.user_ids), length), self._pad, np.int32)
    movie[user[first], position[first]] = ratings.movie[order][first]
    rating = np.zeros((len(ratings.user_ids), length), np.float32)
    rating[user[first], position[first]] = ratings.rating[order][first]
    self._movie, self._rating = tf.constant(movie), tf.constant(rating)
    self._movie_ids = tf.concat([movie_ids, [features.HISTORY_PAD]], axis=0)
    self._length = length
    self._seed = seed

  def __call__(self, users: tf.Tensor, movies: tf.Tensor,
               index: tf.Tensor) -> dict[str, tf.Tensor]:
    seed = tf.stack([tf.constant(self._seed, tf.int64),
                     tf.cast(index[0], tf.int64)])
    lengths = tf.random.stateless_uniform(
        tf.shape(users), seed, minval=1, maxval=self._length + 1,
        dtype=tf.int32)
    movie = tf.gather(self._movie, users)
    valid = ((tf.range(self._length)[tf.newaxis, :] < lengths[:, tf.newaxis]) &
             (movie != self._pad) & (movie != movies[:, tf.newaxis]))
    return {
        features.HISTORY_MOVIE_ID: tf.gather(
            self._movie_ids, tf.where(valid, movie, self._pad)),
        features.HISTORY_RATING: tf.where(
            valid, tf.gather(self._rating, users), 0.0),
    }
