"""The retrieval task's loss: in-batch softmax without dense labels."""

import contextlib
from typing import Iterator, Optional

import tensorflow as tf


@tf.custom_gradient
def _diagonal_softmax_cross_entropy(logits: tf.Tensor, repeats: tf.Tensor):
  """-log softmax(logits)[i, i] per row i, for square logits [N, N].

  `repeats` [N] counts, per row, the other columns that hold the row's own
  positive candidate (accidental hits): those columns' logits equal the
  diagonal one, so leaving them out of the softmax is subtracting
  `repeats * exp(logit[i, i])` from its denominator, with no [N, N] mask.

  The gradient, softmax - identity, reuses the forward pass's exponentials:
  no second exp over the logits, and no label matrix. A left-out column
  keeps its softmax share and the diagonal gives the same share back, so
  the embeddings (the repeated column's candidate is the positive's own
  embedding row) get exactly the gradient of the masked softmax.
  """
  top = tf.stop_gradient(tf.reduce_max(logits, axis=1, keepdims=True))
  exp = tf.exp(logits - top)
  diagonal = tf.linalg.diag_part(exp)
  total = tf.reduce_sum(exp, axis=1) - repeats * diagonal
  loss = (tf.math.log(total) + tf.squeeze(top, 1) -
          tf.linalg.diag_part(logits))

  def grad(upstream):
    scale = upstream / total
    softmax = exp * scale[:, tf.newaxis]
    return tf.linalg.set_diag(
        softmax, (1.0 - repeats) * diagonal * scale - upstream), None

  return loss, grad


class InBatchSoftmaxLoss(tf.keras.losses.Loss):
  """The retrieval task's softmax cross-entropy, without its dense labels.

  `tfrs.tasks.Retrieval` scores every query of a chunk against every
  candidate and passes `tf.eye` as labels: query i's positive is candidate i.
  Keras's categorical cross-entropy then reads a [chunk, chunk] label matrix
  per chunk, in the forward and the backward pass, and TF's fused softmax
  cross-entropy kernels were the most expensive ops of a training step on
  CPU. This loss knows the positives are on the diagonal and computes the
  same values and gradients in fewer passes over the logits. It cannot be
  combined with hard-negative mining, which reorders the candidates.

  Accidental hits (a chunk's other ratings of the positive's movie) are
  left out when the caller names them with `repeated_positives`, in place
  of the task's `score_mask`: a boolean [chunk, chunk] mask costs a
  comparison, a select and the select's gradient over every logit, which
  were an eighth of a training step's op time on CPU.
  """

  def __init__(self, **kwargs) -> None:
    super().__init__(**kwargs)
    self._repeats: Optional[tf.Tensor] = None

  @contextlib.contextmanager
  def repeated_positives(self, candidate_ids: tf.Tensor) -> Iterator[None]:
    """Within it, the loss leaves out accidental hits among `candidate_ids`
    [chunk] (the positives' integer ids, in the chunk's order)."""
    _, index, counts = tf.unique_with_counts(candidate_ids)
    self._repeats = tf.cast(tf.gather(counts, index) - 1, tf.float32)
    try:
      yield
    finally:
      self._repeats = None

  def call(self, y_true, y_pred):
    del y_true  # tf.eye; the positives are on the diagonal.
    repeats = self._repeats
    if repeats is None:
      repeats = tf.zeros(tf.shape(y_pred)[:1])
    return _diagonal_softmax_cross_entropy(y_pred, repeats)
