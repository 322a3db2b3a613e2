"""Id embedding block shared by the retrieval towers and the NCF scorer.

Every model input is a raw string id. `IdEmbedding` maps it to a vocabulary
index inside the graph and looks up its embedding, so trained and exported
models take raw ids and unknown ids land in one out-of-vocabulary row.
"""

from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

Vocabulary = Union[Sequence[str], np.ndarray]
VocabularyOrLookup = Union[Vocabulary, tf.keras.layers.StringLookup]


class IdEmbedding(tf.keras.layers.Layer):
  """String id -> embedding: the input block of every tower in the system.

  Row 0 of the table is the out-of-vocabulary bucket; row i + 1 belongs to
  `vocabulary[i]`. `lookup` is exposed so callers can reuse the integer ids
  (for example as candidate ids when removing accidental hits).
  """

  def __init__(self,
               vocabulary: VocabularyOrLookup,
               embedding_dim: int,
               l2: float = 0.0,
               name: Optional[str] = None,
               **kwargs) -> None:
    """Initializes the block.

    Args:
      vocabulary: Known ids, most frequent first, without duplicates; or
        another block's `lookup`, to share it: blocks over the same ids then
        map them once per batch (see `call`).
      embedding_dim: Width of each embedding row.
      l2: In training, adds `l2 * sum(row ** 2)` over the looked-up rows (one
        term per occurrence, in the units of the models' summed losses). The
        whole table is never penalized: that would make every update dense.
      name: Layer name.
      **kwargs: Passed to `tf.keras.layers.Layer`.
    """
    super().__init__(name=name, **kwargs)
    self._l2 = l2
    if isinstance(vocabulary, tf.keras.layers.StringLookup):
      self.lookup = vocabulary
    else:
      self.lookup = tf.keras.layers.StringLookup(
          # An array, not a list: Keras tracks a list attribute as a
          # container and walks it item by item whenever it gathers the
          # model's layers or variables, which tracing a training step does
          # many times.
          vocabulary=np.asarray(vocabulary, dtype=str),
          num_oov_indices=1,
          mask_token=None,
          name="lookup")
    self.embedding = tf.keras.layers.Embedding(
        self.lookup.vocabulary_size(), embedding_dim, name="embedding")

  @property
  def vocabulary_size(self) -> int:
    """Number of table rows, the OOV row included."""
    return self.lookup.vocabulary_size()

  def rows(self, ids: tf.Tensor) -> tf.Tensor:
    """Table rows of string ids (0: unknown); integer rows, which `lookup`
    has mapped already, pass through unchanged."""
    return self.lookup(ids) if ids.dtype == tf.string else ids

  def call(self, ids: tf.Tensor, training: bool = False) -> tf.Tensor:
    """Maps ids of any shape [...] to embeddings [..., embedding_dim].

    `ids` are string ids, or their `rows` (a batch's ids are mapped once
    for all the blocks that share the lookup).
    """
    embeddings = self.embedding(self.rows(ids))
    if training and self._l2:
      # l2_loss is sum(x ** 2) / 2; its gradient is one multiply, where
      # reduce_sum's tiles the upstream gradient over the rows first.
      self.add_loss(2.0 * self._l2 * tf.nn.l2_loss(embeddings))
    return embeddings
