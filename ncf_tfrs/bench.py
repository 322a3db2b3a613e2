r"""Benchmarks: each suite prints a table and writes JSON.

  python -m ncf_tfrs.bench --suite data --config synthetic-32m --repeats 3
  python -m ncf_tfrs.bench --suite train --config synthetic-32m
  python -m ncf_tfrs.bench --suite serving --config synthetic-32m \
      --scann_catalogs 1000000 --repeats 3

Every speed figure has a baseline measured in the same run, and every stage
runs in a fresh process, so its peak RSS is its own. Figures are medians over
repeats. `python -m ncf_tfrs.report` turns the JSON into the README's tables
and plots.

- data: the path from MovieLens to training batches, per config: prepare
  (generate or parse, and write TFDS), load (TFDS -> flat columns), split, and
  one pass of training batches; against one pass of the notebook's input
  pipeline (from_tensor_slices, shuffle over the whole split, batch 256) on
  the same split. With no --data_dir each repetition prepares from scratch.
- train: on one split of --config, the notebook's recipe for one epoch
  (`ncf_tfrs.baseline`), the product's train command on --product_flagfile,
  the TFRS basic-retrieval tutorial's recipe (--tutorial_flagfile), each with
  its held-out metrics and learning curve; and interleaved throughput windows
  of the joint model, the ranking task alone and the notebook recipe
  (`bench_train.throughput_stage`). Stage results are kept in --work_dir, and
  --reuse skips stages whose result is already there.
- serving: ScaNN against exact top-100 search over catalogs of --config's
  size (and --scann_catalogs), and end-to-end recommend latency over an
  export of --product_flagfile's architecture at --config's size
  (`ncf_tfrs.bench_serving`).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_SUITE = flags.DEFINE_enum("suite", "data", ["data", "train", "serving"],
                           "Benchmark suite to run.")
_CONFIGS = flags.DEFINE_list(
    "config", ["synthetic-small"],
    "movielens_users configs to measure, e.g. synthetic-small,synthetic-32m.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repetitions; medians are "
                                "reported.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir. Default: a fresh temporary directory, so "
    "that prepare is measured from scratch.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "JSON output path (default bench_<suite>.json).")
_NOTEBOOK = flags.DEFINE_bool(
    "notebook", True, "Also time the notebook's input pipeline (the baseline).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16384, "Training batch size.")
_STAGE = flags.DEFINE_enum(
    "stage", None, ["prepare", "pipeline", "notebook", "notebook_train",
                    "throughput"],
    "Internal: run one stage of one repetition of --config, print its JSON.")
_PRODUCT_FLAGFILE = flags.DEFINE_string(
    "product_flagfile", "configs/synthetic-32m.flags",
    "train and serving suites: the product's settings (a train.py flagfile).")
_SCANN_CATALOGS = flags.DEFINE_list(
    "scann_catalogs", [], "serving suite: catalog sizes for ScaNN vs exact "
    "beyond --config's own, e.g. 1000000.")
_TUTORIAL_FLAGFILE = flags.DEFINE_string(
    "tutorial_flagfile", "configs/synthetic-32m-tfrs-tutorial.flags",
    "train suite: the TFRS basic-retrieval tutorial's recipe as a flagfile.")
_TRAIN_STAGES = flags.DEFINE_list(
    "train_stages", ["notebook", "product", "tutorial", "throughput"],
    "train suite: stages to run.")
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
_PRODUCT_CONFIG = flags.DEFINE_string(
    "product_config", None, "Internal: the product's config.json for the "
    "throughput stage.")


def _stage(stage: str, config: str, data_dir: str,
           batch_size: int) -> dict[str, float]:
  """One stage of one repetition, in this (fresh) process."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import pipeline  # pylint: disable=g-import-not-at-top

  if stage == "notebook_train":
    from ncf_tfrs import bench_train  # pylint: disable=g-import-not-at-top
    return bench_train.notebook_stage(config, data_dir)
  if stage == "throughput":
    from ncf_tfrs import bench_train  # pylint: disable=g-import-not-at-top
    from ncf_tfrs import config as config_lib  # pylint: disable=g-import-not-at-top
    with open(_PRODUCT_CONFIG.value) as f:
      cfg = config_lib.ExperimentConfig.from_json(f.read())
    return bench_train.throughput_stage(
        config, data_dir, cfg.model, cfg.optimizer, cfg.train.batch_size,
        cfg.train.steps_per_execution, repeats=_REPEATS.value,
        window_steps=_WINDOW_STEPS.value, seed=cfg.data.seed)

  if stage == "prepare":
    start = time.perf_counter()
    pipeline.prepare(config, data_dir=data_dir, download=False)
    return {"prepare_s": time.perf_counter() - start}

  out = {}
  start = time.perf_counter()
  ratings = pipeline.load(config, data_dir=data_dir)
  out["load_s"] = time.perf_counter() - start
  out["ratings"] = len(ratings)
  start = time.perf_counter()
  train, _ = pipeline.split(ratings, "random")
  out["split_s"] = time.perf_counter() - start
  del ratings

  if stage == "notebook":
    # The notebook's input pipeline on the same split: (user, movie) codes
    # (its pandas mapping left out, in its favour), from_tensor_slices,
    # shuffle over the whole split, batch 256; one full pass.
    start = time.perf_counter()
    ds = tf.data.Dataset.from_tensor_slices(
        (tf.stack([train.user, train.movie], axis=1), train.liked))
    ds = ds.shuffle(len(train)).batch(256).map(
        lambda x, y: ({"user_id": x[:, 0], "item_id": x[:, 1]}, y))
    seen = sum(int(y.shape[0]) for _, y in ds)
    seconds = time.perf_counter() - start
    return {"notebook_epoch_s": seconds,
            "notebook_ratings_per_s": seen / seconds}

  start = time.perf_counter()
  seen = 0
  for batch in pipeline.make_dataset(train, batch_size):
    seen += int(batch["liked"].shape[0])
  out["epoch_s"] = time.perf_counter() - start
  out["epoch_ratings_per_s"] = seen / out["epoch_s"]
  out["full_pass_ratings_per_s"] = out["ratings"] / (
      out["load_s"] + out["split_s"] + out["epoch_s"])
  return out


