"""Splits -> what each user already rated: the history serving leaves out.

A recommender that recommends what the user has already rated is the first
thing its users notice. The export carries every training user's rated
movies (the training split and the validation slice), as compact CSR arrays
over the model's vocabularies, so that every serving path can leave them out
without the caller knowing the history.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ncf_tfrs.data.movielens import Ratings
from ncf_tfrs.data.vocabulary import Vocabulary
from ncf_tfrs.serving import contract


@dataclasses.dataclass(frozen=True)
class RatedHistory:
  """The movies each vocabulary user rated, as CSR arrays.

  Row i is `Vocabulary.user_ids[i]`; its movies are
  `movies[row_splits[i]:row_splits[i + 1]]`, catalog rows (positions in
  `Vocabulary.movie_ids`), ascending and distinct.
  """

  user_ids: np.ndarray  # (num_users,) bytes, the vocabulary's order
  row_splits: np.ndarray  # (num_users + 1,) int64
  movies: np.ndarray  # (num_rated,) int32

  @classmethod
  def from_ratings(cls, ratings: Ratings,
                   vocabulary: Vocabulary) -> RatedHistory:
    """Each vocabulary user's rated vocabulary movies in `ratings`."""
    def rows(ids: np.ndarray, table: np.ndarray) -> np.ndarray:
      row = {key: i for i, key in enumerate(table)}
      return np.array([row.get(key, -1) for key in ids.astype(bytes)],
                      dtype=np.int64)

    user = rows(ratings.user_ids, vocabulary.user_ids)[ratings.user]
    movie = rows(ratings.movie_ids, vocabulary.movie_ids)[ratings.movie]
    keep = (user >= 0) & (movie >= 0)
    pairs = np.unique(user[keep] * len(vocabulary.movie_ids) + movie[keep])
    user, movie = np.divmod(pairs, len(vocabulary.movie_ids))
    counts = np.bincount(user, minlength=len(vocabulary.user_ids))
    return cls(user_ids=np.asarray(vocabulary.user_ids, dtype=bytes),
               row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(
                   np.int64),
               movies=movie.astype(np.int32))

  def row(self, i: int) -> np.ndarray:
    return self.movies[self.row_splits[i]:self.row_splits[i + 1]]

  def save(self, path: str) -> None:
    """Writes the export's rated.npz format (`serving.contract.write_rated`),
    which `ncf_tfrs.serving.Catalog` reads."""
    contract.write_rated(path, self.user_ids, self.row_splits, self.movies)

  @classmethod
  def load(cls, path: str) -> RatedHistory:
    user_ids, row_splits, movies = contract.read_rated(path)
    return cls(user_ids=user_ids, row_splits=row_splits, movies=movies)
