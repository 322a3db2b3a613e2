"""The train suite's throughput stage: interleaved windows, each recipe in
its own TensorFlow thread pools."""

import dataclasses
import os
import statistics

import pytest

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

from ncf_tfrs.bench import process
from ncf_tfrs.bench import train as train_suite
from ncf_tfrs.training import config as config_lib
from ncf_tfrs.training import threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_product_and_notebook_windows_take_turns_in_their_own_pools(
    data_dir, tmp_path):
  path = process.product_config(f"{ROOT}/configs/smoke.flags",
                                "synthetic-small", str(tmp_path))
  with open(path) as f:
    cfg = config_lib.ExperimentConfig.from_json(f.read())
  with open(path, "w") as f:  # Small windows: 4 steps of 1024 ratings.
    f.write(dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, batch_size=1024, steps_per_execution=2)).to_json())
  result = train_suite.throughput_stage("synthetic-small", data_dir, path,
                                        repeats=2, window_steps=4)
  t = result["throughput"]
  assert t["threads"] == {
      "product": list(threads.resolve(threads.ThreadConfig())),
      "notebook": [0, 0]}  # TensorFlow's default, as the notebook ran.
  for name in ("joint", "ranking_only", "notebook"):
    assert len(t[name]["runs"]) == 2 and min(t[name]["runs"]) > 0
  assert t["joint_vs_notebook"]["median"] == pytest.approx(statistics.median(
      a / b for a, b in zip(t["joint"]["runs"], t["notebook"]["runs"])))
  assert t["batch_size"] == 1024 and result["oracle"]["auc"] > 0.5
  assert result["throughput_peak_rss_gib"] > 0


def test_a_failing_worker_names_its_command_and_error(data_dir, tmp_path):
  with pytest.raises(process.StageError, match="--stage=throughput.*"
                     "No such file"):
    train_suite.throughput_stage("synthetic-small", data_dir,
                                 str(tmp_path / "missing.json"), repeats=1,
                                 window_steps=4)


def test_the_csv_release_is_written_once_and_unknown_configs_say_so(
    tmp_path):
  manual = tmp_path / "manual"
  assert train_suite.csv_archive("synthetic-small", str(tmp_path / "tfds"),
                                 str(manual)) == "latest-small"
  ratings = manual / "ml-latest-small" / "ratings.csv"
  assert ratings.read_text().startswith("userId,movieId,rating,timestamp\n")
  ratings.write_text("userId,movieId,rating,timestamp\n1,1,4.0,0\n")
  # Present: read as it is, not written again.
  train_suite.csv_archive("synthetic-small", str(tmp_path / "tfds"),
                          str(manual))
  assert ratings.read_text().count("\n") == 2
  with pytest.raises(ValueError, match="no CSV release for 'ml-1m-like'"):
    train_suite.csv_archive("ml-1m-like", str(tmp_path), str(manual))
