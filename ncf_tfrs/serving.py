"""Serving: ScaNN candidates, then the NCF rerank, in process or via TF Serving.

`Recommender` answers "top k movies for these users": the stock SavedModel's
`user_embedding` signature gives each user's query embedding and whether the
user is unknown; the exported ScaNN index (scann's Python searcher) finds the
top C candidates of known users, less the movies the caller says they have
seen; the `rerank` signature orders the candidates as served (retrieval logit
+ NCF log-probability) and keeps k. Unknown users get the most rated unseen
movies instead, flagged `is_fallback`.

The SavedModel runs behind a `Backend`, all with one `predict(signature,
inputs)` call:

- `EmbeddedBackend`: the export loaded in this process (the default);
- `RestBackend`: a TF Serving server's REST API (urllib + JSON);
- `GrpcBackend`: a TF Serving server's gRPC PredictionService
  (tensorflow-serving-api).

ScaNN always runs here, beside TF Serving: stock TF Serving has no ScaNN op.
Requests name the version they were built against, so the index and the
served model always come from the same export.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import urllib.error
import urllib.request
from typing import Iterable, Mapping, Optional, Protocol, Sequence

import numpy as np

from ncf_tfrs import layout

Inputs = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]


class ServingError(RuntimeError):
  """The model server answered with an error."""


def _strings(values: np.ndarray) -> np.ndarray:
  """Any string array (bytes or str, any shape) as an array of str."""
  values = np.asarray(values)
  if values.dtype.kind in "OS":
    return np.vectorize(
        lambda v: v.decode() if isinstance(v, bytes) else str(v),
        otypes=[object])(values) if values.size else values.astype(object)
  return values


def _tensor_inputs(inputs: Inputs) -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {name: tf.constant(value) for name, value in inputs.items()}


class Backend(Protocol):
  """Runs one signature of the stock SavedModel."""

  version: int

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    ...


class EmbeddedBackend:
  """The stock SavedModel, loaded in this process (no ScaNN op involved)."""

  def __init__(self, path: str) -> None:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    self.version = int(os.path.basename(os.path.normpath(path)))
    self._model = tf.saved_model.load(path)
    self._signatures = dict(self._model.signatures)

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    outputs = self._signatures[signature](**_tensor_inputs(inputs))
    return {name: _strings(value.numpy()) for name, value in outputs.items()}


def rest_body(signature: str, inputs: Inputs) -> dict:
  """A TF Serving REST predict body (columnar "inputs" format)."""
  return {"signature_name": signature,
          "inputs": {name: _strings(value).tolist()
                     for name, value in inputs.items()}}


def parse_rest_response(body: Mapping, signature: str) -> Outputs:
  """The named outputs of a REST predict response."""
  if "error" in body:
    raise ServingError(f"{signature}: {body['error']}")
  outputs = body.get("outputs")
  if not isinstance(outputs, dict):
    raise ServingError(f"{signature}: expected named outputs, got {body!r}"
                       [:500])
  return {name: np.asarray(value) for name, value in outputs.items()}


class RestBackend:
  """TF Serving's REST API: POST /v1/models/<name>/versions/<v>:predict."""

  def __init__(self, url: str, model_name: str, version: int,
               timeout_s: float = 10.0) -> None:
    self.version = version
    self._url = (f"{url.rstrip('/')}/v1/models/{model_name}/versions/"
                 f"{version}:predict")
    self._timeout_s = timeout_s

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    request = urllib.request.Request(
        self._url, data=json.dumps(rest_body(signature, inputs)).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
      with urllib.request.urlopen(request, timeout=self._timeout_s) as reply:
        body = json.loads(reply.read())
    except urllib.error.HTTPError as e:
      detail = e.read().decode(errors="replace")
      try:
        detail = json.loads(detail).get("error", detail)
      except ValueError:
        pass
      raise ServingError(f"{signature}: HTTP {e.code} from {self._url}: "
                         f"{detail}") from e
    return parse_rest_response(body, signature)


def predict_request(model_name: str, version: int, signature: str,
                    inputs: Inputs):
  """A tensorflow_serving PredictRequest for one signature call."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.version.value = version
  request.model_spec.signature_name = signature
  for name, value in inputs.items():
    value = np.asarray(value)
    if value.dtype.kind in "OU":
      value = value.astype(object)
      value = np.vectorize(lambda v: v.encode() if isinstance(v, str) else v,
                           otypes=[object])(value) if value.size else value
    request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
  return request


def parse_predict_response(response) -> Outputs:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {name: _strings(tf.make_ndarray(proto))
          for name, proto in response.outputs.items()}


class GrpcBackend:
  """TF Serving's gRPC PredictionService (needs tensorflow-serving-api)."""

  def __init__(self, target: str, model_name: str, version: int,
               timeout_s: float = 10.0) -> None:
    import grpc  # pylint: disable=g-import-not-at-top
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top
    self.version = version
    self._model_name = model_name
    self._timeout_s = timeout_s
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target))

  def predict(self, signature: str, inputs: Inputs) -> Outputs:
    import grpc  # pylint: disable=g-import-not-at-top
    request = predict_request(self._model_name, self.version, signature, inputs)
    try:
      response = self._stub.Predict(request, timeout=self._timeout_s)
    except grpc.RpcError as e:
      raise ServingError(f"{signature}: {e.code()}: {e.details()}") from e
    return parse_predict_response(response)


