"""The model stage: id towers, the NCF scorer and the tfrs.Model that trains both.

- `towers`: StringLookup + Embedding, raw string ids in, rows out.
- `ncf`: the notebook's NCF scorer (GMF + MLP) over those towers.
- `history`: the user side built from (movie, rating) pairs, for users the
  model never saw.
- `losses`: the retrieval task's in-batch softmax loss.
- `recommender`: `RecommenderModel`, the tfrs.Model with the retrieval,
  ranking and ordinal rating tasks.
- `optimizers`: sparse Adagrad for embedding tables, Adam for dense layers.
- `config`: typed settings of both.
"""

from ncf_tfrs.model.config import ModelConfig
from ncf_tfrs.model.config import OptimizerConfig
from ncf_tfrs.model.losses import InBatchSoftmaxLoss
from ncf_tfrs.model.optimizers import create_slots
from ncf_tfrs.model.optimizers import make_optimizer
from ncf_tfrs.model.recommender import RatingThresholds
from ncf_tfrs.model.recommender import RecommenderModel
