"""Typed settings of the model and its optimizer.

Defaults live here; the train command's flags and the configs/ flagfiles
override them.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Architecture and loss of `RecommenderModel`.

  Both losses are sums over the examples of a batch (the TFRS retrieval
  convention), so a row's gradient does not shrink with the batch size and
  the two weights compare per-example cross-entropies.

  Attributes:
    retrieval_embedding_dim: Width of the query and candidate embeddings.
    ncf_embedding_dim: Width of each NCF embedding (GMF and MLP).
    ncf_mlp_layers: Widths of the ReLU layers of the NCF MLP branch.
    retrieval_weight: Weight of the retrieval loss; 0 skips the task.
    ranking_weight: Weight of the ranking loss; 0 skips the task.
    retrieval_batch_size: The in-batch softmax runs over chunks of this many
      examples of each batch (its cost grows with the square of the chunk);
      None uses the whole batch as one chunk.
    sampling_bias_correction: Subtract log(movie sampling probability) from
      the retrieval logits; batches must then have `movie_sampling_prob`.
    remove_accidental_hits: Do not use a movie as a negative for an example
      whose positive is the same movie.
    temperature: Optional softmax temperature of the retrieval task.
    num_hard_negatives: Optional: keep only the hardest in-chunk negatives.
    retrieval_l2: L2 penalty on looked-up retrieval embedding rows.
    ncf_l2: L2 penalty on looked-up NCF embedding rows and Dense kernels.
    ncf_bias: Add a learned user bias and movie bias to the NCF logit.
    rating_weight: Weight of the ordinal rating task (see `RatingThresholds`),
      which trains the NCF logit on every half-star threshold of the rating,
      not only on liked; 0 skips the task.
    history_share: Share of each training batch also scored from the
      users' first ratings by time, training `history.HistoryEncoder` for
      users known only by their ratings (the id path trains as without it);
      0 builds no history side.
    history_length: Most ratings in a training history (each
      example draws how many, from 1 to this, so short histories are seen).
  """
  retrieval_embedding_dim: int = 32
  ncf_embedding_dim: int = 16
  ncf_mlp_layers: Tuple[int, ...] = (64, 32, 16)
  retrieval_weight: float = 1.0
  ranking_weight: float = 1.0
  retrieval_batch_size: Optional[int] = 1024
  sampling_bias_correction: bool = True
  remove_accidental_hits: bool = True
  temperature: Optional[float] = None
  num_hard_negatives: Optional[int] = None
  retrieval_l2: float = 0.0
  ncf_l2: float = 0.0
  ncf_bias: bool = False
  rating_weight: float = 0.0
  history_share: float = 0.0
  history_length: int = 20

  def __post_init__(self):
    if min(self.retrieval_weight, self.ranking_weight, self.rating_weight) < 0:
      raise ValueError(f"Task weights must be >= 0: {self}")
    if not self.retrieval_weight and not self.ranking_weight:
      raise ValueError("At least one of retrieval_weight and ranking_weight "
                       "must be positive.")
    if self.rating_weight and not self.ranking_weight:
      raise ValueError("rating_weight > 0 needs ranking_weight > 0: the "
                       "rating task trains the NCF scorer next to the ranking "
                       "task.")
    if not 0.0 <= self.history_share < 1.0:
      raise ValueError(f"history_share must be in [0, 1): {self}")
    if self.history_length < 1:
      raise ValueError(f"history_length must be positive: {self}")
    if self.retrieval_batch_size is not None and self.retrieval_batch_size < 1:
      raise ValueError(f"retrieval_batch_size must be positive: {self}")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Learning rates of `make_optimizer`.

  Attributes:
    embedding_learning_rate: Adagrad learning rate of the embedding tables.
    adagrad_initial_accumulator: Adagrad's initial accumulator value.
    dense_learning_rate: Adam learning rate of all other variables.
  """
  embedding_learning_rate: float = 0.1
  adagrad_initial_accumulator: float = 0.1
  dense_learning_rate: float = 1e-3
