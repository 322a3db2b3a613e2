r"""Exports a trained model directory for serving.

  python -m ncf_tfrs.export --model_dir runs/demo --export_dir export \
      --model_name ncf_tfrs

Writes the next version of the stock SavedModel, the ScaNN index and
(optionally) the ScaNN-op SavedModel; see `ncf_tfrs.export`.
"""

from __future__ import annotations

import os

from absl import app
from absl import flags
from absl import logging

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import cli
from ncf_tfrs import data as data_lib
from ncf_tfrs import export
from ncf_tfrs import training
from ncf_tfrs.serving import contract
from ncf_tfrs.training import checkpoints

_D = training.ExperimentConfig()
_S = export.ScannConfig()

_MODEL_DIR = flags.DEFINE_string("model_dir", _D.train.model_dir,
                                 "A train command's model directory.")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", _D.export.export_dir, "TF Serving model root to export into.")
_MODEL_NAME = flags.DEFINE_string("model_name", _D.export.model_name,
                                  "Model name in TF Serving.")
_NUM_CANDIDATES = flags.DEFINE_integer(
    "num_candidates", _S.num_neighbors,
    "Candidates ScaNN returns per user (reranked by NCF).", lower_bound=1)
_NUM_LEAVES = flags.DEFINE_integer(
    "scann_num_leaves", _S.num_leaves,
    "ScaNN tree leaves (default ~sqrt(movies)).", lower_bound=2)
_LEAVES_FRACTION = flags.DEFINE_float(
    "scann_leaves_to_search_fraction", _S.leaves_to_search_fraction,
    "Share of ScaNN leaves searched per query.", lower_bound=0.0,
    upper_bound=1.0)
_REORDER = flags.DEFINE_integer(
    "scann_reordering_num_neighbors", _S.reordering_num_neighbors,
    "AH candidates rescored exactly (default 4 x num_candidates).",
    lower_bound=1)
_SCANN_MODEL = flags.DEFINE_bool(
    "scann_model", _D.export.scann_model,
    f"Also export the SavedModel with ScaNN inside (<model_name>"
    f"{contract.SCANN_MODEL_SUFFIX}; not loadable by stock TF Serving).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not os.path.isfile(os.path.join(_MODEL_DIR.value, checkpoints.CONFIG_FILE)
                        ) and "://" not in _MODEL_DIR.value:
    raise app.UsageError(
        f"--model_dir={_MODEL_DIR.value} holds no trained model (no "
        f"{checkpoints.CONFIG_FILE}): train one with `python -m "
        "ncf_tfrs.train --model_dir=...` first.")
  cli.check_writable_dir("export_dir", _EXPORT_DIR.value)
  model, vocabulary, cfg = training.load_trained(_MODEL_DIR.value)
  try:
    movies = data_lib.load_movies(cfg.data.dataset, cfg.data.data_dir)
  except Exception as e:  # pylint: disable=broad-except
    logging.warning("No titles for %s (%s); movies.tsv has ids only.",
                    cfg.data.dataset, e)
    movies = None
  scann_config = export.ScannConfig(
      num_neighbors=_NUM_CANDIDATES.value,
      num_leaves=_NUM_LEAVES.value,
      leaves_to_search_fraction=_LEAVES_FRACTION.value,
      reordering_num_neighbors=_REORDER.value)
  history = checkpoints.load_history(_MODEL_DIR.value)
  if history is None:
    logging.warning("%s has no rated history (trained before it was kept): "
                    "the export will not leave rated movies out.",
                    _MODEL_DIR.value)
  path = export.export_model(model, vocabulary, movies, _EXPORT_DIR.value,
                             _MODEL_NAME.value, scann_config,
                             _SCANN_MODEL.value, history)
  print(path)


def run_main() -> None:
  """Console-script entry point (`ncf-tfrs-export`)."""
  cli.run(main)


if __name__ == "__main__":
  run_main()