class Catalog:
  """The exported movie table and its ScaNN index (one export version).

  Row i of movies.tsv is datapoint i of the index; rows are most rated
  first, so the first rows are the popularity list.
  """

  def __init__(self, path: str) -> None:
    self.path = path
    with open(os.path.join(path, layout.MOVIES_FILE),
              encoding="utf-8", newline="") as f:
      rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    self.movie_ids = np.array([r["movie_id"] for r in rows], dtype=object)
    self.titles = np.array([r["title"] for r in rows], dtype=object)
    self.genres = [r["genres"].split("|") if r["genres"] else [] for r in rows]
    self.counts = np.array([int(r["count"]) for r in rows], dtype=np.int64)
    self.row = {movie_id: i for i, movie_id in enumerate(self.movie_ids)}
    with open(os.path.join(path, layout.MANIFEST_FILE)) as f:
      self.manifest = json.load(f)
    self._searcher = None

  def __len__(self) -> int:
    return len(self.movie_ids)

  @property
  def searcher(self):
    """The scann Python searcher, loaded on first use."""
    if self._searcher is None:
      from scann.scann_ops.py import scann_ops_pybind  # pylint: disable=g-import-not-at-top
      self._searcher = scann_ops_pybind.load_searcher(
          os.path.join(self.path, layout.SCANN_DIR))
    return self._searcher

  def search(self, embeddings: np.ndarray, num: int) -> np.ndarray:
    """Rows of the top `num` movies [B, num] for query embeddings [B, D].

    ScaNN looks only in the partitions (leaves) nearest a query, and those
    can hold fewer than `num` movies in all: it then returns a short list
    (one query) or pads the row with movie 0 and a NaN score (a batch). Such
    queries are searched again over every leaf, so each row always holds
    `num` distinct movies.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    num = min(num, len(self))
    reorder = max(num, self._reorder)
    if len(embeddings) == 1:
      rows, _ = self.searcher.search(embeddings[0], final_num_neighbors=num,
                                     pre_reorder_num_neighbors=reorder)
      if len(rows) < num:
        rows = self._search_every_leaf(embeddings[0], num, reorder)
      return np.asarray(rows, dtype=np.int64)[np.newaxis]
    rows, scores = self.searcher.search_batched_parallel(
        embeddings, final_num_neighbors=num, pre_reorder_num_neighbors=reorder)
    rows = np.array(rows, dtype=np.int64)
    for i in np.flatnonzero(np.isnan(scores).any(axis=1)):
      rows[i] = self._search_every_leaf(embeddings[i], num, reorder)
    return rows

  def _search_every_leaf(self, embedding: np.ndarray, num: int,
                         reorder: int) -> np.ndarray:
    rows, _ = self.searcher.search(
        embedding, final_num_neighbors=num, pre_reorder_num_neighbors=reorder,
        leaves_to_search=int(self.manifest["scann"]["num_leaves"]))
    return np.asarray(rows, dtype=np.int64)

  @property
  def _reorder(self) -> int:
    return int(self.manifest["scann"]["reordering_num_neighbors"])


@dataclasses.dataclass(frozen=True)
class Recommendation:
  """One user's served list, best first."""
  user_id: str
  movie_ids: list[str]
  titles: list[str]
  scores: list[float]
  is_fallback: bool


