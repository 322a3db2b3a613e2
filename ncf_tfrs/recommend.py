r"""Prints a user's top k movies from an export.

  python -m ncf_tfrs.recommend --export_dir export --model_name ncf_tfrs \
      --user_id 42 --k 10

In process by default; with --rest_url (e.g. http://localhost:8501) or
--grpc_target (localhost:8500) the model runs in TF Serving and only ScaNN
runs here. Unknown users get the most rated movies, marked as a fallback.
"""

from __future__ import annotations

from absl import app
from absl import flags

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import serving

def _define_flags() -> dict[str, flags.FlagHolder]:
  """The command's flags, defined only when it runs as a program.

  Names such as --export_dir and --num_candidates also belong to other
  entry points (train.py); absl allows one of each per process.
  """
  holders = {
      "export_dir": flags.DEFINE_string(
          "export_dir", "export", "TF Serving model root of the export."),
      "model_name": flags.DEFINE_string("model_name", "ncf_tfrs",
                                        "Model name."),
      "version": flags.DEFINE_integer(
          "version", None,
          "Export version (default: the latest complete one)."),
      "user_id": flags.DEFINE_list("user_id", None, "Raw user id(s)."),
      "k": flags.DEFINE_integer("k", 10, "Movies per user."),
      "seen": flags.DEFINE_list("seen", [],
                                "Movie ids to leave out (one user)."),
      "num_candidates": flags.DEFINE_integer(
          "num_candidates", None,
          "ScaNN candidates to rerank (default: the export's)."),
      "rest_url": flags.DEFINE_string(
          "rest_url", None,
          "TF Serving REST address, e.g. http://localhost:8501."),
      "grpc_target": flags.DEFINE_string(
          "grpc_target", None, "TF Serving gRPC address, e.g. localhost:8500."),
  }
  flags.mark_flag_as_required("user_id")
  return holders


def _recommender(flag: dict[str, flags.FlagHolder]) -> serving.Recommender:
  export_dir, name = flag["export_dir"].value, flag["model_name"].value
  rest_url, grpc_target = flag["rest_url"].value, flag["grpc_target"].value
  if rest_url and grpc_target:
    raise app.UsageError("Give --rest_url or --grpc_target, not both.")
  if not (rest_url or grpc_target):
    return serving.Recommender.load(export_dir, name, flag["version"].value,
                                    flag["num_candidates"].value)
  version = flag["version"].value or serving.latest_version(export_dir, name)
  if rest_url:
    backend = serving.RestBackend(rest_url, name, version)
  else:
    backend = serving.GrpcBackend(grpc_target, name, version)
  return serving.Recommender(
      backend, serving.load_catalog(export_dir, name, version),
      flag["num_candidates"].value)


def main(argv, flag: dict[str, flags.FlagHolder]):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  user_ids, seen = flag["user_id"].value, flag["seen"].value
  if seen and len(user_ids) != 1:
    raise app.UsageError("--seen applies to a single --user_id.")
  seen = [seen] if seen else None
  try:
    results = _recommender(flag).recommend(user_ids, flag["k"].value, seen)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  for result in results:
    note = (" (unknown user: most rated movies)" if result.is_fallback
            else "")
    print(f"user {result.user_id}{note}")
    for rank, (movie_id, title, score) in enumerate(
        zip(result.movie_ids, result.titles, result.scores), 1):
      print(f"{rank:3d}. {title or '(no title)'}  [movie {movie_id}, "
            f"score {score:.3f}]")


if __name__ == "__main__":
  _FLAGS = _define_flags()
  app.run(lambda argv: main(argv, _FLAGS))
