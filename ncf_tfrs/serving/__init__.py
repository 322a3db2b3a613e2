"""The serving stage: ScaNN candidates, then the NCF rerank, for a service.

- `contract`: folder layout, signature, input and output names, shared with
  `ncf_tfrs.export` (no TensorFlow);
- `backends`: the stock SavedModel in process, or behind TF Serving (REST,
  gRPC);
- `catalog`: the exported movie table and its ScaNN index;
- `recommender`: `Recommender`, user ids in, top-k movies out.

The `python -m ncf_tfrs.recommend` command is built on `Recommender`.
"""

from ncf_tfrs.serving.backends import EmbeddedBackend
from ncf_tfrs.serving.backends import GrpcBackend
from ncf_tfrs.serving.backends import RestBackend
from ncf_tfrs.serving.backends import ServingError
from ncf_tfrs.serving.catalog import Catalog
from ncf_tfrs.serving.catalog import load_catalog
from ncf_tfrs.serving.contract import checked_version
from ncf_tfrs.serving.contract import latest_version
from ncf_tfrs.serving.recommender import Recommendation
from ncf_tfrs.serving.recommender import Recommender
