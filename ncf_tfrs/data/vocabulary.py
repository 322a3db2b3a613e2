"""Splits -> vocabularies: the model's id tables, built from the training split."""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ncf_tfrs.data.movielens import Ratings


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """The model's id vocabularies, built from the training split.

  Most frequent first (StringLookup's convention); ids outside them go to the
  model's OOV bucket. `movie_counts` are the training ratings of each movie in
  `movie_ids` order: popularity for baselines and sampling-bias correction.
  """

  user_ids: np.ndarray  # bytes
  movie_ids: np.ndarray  # bytes
  movie_counts: np.ndarray  # int64

  @classmethod
  def from_ratings(cls, train: Ratings) -> Vocabulary:
    user_counts = np.bincount(train.user, minlength=len(train.user_ids))
    movie_counts = np.bincount(train.movie, minlength=len(train.movie_ids))
    users = _by_count(user_counts)
    movies = _by_count(movie_counts)
    return cls(
        user_ids=train.user_ids[users].astype(bytes),
        movie_ids=train.movie_ids[movies].astype(bytes),
        movie_counts=movie_counts[movies])

  def save(self, directory: str) -> None:
    """Writes user_ids.txt, movie_ids.txt and movie_counts.txt, one per line."""
    tf.io.gfile.makedirs(directory)
    for name, values in (("user_ids", self.user_ids),
                         ("movie_ids", self.movie_ids),
                         ("movie_counts", self.movie_counts)):
      with tf.io.gfile.GFile(f"{directory}/{name}.txt", "w") as f:
        f.write("\n".join(v.decode() if isinstance(v, bytes) else str(v)
                          for v in values) + "\n")

  @classmethod
  def load(cls, directory: str) -> Vocabulary:
    def read(name):
      with tf.io.gfile.GFile(f"{directory}/{name}.txt") as f:
        return f.read().splitlines()

    return cls(
        user_ids=np.array(read("user_ids"), dtype=bytes),
        movie_ids=np.array(read("movie_ids"), dtype=bytes),
        movie_counts=np.array(read("movie_counts"), dtype=np.int64))


def _by_count(counts: np.ndarray) -> np.ndarray:
  """Indices with a nonzero count, most frequent first, ties by index."""
  present = np.flatnonzero(counts)
  return present[np.argsort(-counts[present], kind="stable")]
