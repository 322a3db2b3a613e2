"""The user side computed from ratings given at request time.

A user who signed up after training has no id embedding; a returning user's
newest ratings are not in theirs. `HistoryEncoder` builds both user-side
inputs the model needs, the retrieval query and the NCF user row, from a list
of (movie id, rating) pairs instead, so such users get personal
recommendations from the same exported model, without retraining.

It is trained jointly with the two tasks: in each training batch a share of
the examples is scored a second time, from the user's first training
ratings by time (`ncf_tfrs.data.make_dataset` draws them) instead of the
user id, so the encoder learns to stand in for the id embeddings it sits
beside (`RecommenderModel.history_loss`).
"""

from typing import Optional

import tensorflow as tf

from ncf_tfrs import features


def rating_levels(ratings: tf.Tensor) -> tf.Tensor:
  """Ratings -> level indices: 0.5 stars -> 1 ... 5 stars -> 10; 0 (the pad)
  and anything outside 0.5-5 -> 0."""
  levels = tf.cast(tf.round(ratings * 2.0), tf.int32)
  return tf.where((levels >= 1) & (levels <= 10), levels, 0)


class HistoryEncoder(tf.keras.layers.Layer):
  """(movie, rating) lists -> a retrieval query and an NCF user row.

  The rated movies come in as the model's own movie embeddings (the
  candidate tower's and the NCF scorer's rows, which every rating trains);
  the list is pooled twice, as a plain mean (what the user chose to watch,
  as in SVD++) and as a mean weighted by a learned scalar per rating level
  (what they liked and disliked: a 1-star rating pushes away from the movie,
  a 5-star one towards it). Two linear heads map the pooled vector to the
  widths of the query tower and of the NCF user row. Entries marked invalid
  (pads, unknown movies) are left out of both means; an empty history gives
  the heads' biases, a generic user.
  """

  def __init__(self,
               movie_width: int,
               query_dim: int,
               ncf_user_width: int,
               name: Optional[str] = "history",
               **kwargs) -> None:
    """Initializes the encoder.

    Args:
      movie_width: Width of a rated movie's embedding.
      query_dim: Width of the retrieval query it stands in for.
      ncf_user_width: Width of the NCF user row it stands in for.
      name: Layer name.
      **kwargs: Passed to `tf.keras.layers.Layer`.
    """
    super().__init__(name=name, **kwargs)
    # One weight per level, 0 (pad) .. 10 (5 stars); starting at
    # (rating - 3) / 2, so likes and dislikes pull opposite ways from the
    # first step.
    self.level_weight = tf.keras.layers.Embedding(
        len(features.RATING_LEVELS) + 1, 1,
        embeddings_initializer=tf.keras.initializers.Constant(
            [[0.0]] + [[(r - features.LIKED_THRESHOLD) / 2.0]
                       for r in features.RATING_LEVELS]),
        name="level_weight")
    # As wide as the pooled vector (two means of the movies' embeddings).
    self.hidden = tf.keras.layers.Dense(
        2 * movie_width, activation="relu", name="hidden")
    self.query_head = tf.keras.layers.Dense(query_dim, name="query_head")
    self.ncf_head = tf.keras.layers.Dense(ncf_user_width, name="ncf_head")

  def call(self, movies: tf.Tensor, valid: tf.Tensor, ratings: tf.Tensor
           ) -> dict[str, tf.Tensor]:
    """Histories -> {"query": [B, query_dim], "ncf": [B, ncf width]}.

    Args:
      movies: [B, H, E] the rated movies' embeddings.
      valid: [B, H] bool, which entries are ratings (not pads or unknown).
      ratings: [B, H] the ratings.
    """
    valid = tf.cast(valid, tf.float32)[..., tf.newaxis]
    movies *= valid
    weights = self.level_weight(rating_levels(ratings))
    count = tf.maximum(tf.reduce_sum(valid, axis=1), 1.0)
    pooled = tf.concat([tf.reduce_sum(movies, axis=1) / count,
                        tf.reduce_sum(movies * weights, axis=1) / count],
                       axis=-1)
    pooled = tf.concat([pooled, self.hidden(pooled)], axis=-1)
    return {"query": self.query_head(pooled), "ncf": self.ncf_head(pooled)}
