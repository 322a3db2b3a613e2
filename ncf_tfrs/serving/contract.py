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
import zipfile

import numpy as np

from ncf_tfrs import features

INDEX_SUFFIX = "_index"
SCANN_MODEL_SUFFIX = "_scann"
MOVIES_FILE = "movies.tsv"
# Each training user's rated movies: see `write_rated`.
RATED_FILE = "rated.npz"
MANIFEST_FILE = "manifest.json"
SCANN_DIR = "scann"
MODELS_CONFIG = "models.config"
REQUESTS_DIR = "requests"


class Signature:
  """Signature names. The first seven are in the stock model; the four
  `*_history` ones too when the model has a history side; the last three
  only in the ScaNN-op model (`recommend_history` with a history side)."""
  USER_EMBEDDING = "user_embedding"
  SCORE = "score"
  RERANK = "rerank"
  RERANK_FILTERED = "rerank_filtered"
  RETRIEVE = "retrieve"
  RETRIEVE_FILTERED = "retrieve_filtered"
  DEFAULT = "serving_default"  # = RETRIEVE
  USER_EMBEDDING_HISTORY = "user_embedding_history"
  SCORE_HISTORY = "score_history"
  RERANK_HISTORY = "rerank_history"
  RETRIEVE_HISTORY = "retrieve_history"
  SCANN_RETRIEVE = "scann_retrieve"
  RECOMMEND = "recommend"
  RECOMMEND_HISTORY = "recommend_history"


class Input:
  """Input names: raw string ids, as the dataset's columns are named."""
  USER_ID = features.USER_ID
  MOVIE_ID = features.MOVIE_ID
  K = "k"
  SEEN = "seen"
  INCLUDE_SEEN = "include_seen"
  # A user's ratings in the request [B, H]: movie ids padded with
  # PADDING_ID, ratings (0.5-5 stars) padded with 0.
  HISTORY_MOVIE_ID = features.HISTORY_MOVIE_ID
  HISTORY_RATING = features.HISTORY_RATING


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


def write_rated(path: str, user_ids: np.ndarray, row_splits: np.ndarray,
                movies: np.ndarray) -> None:
  """Writes each user's rated movies, CSR, as the .npz file RATED_FILE.

  Arrays: `user_ids` (bytes), `row_splits` (int64) and `movie_delta_bytes`:
  each row's ascending catalog rows as differences (the first from 0), as
  uint32, stored as its four byte planes ([4, N] uint8, low byte first).
  Differences are small, so the upper planes are nearly all zeros, which
  deflate at the fastest level compresses about as well as the default
  level does the plain uint32 array, in a fraction of the time: the export
  writes tens of millions of them.
  """
  movies = np.asarray(movies, dtype=np.int64)
  deltas = movies.copy()
  deltas[1:] -= movies[:-1]
  starts = row_splits[:-1][np.diff(row_splits) > 0]
  deltas[starts] = movies[starts]
  planes = deltas.astype("<u4").view(np.uint8).reshape(-1, 4).T
  arrays = {"user_ids": np.asarray(user_ids, dtype=bytes),
            "row_splits": np.asarray(row_splits, dtype=np.int64),
            "movie_delta_bytes": np.ascontiguousarray(planes)}
  with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED,
                       compresslevel=1) as archive:
    for name, array in arrays.items():
      with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def read_rated(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(user_ids, row_splits, movies) from a `write_rated` file."""
  with np.load(path, allow_pickle=False) as arrays:
    user_ids = arrays["user_ids"]
    splits = arrays["row_splits"]
    planes = arrays["movie_delta_bytes"]
  deltas = np.ascontiguousarray(planes.T).view("<u4").ravel()
  total = np.cumsum(deltas, dtype=np.int64)
  before = np.concatenate([[0], total])[splits[:-1]]
  movies = (total - np.repeat(before, np.diff(splits))).astype(np.int32)
  return user_ids, splits, movies