def latest_version(export_dir: str, model_name: str) -> int:
  """The newest version with both a stock model and a ScaNN index."""
  both = set(layout.versions(os.path.join(export_dir, model_name))) & set(
      layout.versions(os.path.join(
          export_dir, model_name + layout.INDEX_SUFFIX)))
  if not both:
    raise FileNotFoundError(
        f"No complete export of {model_name!r} in {export_dir}: run "
        "`python -m ncf_tfrs.export` first.")
  return max(both)


def _check_ids(values, field: str) -> list[str]:
  if isinstance(values, (str, bytes)) or not isinstance(
      values, (Sequence, np.ndarray)):
    raise ValueError(f"{field} must be a list of string ids, got "
                     f"{type(values).__name__}.")
  if np.ndim(values) != 1:
    raise ValueError(f"{field} must be a one-dimensional list of ids, got "
                     f"shape {np.shape(values)}.")
  values = list(values)
  if not values:
    raise ValueError(f"{field} is empty.")
  out = []
  for value in values:
    if isinstance(value, bytes):
      value = value.decode()
    if not isinstance(value, str) or not value:
      raise ValueError(f"{field} must hold non-empty string ids, got "
                       f"{value!r}.")
    out.append(value)
  return out


def _check_k(k, limit: int, field: str = "k") -> int:
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise ValueError(f"{field} must be an integer, got {k!r}.")
  if not 1 <= k <= limit:
    raise ValueError(f"{field} must be between 1 and {limit}, got {k}.")
  return int(k)


