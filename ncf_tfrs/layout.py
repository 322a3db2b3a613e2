"""The export folder layout and serving constants: written by export, read by serving.

Kept free of TensorFlow and of flags so that both the exporter and any
client (`ncf_tfrs.serving`) share one definition of where a version's files
are and what the signatures' special values mean.

  <export_dir>/<model_name>/<version>/          stock SavedModel (TF Serving)
  <export_dir>/<model_name>_index/<version>/    scann/, movies.tsv, manifest.json
  <export_dir>/<model_name>_scann/<version>/    SavedModel with ScaNN ops
  <export_dir>/models.config, requests/*.json
"""

import os

INDEX_SUFFIX = "_index"
SCANN_MODEL_SUFFIX = "_scann"
MOVIES_FILE = "movies.tsv"
MANIFEST_FILE = "manifest.json"
SCANN_DIR = "scann"
MODELS_CONFIG = "models.config"
REQUESTS_DIR = "requests"

# In `rerank`, this movie id pads a user's short candidate list.
PADDING_ID = ""
# Score of padding and unknown movies in `rerank`: float32's lowest, finite
# so JSON clients can read it, below any real score.
MASKED_SCORE = -3.4028234663852886e38


def versions(model_root: str) -> list[int]:
  """Published versions under a model folder (its integer-named folders)."""
  if not os.path.isdir(model_root):
    return []
  return sorted(int(name) for name in os.listdir(model_root) if name.isdigit())
