r"""Benchmarks: each suite prints a table and writes JSON.

  python -m ncf_tfrs.bench --suite data --config synthetic-32m --repeats 3 \
      --csv
  python -m ncf_tfrs.bench --suite train --config synthetic-32m
  python -m ncf_tfrs.bench --suite serving --config synthetic-32m \
      --scann_catalogs 1000000 --repeats 3
  python -m ncf_tfrs.bench --suite distribute --config synthetic-small \
      --product_flagfile configs/ml32m.flags
  python -m ncf_tfrs.bench --suite quality --config 100k \
      --manual_dir /tmp/movielens --product_flagfile configs/ml100k.flags \
      --seeds 42,1,2,3

Every speed figure has a baseline measured in the same run, and every stage
runs in a fresh process, so its peak RSS is its own. Figures are medians over
repeats. `python -m ncf_tfrs.report` turns the JSON into the README's tables
and plots. The suites: `ncf_tfrs.bench.data`, `.train`, `.serving`,
`.distribute` and `.quality`; this module only reads flags and hands them
on.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags

import ncf_tfrs  # pylint: disable=unused-import  (Keras 2 before TensorFlow)
from ncf_tfrs import cli
from ncf_tfrs.bench import data as data_suite
from ncf_tfrs.bench import distribute as distribute_suite
from ncf_tfrs.bench import process
from ncf_tfrs.bench import quality as quality_suite
from ncf_tfrs.bench import train as train_suite

_SUITE = flags.DEFINE_enum(
    "suite", "data", ["data", "train", "serving", "distribute", "quality"],
    "Benchmark suite to run.")
_CONFIGS = flags.DEFINE_list(
    "config", ["synthetic-small"],
    "movielens_users configs to measure, e.g. synthetic-small,synthetic-32m "
    "(the data suite takes several, the others the first).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repetitions; medians are "
                                "reported.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir. Default: a fresh temporary directory, so "
    "that prepare is measured from scratch.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Folder holding a real release's official archive "
    "(the .zip or its extracted folder), read offline as the train command's "
    "--manual_dir does. Train suite: where the product_csv stage finds (or "
    "writes) the synthetic config's CSV release.")
_SEEDS = flags.DEFINE_list(
    "seeds", ["42"], "quality suite: seeds of the splits and runs.")
_NOTEBOOK_EPOCHS = flags.DEFINE_integer(
    "notebook_epochs", 1, "quality suite: epochs of the notebook's recipe "
    "(it ran one).", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None,
                              "JSON output path (default bench_<suite>.json).")
_NOTEBOOK = flags.DEFINE_bool(
    "notebook", True,
    "data suite: also time the notebook's input pipeline (the baseline).")
_CSV = flags.DEFINE_bool(
    "csv", False,
    "data suite: also write each synthetic config as the GroupLens CSV "
    "release of its size (synthetic-32m as ml-32m) and prepare it through "
    "the real parser, against a bare pandas read of the same files.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16384,
                                   "data suite: training batch size.",
                                   lower_bound=1)
_PRODUCT_FLAGFILE = flags.DEFINE_string(
    "product_flagfile", "configs/synthetic-32m.flags",
    "train, serving and distribute suites: the product's settings (a train "
    "command flagfile).")
_SCANN_CATALOGS = flags.DEFINE_list(
    "scann_catalogs", [], "serving suite: catalog sizes for ScaNN vs exact "
    "beyond --config's own, e.g. 1000000.")
_TUTORIAL_FLAGFILE = flags.DEFINE_string(
    "tutorial_flagfile", "configs/synthetic-32m-tfrs-tutorial.flags",
    "train and quality suites: the TFRS basic-retrieval tutorial's recipe as "
    "a flagfile (the quality suite runs it on --config; empty skips it).")
_TRAIN_STAGES = flags.DEFINE_list(
    "train_stages", list(train_suite.STAGES), "train suite: stages to run.")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "train suite: where stage results and model "
    "directories go (default: a temporary directory).")
_REUSE = flags.DEFINE_bool(
    "reuse", False, "train suite: reuse stage results already in --work_dir.")
_EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", 200, "train suite: steps between the product's "
    "learning-curve points.", lower_bound=1)
_WINDOW_STEPS = flags.DEFINE_integer(
    "window_steps", 40, "train suite: product steps per throughput window.",
    lower_bound=2)
_EPOCHS = flags.DEFINE_integer(
    "distribute_epochs", 4,
    "distribute suite: epochs of each run; the first is not timed.",
    lower_bound=2)
_RUN_TIMEOUT = flags.DEFINE_integer(
    "run_timeout_s", 900, "distribute suite: limit of each run.",
    lower_bound=1)
# Internal: `process.run_stage` runs one stage of one repetition per process.
_STAGE = flags.DEFINE_enum(
    "stage", None, ["prepare", "pipeline", "notebook", "notebook_train",
                    "write_csv", "pandas_csv",
                    "throughput"],
    "Internal: run one stage of one repetition of --config, print its JSON.")
_THROUGHPUT_RECIPES = flags.DEFINE_list(
    "throughput_recipes", list(train_suite.PRODUCT_RECIPES),
    "Internal: the recipes of one throughput worker (the product's, or the "
    "notebook).")
_PRODUCT_CONFIG = flags.DEFINE_string(
    "product_config", None, "Internal: the product's config.json for the "
    "throughput stage.")


def _stage(stage: str, config: str, data_dir: str) -> dict[str, object]:
  """One stage of one repetition, in this (fresh) process."""
  if stage == "prepare":
    return data_suite.prepare_stage(config, data_dir, _MANUAL_DIR.value)
  if stage in ("pipeline", "notebook"):
    return data_suite.pipeline_stage(config, data_dir, _BATCH_SIZE.value,
                                     notebook=stage == "notebook")
  if stage == "write_csv":
    return data_suite.write_csv_stage(config, _MANUAL_DIR.value)
  if stage == "pandas_csv":
    return data_suite.pandas_csv_stage(config, _MANUAL_DIR.value)
  if stage == "notebook_train":
    return train_suite.notebook_stage(config, data_dir,
                                      seed=int(_SEEDS.value[0]),
                                      epochs=_NOTEBOOK_EPOCHS.value)
  from ncf_tfrs.training import config as config_lib  # pylint: disable=g-import-not-at-top
  from ncf_tfrs.training import threads  # pylint: disable=g-import-not-at-top
  with open(_PRODUCT_CONFIG.value) as f:
    cfg = config_lib.ExperimentConfig.from_json(f.read())
  recipes = tuple(_THROUGHPUT_RECIPES.value)
  if set(recipes) & set(train_suite.NOTEBOOK_RECIPES):
    if set(recipes) - set(train_suite.NOTEBOOK_RECIPES):
      raise app.UsageError("--throughput_recipes: the notebook runs in a "
                           "worker of its own (TensorFlow's thread pools).")
  else:
    threads.configure(cfg.threads)  # The product's pools, as it trains.
  result = train_suite.throughput_worker(
      config, data_dir, recipes, cfg.model, cfg.optimizer,
      cfg.train.batch_size, cfg.train.steps_per_execution,
      window_steps=_WINDOW_STEPS.value, seed=cfg.data.seed)
  return {**result, "threads": threads.current()}


def _suite(name: str) -> dict[str, object]:
  """Runs a suite with this command's flags; the report's suite fields."""
  dataset = _CONFIGS.value[0]
  if name == "data":
    results = data_suite.run_suite(_CONFIGS.value, _REPEATS.value,
                                   _DATA_DIR.value, _BATCH_SIZE.value,
                                   _NOTEBOOK.value, _CSV.value)
    data_suite.print_table(results)
    return {"batch_size": _BATCH_SIZE.value, "results": results,
            "targets": {c: t for c, t in data_suite.TARGETS.items()
                        if c in results}}
  if name == "train":
    unknown = sorted(set(_TRAIN_STAGES.value) - set(train_suite.STAGES))
    if unknown:
      raise app.UsageError(f"--train_stages: unknown {unknown}; known: "
                           f"{', '.join(train_suite.STAGES)}.")
    report = train_suite.run_suite(
        dataset, _DATA_DIR.value, _WORK_DIR.value, _PRODUCT_FLAGFILE.value,
        _TUTORIAL_FLAGFILE.value, _TRAIN_STAGES.value, _REUSE.value,
        _EVAL_EVERY_STEPS.value, _REPEATS.value, _WINDOW_STEPS.value,
        _MANUAL_DIR.value)
    train_suite.print_table(report)
    return report
  if name == "serving":
    from ncf_tfrs.bench import serving as serving_suite  # pylint: disable=g-import-not-at-top
    from ncf_tfrs.datasets.movielens_users import synthetic  # pylint: disable=g-import-not-at-top
    if dataset not in synthetic.SPECS:
      raise app.UsageError(
          f"--config={dataset}: the serving suite takes its sizes from a "
          f"synthetic config, one of {sorted(synthetic.SPECS)}.")
    try:
      catalogs = [int(n) for n in _SCANN_CATALOGS.value]
    except ValueError as e:
      raise app.UsageError(f"--scann_catalogs: {e}") from e
    results = serving_suite.run_for_config(
        dataset, _PRODUCT_FLAGFILE.value, _REPEATS.value, catalogs)
    serving_suite.print_table(results)
    return {k: v for k, v in results.items() if k != "machine"}
  if name == "quality":
    try:
      seeds = [int(s) for s in _SEEDS.value]
    except ValueError as e:
      raise app.UsageError(f"--seeds: {e}") from e
    report = quality_suite.run_suite(
        dataset, _DATA_DIR.value, _MANUAL_DIR.value, _WORK_DIR.value,
        _PRODUCT_FLAGFILE.value, seeds, _NOTEBOOK_EPOCHS.value,
        _TUTORIAL_FLAGFILE.value or None)
    quality_suite.print_table(report)
    return report
  report = distribute_suite.run_suite(
      _PRODUCT_FLAGFILE.value, dataset, _DATA_DIR.value, _EPOCHS.value,
      _REPEATS.value, _RUN_TIMEOUT.value)
  distribute_suite.print_table(report)
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _STAGE.value:
    print(json.dumps(_stage(_STAGE.value, _CONFIGS.value[0],
                            _DATA_DIR.value)))
    return
  output = _OUTPUT.value or f"bench_{_SUITE.value}.json"
  # Checked before the suite's minutes of work, created after it.
  cli.check_writable_dir("output", os.path.dirname(os.path.abspath(output)))
  report = {
      "suite": _SUITE.value,
      "command": " ".join(["python -m ncf_tfrs.bench"] + sys.argv[1:]),
      "machine": process.machine(),
      "repeats": _REPEATS.value,
  }
  report.update(_suite(_SUITE.value))
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, "w") as f:
    json.dump(report, f, indent=2)
  print(f"\nwrote {output}")


def run_main() -> None:
  """Console-script entry point (`ncf-tfrs-bench`)."""
  cli.run(main)


if __name__ == "__main__":
  run_main()