class Recommender:
  """User ids in, top-k movie ids, titles and scores out.

  Build it with `Recommender.load` (in process), or give it a
  `RestBackend`/`GrpcBackend` and the same export's `Catalog`.
  """

  def __init__(self, backend: Backend, catalog: Catalog,
               num_candidates: Optional[int] = None) -> None:
    """Initializes the recommender.

    Args:
      backend: Runs the stock SavedModel's signatures.
      catalog: The ScaNN index and movies of the backend's version.
      num_candidates: ScaNN candidates reranked per user (C); default the
        export's.
    """
    if catalog.manifest.get("version") not in (None, backend.version):
      raise ValueError(
          f"The index is version {catalog.manifest['version']} but the model "
          f"is version {backend.version}; they must come from one export.")
    self.backend = backend
    self.catalog = catalog
    self.num_candidates = _check_k(
        num_candidates or catalog.manifest["scann"]["num_neighbors"],
        len(catalog), "num_candidates")

  @classmethod
  def load(cls, export_dir: str, model_name: str = "ncf_tfrs",
           version: Optional[int] = None,
           num_candidates: Optional[int] = None) -> Recommender:
    """The in-process recommender over an export (latest version default)."""
    version = version or latest_version(export_dir, model_name)
    backend = EmbeddedBackend(os.path.join(export_dir, model_name,
                                           str(version)))
    return cls(backend, load_catalog(export_dir, model_name, version),
               num_candidates)

  def _seen_rows(self, seen, num_users: int) -> list[np.ndarray]:
    if seen is None:
      return [np.zeros(0, np.int64)] * num_users
    if isinstance(seen, (str, bytes)) or len(seen) != num_users:
      raise ValueError("seen must hold one list of movie ids per user.")
    rows = []
    for movies in seen:
      if isinstance(movies, (str, bytes)):
        raise ValueError("seen must hold one list of movie ids per user.")
      rows.append(np.array(
          [r for r in (self.catalog.row.get(
              m.decode() if isinstance(m, bytes) else m) for m in movies)
           if r is not None], dtype=np.int64))
    return rows

  def recommend(self, user_ids: Sequence[str], k: int = 10,
                seen: Optional[Sequence[Iterable[str]]] = None
                ) -> list[Recommendation]:
    """Top k movies per user, never one the user has seen.

    Args:
      user_ids: Raw user ids.
      k: Length of each list.
      seen: Optional, per user: movie ids to leave out (their ratings).

    Returns:
      One `Recommendation` per user, in order.
    """
    user_ids = _check_ids(user_ids, "user_ids")
    k = _check_k(k, len(self.catalog))
    seen_rows = self._seen_rows(seen, len(user_ids))
    users = np.array(user_ids, dtype=object)
    answer = self.backend.predict("user_embedding", {"user_id": users})
    is_fallback = np.asarray(answer["is_fallback"], dtype=bool)
    width = min(max(self.num_candidates, k), len(self.catalog))
    most_seen = max(len(rows) for rows in seen_rows)
    fetch = min(width + most_seen, len(self.catalog))
    rows = np.empty((len(users), fetch), dtype=np.int64)
    rows[is_fallback] = np.arange(fetch)  # Most rated first.
    known = np.flatnonzero(~is_fallback)
    if len(known):
      rows[known] = self.catalog.search(
          np.asarray(answer["embedding"])[known], fetch)
    candidates = np.full((len(users), width), layout.PADDING_ID,
                         dtype=object)
    for i, (row, seen_row) in enumerate(zip(rows, seen_rows)):
      if len(seen_row):
        row = row[~np.isin(row, seen_row)]
      row = row[:width]
      candidates[i, :len(row)] = self.catalog.movie_ids[row]
    return self._rerank(users, candidates, k)

  def rerank(self, user_id: str, movie_ids: Sequence[str],
             k: int) -> Recommendation:
    """The top k of a user's own candidate movies, in the served order."""
    user = _check_ids([user_id], "user_id")
    movie_ids = _check_ids(movie_ids, "movie_ids")
    unknown = [m for m in movie_ids if m not in self.catalog.row]
    if unknown:
      raise ValueError(f"movie_ids has ids the model does not know: "
                       f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    k = _check_k(k, len(movie_ids))
    candidates = np.array([movie_ids], dtype=object)
    return self._rerank(np.array(user, dtype=object), candidates, k)[0]

  def _rerank(self, users: np.ndarray, candidates: np.ndarray,
              k: int) -> list[Recommendation]:
    out = self.backend.predict("rerank", {
        "user_id": users, "movie_id": candidates,
        "k": np.array(min(k, candidates.shape[1]), dtype=np.int32)})
    results = []
    for user, movies, scores, fallback in zip(
        users, out["movie_id"], np.asarray(out["score"], dtype=np.float64),
        np.asarray(out["is_fallback"], dtype=bool)):
      keep = [i for i, m in enumerate(movies)
              if m != layout.PADDING_ID and
              scores[i] > layout.MASKED_SCORE]
      ids = [str(movies[i]) for i in keep]
      results.append(Recommendation(
          user_id=str(user), movie_ids=ids,
          titles=[str(self.catalog.titles[self.catalog.row[m]]) for m in ids],
          scores=[float(scores[i]) for i in keep],
          is_fallback=bool(fallback)))
    return results


def load_catalog(export_dir: str, model_name: str, version: int) -> Catalog:
  return Catalog(os.path.join(export_dir, model_name + layout.INDEX_SUFFIX,
                              str(version)))
