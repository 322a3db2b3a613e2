"""Neural collaborative filtering (NeuMF) scorer: the ranking model.

The scorer turns a (user, movie) pair into one logit of "the user likes the
movie". It is trained by the ranking task of `ncf_tfrs.model` and, at serving
time, reranks the candidates that retrieval returns for a user.
"""

from typing import Mapping, Optional, Sequence

import tensorflow as tf

from ncf_tfrs import features
from ncf_tfrs.model import towers


class NcfScorer(tf.keras.layers.Layer):
  """NeuMF: GMF and MLP branches joined by one Dense(1) into a logit.

  GMF multiplies a user and a movie embedding elementwise; the MLP runs over
  the concatenation of a second, separate pair of embeddings. Optionally a
  user bias and a movie bias are added to the logit, as in biased matrix
  factorization: how generous a rater is and how well liked a movie is are
  the largest effects in ratings, and a scalar per id learns them from few
  ratings, where the GMF and MLP would spend many. All parts of an id (GMF,
  MLP, bias) are slices of one table row, so each id costs one lookup.
  """

  def __init__(self,
               user_vocabulary: towers.VocabularyOrLookup,
               movie_vocabulary: towers.VocabularyOrLookup,
               embedding_dim: int = 16,
               mlp_layers: Sequence[int] = (64, 32, 16),
               l2: float = 0.0,
               bias: bool = False,
               name: Optional[str] = "ncf",
               **kwargs) -> None:
    """Initializes the scorer.

    Args:
      user_vocabulary: Known user ids, most frequent first, or a lookup
        to share (see `towers.IdEmbedding`).
      movie_vocabulary: Known movie ids, likewise.
      embedding_dim: Width of the GMF embeddings and of the MLP embeddings.
      mlp_layers: Widths of the ReLU layers of the MLP branch.
      l2: L2 penalty on the looked-up embedding rows (per occurrence, see
        `towers.IdEmbedding`) and on the Dense kernels.
      bias: Add a learned user bias and movie bias to the logit.
      name: Layer name.
      **kwargs: Passed to `tf.keras.layers.Layer`.
    """
    super().__init__(name=name, **kwargs)
    self._embedding_dim = embedding_dim
    self._bias = bias
    regularizer = tf.keras.regularizers.L2(l2) if l2 else None
    self.user_embedding = towers.IdEmbedding(
        user_vocabulary, self.user_width, l2=l2, name="user_embedding")
    self.movie_embedding = towers.IdEmbedding(
        movie_vocabulary, self.user_width, l2=l2, name="movie_embedding")
    self.mlp = tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu",
                               kernel_regularizer=regularizer)
         for units in mlp_layers],
        name="mlp")
    self.output_layer = tf.keras.layers.Dense(
        1, kernel_regularizer=regularizer, name="logit")

  def call(self,
           inputs: Mapping[str, tf.Tensor],
           training: bool = False) -> tf.Tensor:
    """Scores pairs: `user_id` [B] and `movie_id` [B] strings -> logits [B]."""
    return self.score(
        inputs[features.USER_ID], inputs[features.MOVIE_ID], training=training)

  @property
  def user_width(self) -> int:
    """Width of a user's row: GMF, MLP and the optional bias."""
    return 2 * self._embedding_dim + int(self._bias)

  def score(self,
            user_ids: tf.Tensor,
            movie_ids: tf.Tensor,
            training: bool = False) -> tf.Tensor:
    """Scores each user against one or many movies.

    Args:
      user_ids: [B] string user ids, or their rows in the shared lookup.
      movie_ids: [B] string movie ids (pairs), or [B, C]: C candidates per
        user, for reranking; or their rows in the shared lookup.
      training: Whether this is a training step (adds the L2 penalty).

    Returns:
      Logits shaped like `movie_ids`.
    """
    return self.score_rows(self.user_embedding(user_ids, training=training),
                           movie_ids, training=training)

  def score_rows(self,
                 user: tf.Tensor,
                 movie_ids: tf.Tensor,
                 training: bool = False) -> tf.Tensor:
    """`score` from users' embedding rows [B, W] (`user_embedding`'s
    width), however obtained: looked up, or built from a history."""
    movie = self.movie_embedding(movie_ids, training=training)
    if movie.shape.rank > user.shape.rank:
      # The user is looked up once and broadcast over its candidates.
      user = tf.expand_dims(user, axis=1)
      user = tf.broadcast_to(user, tf.shape(movie))
    # One split per row, not a slice per part: a slice's gradient writes a
    # zero-filled row per part, the split's is one concat.
    widths = [self._embedding_dim] * 2 + [1] * int(self._bias)
    user_parts = tf.split(user, widths, axis=-1)
    movie_parts = tf.split(movie, widths, axis=-1)
    gmf = user_parts[0] * movie_parts[0]
    mlp = self.mlp(tf.concat([user_parts[1], movie_parts[1]], axis=-1))
    logits = tf.squeeze(self.output_layer(tf.concat([gmf, mlp], axis=-1)),
                        axis=-1)
    if self._bias:
      logits += tf.squeeze(user_parts[2] + movie_parts[2], axis=-1)
    return logits
