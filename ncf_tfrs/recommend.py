r"""Prints a user's top k movies from an export.

  python -m ncf_tfrs.recommend --export_dir export --model_name ncf_tfrs \
      --user_id 42 --k 10

In process by default; with --rest_url (e.g. http://localhost:8501) or
--grpc_target (localhost:8500) the model runs in TF Serving and only ScaNN
runs here. Unknown users get the most rated movies, marked as a fallback,
unless they bring ratings: with --history 1:5,50:4.5 (and an export trained
with --history_share) a user the model never saw is served from them.
"""

from __future__ import annotations

from absl import app
from absl import flags

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import cli
from ncf_tfrs import serving
from ncf_tfrs import training


_EXPORT = training.ExportConfig()

_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", _EXPORT.export_dir, "TF Serving model root of the export.")
_MODEL_NAME = flags.DEFINE_string("model_name", _EXPORT.model_name,
                                  "Model name.")
_VERSION = flags.DEFINE_integer(
    "version", None, "Export version (default: the latest complete one).")
_USER_ID = flags.DEFINE_list("user_id", None, "Raw user id(s).")
_K = flags.DEFINE_integer("k", 10, "Movies per user.", lower_bound=1)
_SEEN = flags.DEFINE_list(
    "seen", [], "More movie ids to leave out (one user), beyond those the "
    "user rated in training, which the export leaves out.")
_INCLUDE_SEEN = flags.DEFINE_bool(
    "include_seen", False,
    "Keep the movies the user rated in training in (re-watch lists).")
_HISTORY = flags.DEFINE_list(
    "history", [],
    "Ratings the user gave, as movie_id:rating pairs (one user), e.g. "
    "1:5,50:4.5: a user the model never saw is served from them; they are "
    "left out of the list. Needs an export trained with --history_share.")
_NUM_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", None,
    "ScaNN candidates to rerank (default: the export's).")
_REST_URL = flags.DEFINE_string(
    "rest_url", None, "TF Serving REST address, e.g. http://localhost:8501.")
_GRPC_TARGET = flags.DEFINE_string(
    "grpc_target", None, "TF Serving gRPC address, e.g. localhost:8500.")
flags.mark_flag_as_required("user_id")


def _recommender() -> serving.Recommender:
  export_dir, name = _EXPORT_DIR.value, _MODEL_NAME.value
  rest_url, grpc_target = _REST_URL.value, _GRPC_TARGET.value
  if rest_url and grpc_target:
    raise app.UsageError("Give --rest_url or --grpc_target, not both.")
  if not (rest_url or grpc_target):
    return serving.Recommender.load(export_dir, name, _VERSION.value,
                                    _NUM_CANDIDATES.value)
  version = serving.checked_version(export_dir, name, _VERSION.value)
  if rest_url:
    backend = serving.RestBackend(rest_url, name, version)
  else:
    backend = serving.GrpcBackend(grpc_target, name, version)
  return serving.Recommender(
      backend, serving.load_catalog(export_dir, name, version),
      _NUM_CANDIDATES.value)


def _parse_history(entries: list[str]) -> list[tuple[str, float]]:
  pairs = []
  for entry in entries:
    movie_id, _, rating = entry.rpartition(":")
    try:
      value = float(rating)
    except ValueError:
      value = None
    if not movie_id or value is None or not 0.5 <= value <= 5.0:
      raise app.UsageError(f"--history entry {entry!r}: expected "
                           "movie_id:rating with a rating from 0.5 to 5.")
    pairs.append((movie_id, value))
  return pairs


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  user_ids, seen, history = _USER_ID.value, _SEEN.value, _HISTORY.value
  if seen and len(user_ids) != 1:
    raise app.UsageError("--seen applies to a single --user_id.")
  if history and len(user_ids) != 1:
    raise app.UsageError("--history applies to a single --user_id.")
  seen = [seen] if seen else None
  history = [_parse_history(history)] if history else None
  try:
    results = _recommender().recommend(user_ids, _K.value, seen,
                                       _INCLUDE_SEEN.value, history)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  for result in results:
    note = (" (unknown user: most rated movies)" if result.is_fallback
            else "")
    print(f"user {result.user_id}{note}")
    for rank, (movie_id, title, score) in enumerate(
        zip(result.movie_ids, result.titles, result.scores), 1):
      # A fallback list is in popularity order; its scores would not be.
      shown = "" if result.is_fallback else f", score {score:.3f}"
      print(f"{rank:3d}. {title or '(no title)'}  [movie {movie_id}{shown}]")


def run_main() -> None:
  """Console-script entry point (`ncf-tfrs-recommend`)."""
  cli.run(main)


if __name__ == "__main__":
  run_main()
