"""The serving contract: what export writes and every client reads.

Kept free of TensorFlow and of flags so that the exporter (`ncf_tfrs.export`)
and any client (`ncf_tfrs.serving`, a service calling TF Serving) share one
definition of where a version's files are, what the signatures, their inputs
and their outputs are named, and what the special values mean.

  <export_dir>/<model_name>/<version>/          stock SavedModel (TF Serving)
  <export_dir>/<model_name>_index/<version>/    scann/, movies.tsv, rated.npz,
                                                manifest.json
  <export_dir>/<model_name>_scann/<version>/    SavedModel with ScaNN ops
  <export_dir>/models.config, requests/*.json
"""

import os

from ncf_tfrs import features

INDEX_SUFFIX = "_index"
SCANN_MODEL_SUFFIX = "_scann"
MOVIES_FILE = "movies.tsv"
# Each training user's rated movies (`ncf_tfrs.data.RatedHistory.save`):
# user_ids, row_splits and movie_deltas (each row's ascending catalog rows as
# differences, the first from 0), compressed. Read by `serving.Catalog`.
RATED_FILE = "rated.npz"
MANIFEST_FILE = "manifest.json"
SCANN_DIR = "scann"
MODELS_CONFIG = "models.config"
REQUESTS_DIR = "requests"


class Signature:
  """Signature names. The first five are in the stock model; the last two
  only in the ScaNN-op model."""
  USER_EMBEDDING = "user_embedding"
  SCORE = "score"
  RERANK = "rerank"
  RETRIEVE = "retrieve"
  DEFAULT = "serving_default"  # = RETRIEVE
  SCANN_RETRIEVE = "scann_retrieve"
  RECOMMEND = "recommend"


class Input:
  """Input names: raw string ids, as the dataset's columns are named."""
  USER_ID = features.USER_ID
  MOVIE_ID = features.MOVIE_ID
  K = "k"


class Output:
  """Output keys of the signatures' dicts."""
  EMBEDDING = "embedding"
  IS_FALLBACK = "is_fallback"
  MOVIE_ID = features.MOVIE_ID
  SCORE = "score"
  NCF_LOGIT = "ncf_logit"
  LIKED_PROB = "liked_prob"
  IS_KNOWN_MOVIE = "is_known_movie"


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


def complete_versions(export_dir: str, model_name: str) -> list[int]:
  """Versions with both a stock model and a ScaNN index, oldest first."""
  return sorted(set(versions(os.path.join(export_dir, model_name))) & set(
      versions(os.path.join(export_dir, model_name + INDEX_SUFFIX))))


def latest_version(export_dir: str, model_name: str) -> int:
  """The newest version with both a stock model and a ScaNN index."""
  return checked_version(export_dir, model_name, None)


def checked_version(export_dir: str, model_name: str,
                    version: int | None) -> int:
  """`version` (the latest when None) if it is complete, else an error that
  lists the versions there are."""
  complete = complete_versions(export_dir, model_name)
  if not complete:
    raise FileNotFoundError(
        f"No complete export of {model_name!r} in {export_dir}: run "
        "`python -m ncf_tfrs.export` first.")
  if version is None:
    return complete[-1]
  if version not in complete:
    raise FileNotFoundError(
        f"version {version} of {model_name!r} is not in {export_dir}; "
        f"complete versions: {', '.join(map(str, complete))}.")
  return version