def _run(argv: list[str]) -> tuple[str, float, float]:
  """Runs a Python command in a fresh process: stdout, seconds, peak RSS GiB."""
  start = time.perf_counter()
  with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
    proc = subprocess.Popen([sys.executable] + argv, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
      err.seek(0)
      raise RuntimeError(f"{' '.join(argv)} failed:\n{err.read()[-4000:]}")
    out.seek(0)
    return out.read(), seconds, usage.ru_maxrss / 2**20  # KiB -> GiB


def _run_stage(stage: str, config: str, data_dir: str,
               *extra: str) -> dict[str, object]:
  """Runs a bench stage in a fresh process; adds its peak RSS."""
  out, _, rss = _run(["-m", "ncf_tfrs.bench", f"--stage={stage}",
                      f"--config={config}", f"--data_dir={data_dir}",
                      f"--batch_size={_BATCH_SIZE.value}",
                      f"--repeats={_REPEATS.value}",
                      f"--window_steps={_WINDOW_STEPS.value}", *extra])
  result = json.loads(out.strip().splitlines()[-1])
  result[f"{stage}_peak_rss_gib"] = rss
  return result


def _repetition(config: str, data_dir: str) -> dict[str, float]:
  result = _run_stage("prepare", config, data_dir)
  result.update(_run_stage("pipeline", config, data_dir))
  if _NOTEBOOK.value:
    notebook = _run_stage("notebook", config, data_dir)
    result["notebook_ratings_per_s"] = notebook["notebook_ratings_per_s"]
    result["notebook_peak_rss_gib"] = notebook["notebook_peak_rss_gib"]
    result["epoch_speedup_vs_notebook"] = (result["epoch_ratings_per_s"] /
                                           result["notebook_ratings_per_s"])
  return result


def _machine() -> dict[str, object]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return {
      "platform": platform.platform(),
      "processor": platform.processor() or platform.machine(),
      "cpus": os.cpu_count(),
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
      "tensorflow_datasets": tfds.__version__,
  }


_COLUMNS = ("prepare_s", "prepare_peak_rss_gib", "load_s", "split_s",
            "epoch_s", "epoch_ratings_per_s", "full_pass_ratings_per_s",
            "pipeline_peak_rss_gib", "notebook_ratings_per_s",
            "epoch_speedup_vs_notebook")


def _summarize(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  return {k: {"median": statistics.median(r[k] for r in runs),
              "min": min(r[k] for r in runs),
              "max": max(r[k] for r in runs)}
          for k in runs[0] if isinstance(runs[0][k], (int, float))}


def _data_suite() -> dict[str, object]:
  results = {}
  for config in _CONFIGS.value:
    runs = []
    for i in range(_REPEATS.value):
      data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
      try:
        runs.append(_repetition(config, data_dir))
      finally:
        if not _DATA_DIR.value:
          shutil.rmtree(data_dir, ignore_errors=True)
      print(f"{config} run {i + 1}: " + ", ".join(
          f"{k}={v:.3g}" for k, v in runs[-1].items()), flush=True)
    results[config] = {"runs": runs, "summary": _summarize(runs)}
  return results


def _product_config(flagfile: str, dataset: str, work_dir: str) -> str:
  """Resolves a train.py flagfile into a config.json; returns its path."""
  out, _, _ = _run(["-m", "ncf_tfrs.train", f"--flagfile={flagfile}",
                    f"--dataset={dataset}", "--print_config"])
  path = os.path.join(work_dir, "product_config.json")
  with open(path, "w") as f:
    f.write(out)
  return path


def _train_command(name: str, flagfile: str, dataset: str, data_dir: str,
                   work_dir: str, eval_every_steps: int) -> dict[str, object]:
  """The product's own train command on `flagfile`, from a fresh model dir."""
  model_dir = os.path.join(work_dir, f"{name}_model")
  shutil.rmtree(model_dir, ignore_errors=True)  # Never resume an old run.
  _, seconds, rss = _run([
      "-m", "ncf_tfrs.train", f"--flagfile={flagfile}", f"--dataset={dataset}",
      f"--data_dir={data_dir}", f"--model_dir={model_dir}", "--export_dir=",
      f"--eval_every_steps={eval_every_steps}"])
  with open(os.path.join(model_dir, "metrics.json")) as f:
    result = json.load(f)
  result.update(recipe=name, flagfile=flagfile, peak_rss_gib=rss,
                process_seconds=seconds,
                # Training only, as the notebook's wall_seconds (its id mapping
                # plus its epoch): loading and final evaluation are left out.
                wall_seconds=result["train_seconds"])
  return result


TRAIN_TARGETS = {
    "joint_ratings_per_s": 140_000, "ranking_only_ratings_per_s": 500_000,
    "peak_rss_gib": 10, "accuracy_gain": 0.02, "auc_gain": 0.03,
    "wall_time_fraction": 0.2, "recall_at_100_gain": 0.2,
}


def _train_suite() -> dict[str, object]:
  dataset = _CONFIGS.value[0]
  data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="ncf_tfrs_train_")
  os.makedirs(work_dir, exist_ok=True)
  _run_stage("prepare", dataset, data_dir)
  config_path = _product_config(_PRODUCT_FLAGFILE.value, dataset, work_dir)
  report = {"dataset": dataset, "split": "random", "stages": {},
            "targets": TRAIN_TARGETS, "work_dir": work_dir}
  for stage in _TRAIN_STAGES.value:
    path = os.path.join(work_dir, f"{stage}.json")
    if _REUSE.value and os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      print(f"{stage}: reused {path}", flush=True)
    else:
      print(f"{stage}: running", flush=True)
      if stage == "notebook":
        result = _run_stage("notebook_train", dataset, data_dir)
        result["peak_rss_gib"] = result.pop("notebook_train_peak_rss_gib")
      elif stage == "product":
        result = _train_command("product", _PRODUCT_FLAGFILE.value, dataset,
                                data_dir, work_dir, _EVAL_EVERY_STEPS.value)
      elif stage == "tutorial":
        result = _train_command("tfrs-basic-retrieval",
                                _TUTORIAL_FLAGFILE.value, dataset, data_dir,
                                work_dir, 10**9)
      elif stage == "throughput":
        result = _run_stage("throughput", dataset, data_dir,
                            f"--product_config={config_path}")
      else:
        raise app.UsageError(f"Unknown train stage {stage!r}.")
      with open(path, "w") as f:
        json.dump(result, f, indent=2)
    if stage == "throughput":
      report["throughput"] = result["throughput"]
      report["oracle"] = result["oracle"]
    else:
      report["stages"][stage] = result
  return report


def _serving_suite() -> dict[str, object]:
  from ncf_tfrs import bench_serving  # pylint: disable=g-import-not-at-top
  from ncf_tfrs import config as config_lib  # pylint: disable=g-import-not-at-top
  from ncf_tfrs.datasets.movielens_users import synthetic  # pylint: disable=g-import-not-at-top
  dataset = _CONFIGS.value[0]
  if dataset not in synthetic.SPECS:
    raise app.UsageError(
        f"--config={dataset}: the serving suite takes its sizes from a "
        f"synthetic config, one of {sorted(synthetic.SPECS)}.")
  try:
    extra = [int(n) for n in _SCANN_CATALOGS.value]
  except ValueError as e:
    raise app.UsageError(f"--scann_catalogs: {e}") from e
  spec = synthetic.SPECS[dataset]
  with tempfile.TemporaryDirectory(prefix="ncf_tfrs_serving_") as work_dir:
    with open(_product_config(_PRODUCT_FLAGFILE.value, dataset,
                              work_dir)) as f:
      model_config = config_lib.ExperimentConfig.from_json(f.read()).model
    results = bench_serving.run_suite(
        _REPEATS.value, catalog_sizes=[spec.num_movies] + extra,
        random_catalog_sizes=[spec.num_movies],
        end_to_end_size=(spec.num_users, spec.num_movies),
        model_config=model_config, work_dir=work_dir)
  results.update(dataset=dataset, product_flagfile=_PRODUCT_FLAGFILE.value)
  bench_serving.print_table(results)
  return results


def _print_train_table(report: dict[str, object]) -> None:
  stages = report["stages"]
  print(f"\n{report['dataset']}, held-out ratings of the random split:")
  print("recipe | train s | ratings/s | AUC | accuracy | log loss | "
        "recall@100 | peak RSS GiB")
  nan = float("nan")
  for name, r in stages.items():
    test = r["test"]
    # The notebook's Keras metrics are named as it named them; the product's
    # ranking task prefixes its own (its bare "loss" is the summed total).
    prefix = "" if name == "notebook" else "ranking_"
    log_loss = test.get("loss" if name == "notebook" else "ranking_log_loss",
                        nan)
    print(" | ".join([
        name, f"{r['wall_seconds']:.0f}", f"{r['train_ratings_per_s']:,.0f}",
        f"{test.get(prefix + 'auc', nan):.4f}",
        f"{test.get(prefix + 'accuracy', nan):.4f}", f"{log_loss:.4f}",
        f"{r.get('lists', {}).get('retrieval_recall_at_100', nan):.4f}",
        f"{r['peak_rss_gib']:.1f}"]))
  if report.get("oracle"):
    o = report["oracle"]
    print(f"oracle | - | - | {o['auc']:.4f} | {o['accuracy']:.4f} | "
          f"{o['log_loss']:.4f} | - | -")
  if "throughput" in report:
    t = report["throughput"]
    print("\nthroughput, ratings/s (median [min, max] of "
          f"{t['repeats']} interleaved windows):")
    for name in ("joint", "ranking_only", "notebook"):
      print(f"{name}: {t[name]['median']:,.0f} [{t[name]['min']:,.0f}, "
            f"{t[name]['max']:,.0f}]")
    for name in ("joint_vs_notebook", "ranking_only_vs_notebook"):
      print(f"{name}: {t[name]['median']:.1f}x")


def _print_table(results: dict[str, object]) -> None:
  header = ["config", "ratings"] + list(_COLUMNS)
  print("\nmedians over repeats:")
  print(" | ".join(header))
  for config, res in results.items():
    s = res["summary"]
    print(" | ".join([config, f"{s['ratings']['median']:,.0f}"] +
                     [f"{s[k]['median']:,.3g}" if k in s else "-"
                      for k in _COLUMNS]))


def main(argv):
  del argv
  if _STAGE.value:
    print(json.dumps(_stage(_STAGE.value, _CONFIGS.value[0], _DATA_DIR.value,
                            _BATCH_SIZE.value)))
    return
  report = {
      "suite": _SUITE.value,
      "command": " ".join(["python -m ncf_tfrs.bench"] + sys.argv[1:]),
      "machine": _machine(),
      "repeats": _REPEATS.value,
  }
  if _SUITE.value == "data":
    results = _data_suite()
    _print_table(results)
    report.update(batch_size=_BATCH_SIZE.value, results=results)
  elif _SUITE.value == "train":
    report.update(_train_suite())
    _print_train_table(report)
  else:
    results = _serving_suite()
    report.update({k: v for k, v in results.items() if k != "machine"})
  output = _OUTPUT.value or f"bench_{_SUITE.value}.json"
  with open(output, "w") as f:
    json.dump(report, f, indent=2)
  print(f"\nwrote {output}")


if __name__ == "__main__":
  import ncf_tfrs  # pylint: disable=g-import-not-at-top,unused-import
  app.run(main)
