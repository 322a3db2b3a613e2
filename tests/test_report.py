"""The report command: tables, plots and the README block from bench JSON."""

import json
import os
import struct
import subprocess
import sys

import matplotlib.image
import pytest

from ncf_tfrs.bench import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINE = {"platform": "Linux-6.1-x86_64-with-glibc2.36",
           "processor": "x86_64", "cpus": 2, "python": "3.11.2",
           "tensorflow": "2.20.0"}
README = """# project

Intro.

## Results

<!-- results:begin -->
old numbers
<!-- results:end -->

## After
Kept.
"""


def _curve(points, auc_key, loss_key, auc0, loss0, seconds):
  return [{"step": i * 100, "ratings": i * 1000,
           "train_seconds": seconds * i, auc_key: auc0 + 0.01 * i,
           loss_key: loss0 - 0.01 * i} for i in range(1, points + 1)]


def train_doc(dataset="synthetic-32m", oracle=True):
  """A bench_train.json with every section, small numbers."""
  return {
      "suite": "train",
      "command": "python -m ncf_tfrs.bench_train --dataset=" + dataset,
      "machine": MACHINE, "dataset": dataset, "split": "random",
      "oracle": ({"auc": 0.873, "accuracy": 0.797, "log_loss": 0.44}
                 if oracle else None),
      "stages": {
          "notebook": {
              "recipe": "notebook", "train_ratings": 25600163,
              "mapping_seconds": 9.1, "train_seconds": 3000.0,
              "wall_seconds": 3009.1, "train_ratings_per_s": 8500.0,
              "peak_rss_gib": 12.5,
              "test": {"loss": 0.47, "accuracy": 0.77, "mse": 0.15,
                       "mae": 0.31, "auc": 0.80},
              "curve": _curve(6, "auc", "loss", 0.74, 0.56, 500.0)},
          "product": {
              "recipe": "product", "flagfile": "configs/synthetic-32m.flags",
              "train_ratings": 25600163, "epochs_run": 3,
              "train_seconds": 500.0, "wall_seconds": 560.0,
              "train_ratings_per_s": 150000.0, "peak_rss_gib": 6.0,
              "epoch_boundary_seconds": [4.2, 12.5, 3.9],
              "test": {"ranking_auc": 0.8412, "ranking_accuracy": 0.78,
                       "ranking_log_loss": 0.46, "ranking_mse": 0.15,
                       "ranking_mae": 0.30, "retrieval_loss": 5.1},
              "lists": {"retrieval_recall_at_10": 0.16,
                        "retrieval_recall_at_50": 0.43,
                        "retrieval_recall_at_100": 0.57,
                        "rerank_liked_recall_at_10": 0.19,
                        "rerank_liked_ndcg_at_10": 0.30,
                        "retrieval_liked_recall_at_10": 0.18,
                        "retrieval_liked_ndcg_at_10": 0.28,
                        "ncf_rerank_liked_recall_at_10": 0.08,
                        "ncf_rerank_liked_ndcg_at_10": 0.13,
                        "popularity_liked_recall_at_10": 0.14,
                        "popularity_liked_ndcg_at_10": 0.21,
                        "eval_users": 10000, "liked_eval_users": 9500}},
          # The same command on the data written as its CSV release.
          "product_csv": {
              "recipe": "product_csv",
              "flagfile": "configs/synthetic-32m.flags",
              "train_ratings": 25600163, "epochs_run": 3,
              "train_seconds": 590.0, "wall_seconds": 590.0,
              "train_ratings_per_s": 130000.0, "peak_rss_gib": 6.1,
              "test": {"ranking_auc": 0.8411, "ranking_accuracy": 0.78,
                       "ranking_log_loss": 0.46}},
          # The same command with curve points, for the figure only.
          "product_curve": {
              "recipe": "product_curve",
              "flagfile": "configs/synthetic-32m.flags",
              "train_ratings": 25600163, "epochs_run": 3,
              "train_seconds": 540.0, "wall_seconds": 540.0,
              "train_ratings_per_s": 142000.0, "peak_rss_gib": 6.0,
              "test": {"ranking_auc": 0.8412, "ranking_accuracy": 0.78,
                       "ranking_log_loss": 0.46},
              "curve": _curve(8, "ranking_auc", "ranking_log_loss", 0.76,
                              0.54, 60.0)},
          "tutorial": {
              "recipe": "tfrs-basic-retrieval", "train_ratings": 25600163,
              "epochs_run": 3, "train_seconds": 400.0, "wall_seconds": 420.0,
              "train_ratings_per_s": 190000.0, "peak_rss_gib": 5.0,
              "test": {"retrieval_loss": 6.0},
              "lists": {"retrieval_recall_at_10": 0.11,
                        "retrieval_recall_at_50": 0.33,
                        "retrieval_recall_at_100": 0.5}},
      },
      "throughput": {
          "repeats": 5, "window_steps": 20,
          "threads": {"product": [1, 2], "notebook": [0, 0]},
          "joint": {"median": 150123.0, "min": 140000.0, "max": 160000.0},
          "ranking_only": {"median": 450000.0, "min": 400000.0,
                           "max": 470000.0},
          "notebook": {"median": 8500.0, "min": 8400.0, "max": 8600.0},
          "joint_vs_notebook": {"median": 17.6, "min": 16.0, "max": 19.0},
          "ranking_only_vs_notebook": {"median": 52.9, "min": 48.0,
                                       "max": 55.0}},
      "targets": {"joint_ratings_per_s": 140000,
                  "ranking_only_ratings_per_s": 500000, "peak_rss_gib": 10,
                  "accuracy_gain": 0.02, "auc_gain": 0.03,
                  "wall_time_fraction": 0.2, "recall_at_100_gain": 0.2,
                  "whole_run_vs_windows": 0.9,
                  "whole_run_vs_notebook_windows": 35,
                  "epoch_boundary_seconds": 10},
  }


def _ann(num_movies, kind, recall, scann_qps, exact_qps):
  return {"num_movies": num_movies, "kind": kind, "dim": 64, "k": 100,
          "scann": {"num_leaves": 291}, "build_s": 11.1,
          "recall_at_100": recall, "scann_single_qps": scann_qps,
          "exact_single_qps": exact_qps,
          "scann_batched_qps": scann_qps * 1.3,
          "exact_batched_qps": exact_qps * 5,
          "single_speedup": scann_qps / exact_qps,
          "batched_speedup": scann_qps * 1.3 / (exact_qps * 5)}


def serving_doc(latencies=False):
  """A bench_serving.json as bench_serving writes it: no command, no suite."""
  doc = {
      "repeats": 3,
      "machine": {"platform": "Linux-6.18-x86_64-with-glibc2.36", "cpus": 2},
      "targets": {"recall_at_100": 0.95, "speedup_84k": 5, "speedup_1m": 10,
                  "single_p50_ms": 3, "single_p99_ms": 10,
                  "batched_users_per_s": 2000},
      "ann": [_ann(84432, "clustered", 0.99992, 6515.8, 127.5),
              _ann(1000000, "clustered", 0.99703, 917.9, 19.3),
              _ann(84432, "random", 0.63072, 5766.6, 128.9)],
      "end_to_end": {"num_users": 200948, "num_movies": 84432,
                     "num_candidates": 200, "k": 10, "export_s": 20.4,
                     "single_p50_ms": 3.4652, "single_p90_ms": 4.2338,
                     "single_p99_ms": 6.8884, "requests": 500,
                     "batch_size": 256, "batched_users_per_s": 2015.48},
  }
  if latencies:
    doc["end_to_end"]["single_latencies_ms"] = [
        2.5 + 0.01 * i + (3.0 if i % 50 == 0 else 0.0) for i in range(499)
    ] + [40.0]  # One outlier, off the plotted axis.
  return doc


def data_doc():
  def summary(value):
    return {"median": value, "min": value * 0.9, "max": value * 1.1}
  metrics = {"prepare_s": 2.4, "prepare_peak_rss_gib": 0.8, "load_s": 1.2,
             "split_s": 0.3, "epoch_s": 0.9, "epoch_ratings_per_s": 88888.0,
             "full_pass_ratings_per_s": 41000.0,
             "pipeline_peak_rss_gib": 1.1, "notebook_ratings_per_s": 9000.0,
             "epoch_speedup_vs_notebook": 9.9}
  csv = {"csv_prepare_s": 3.0, "csv_prepare_peak_rss_gib": 0.9,
         "pandas_csv_s": 1.2, "csv_prepare_vs_pandas": 2.5,
         "csv_load_s": 1.0, "csv_split_s": 0.2, "csv_load_split_s": 1.2}
  return {"suite": "data",
          "command": "python -m ncf_tfrs.bench --suite data "
                     "--config synthetic-small,100k",
          "machine": MACHINE, "repeats": 3, "batch_size": 16384,
          "results": {
              config: {"runs": [], "summary": dict(
                  {k: summary(v) for k, v in metrics.items()},
                  **({k: summary(v) for k, v in csv.items()}
                     if config == "synthetic-small" else {}),
                  ratings={"median": 100000, "min": 100000, "max": 100000})}
              for config in ("synthetic-small", "100k")},
          "targets": {"synthetic-small": {"csv_prepare_s": 90,
                                          "csv_prepare_vs_pandas": 2.0}}}


def quality_doc():
  """A bench_quality.json: two seeds of both recipes on real ml-100k."""
  def run(seed, auc):
    return {"seed": seed, "auc": auc, "accuracy": 0.7, "log_loss": 0.56,
            "train_seconds": 30.0}
  runs = {"notebook": [run(42, 0.77), run(1, 0.79)],
          "product": [dict(run(42, 0.79), ranking_epoch_kept=4.0),
                      dict(run(1, 0.81), ranking_epoch_kept=6.0)]}
  summary = {
      name: {k: {"mean": sum(r[k] for r in rs) / 2,
                 "sd": abs(rs[0][k] - rs[1][k]) / 2 ** 0.5}
             for k in rs[0] if k != "seed"}
      for name, rs in runs.items()}
  return {"suite": "quality", "command": "python -m ncf_tfrs.bench --suite "
          "quality --config 100k", "machine": MACHINE, "dataset": "100k",
          "seeds": [42, 1], "notebook_epochs": 1, "runs": runs,
          "targets": {"auc": 0.81, "auc_gain": 0.015, "log_loss": 0.6,
                      "cold_ratio": 1.5},
          "summary": summary,
          "stratified": {
              "split": "stratified", "test_fraction": 0.25,
              "published": {"ncf": {"ndcg": 0.396, "precision": 0.347,
                                    "recall": 0.181, "map": 0.108},
                            "bivae": {"ndcg": 0.475, "precision": 0.412,
                                      "recall": 0.219, "map": 0.147}},
              "runs": [{"seed": 42, "ndcg": 0.42, "precision": 0.37,
                        "recall": 0.17, "map": 0.12, "train_seconds": 30}],
              "summary": {"ndcg": {"mean": 0.42, "sd": 0.0},
                          "precision": {"mean": 0.37, "sd": 0.0},
                          "recall": {"mean": 0.17, "sd": 0.0},
                          "map": {"mean": 0.12, "sd": 0.0},
                          "train_seconds": {"mean": 30, "sd": 0}}},
          "cold_users": {
              "history_share": 0.1, "user_fraction": 0.1, "given_target": 10,
              "runs": [{"seed": 42}],
              "summary": {
                  "history_served_recall_10": {"mean": 0.12, "sd": 0.01},
                  "popularity_recall_10": {"mean": 0.096, "sd": 0.0},
                  "history_served_ndcg_10": {"mean": 0.52, "sd": 0.0},
                  "popularity_ndcg_10": {"mean": 0.42, "sd": 0.0},
                  "known_served_recall_10": {"mean": 0.11, "sd": 0.02},
                  "users_10": {"mean": 94, "sd": 0}}}}


def _write(tmp_path, **docs):
  paths = []
  for name, doc in docs.items():
    path = tmp_path / f"bench_{name}.json"
    path.write_text(json.dumps(doc))
    paths.append(str(path))
  return paths


def _png_size(path):
  """(width, height) of a PNG that decodes whole and is not blank."""
  with open(path, "rb") as f:
    head = f.read(24)
  assert head[:8] == b"\x89PNG\r\n\x1a\n", path
  assert head[12:16] == b"IHDR", path
  width, height = struct.unpack(">II", head[16:24])
  pixels = matplotlib.image.imread(path)
  assert pixels.shape[:2] == (height, width)
  assert pixels.std() > 0.05, f"{path} looks blank"
  return width, height


def test_report_tables_labels_checks_and_plots(tmp_path):
  inputs = _write(tmp_path, train=train_doc(), serving=serving_doc(),
                  data=data_doc(), quality=quality_doc())
  out = tmp_path / "docs" / "results"
  files = report.build_report(inputs, str(out))

  text = (out / "results.md").read_text()
  assert files.markdown == str(out / "results.md")
  # Labels: hardware, data (SYNTHETIC flagged, real named), command.
  assert "2 CPUs, x86_64, Linux-6.1-x86_64-with-glibc2.36" in text
  assert "`synthetic-32m` (**SYNTHETIC**" in text
  assert "`100k` (real MovieLens)" in text
  assert "`python -m ncf_tfrs.bench_train --dataset=synthetic-32m`" in text
  assert "Command: not recorded in the serving JSON" in text  # Serving: no command.
  assert "processor not recorded" in text
  # Figures from every section.
  assert "| 0.8412 |" in text  # product AUC
  assert "| 0.5700 |" in text  # product recall@100
  assert "150,123" in text  # joint ratings/s median
  assert "product 1/2, notebook 0/0" in text  # each recipe's thread pools
  assert "| 6,516 | 128 | 51.1× |" in text  # ScaNN / exact single q/s
  assert "| 3.47 | 4.23 | 6.89 | 2,015 |" in text
  assert "88,888 (79,999–97,777)" in text  # data median (min–max)
  # Quality over seeds: mean ± sd per recipe, then each seed.
  assert "| product | 0.8000 ± 0.0141 |" in text
  assert "| notebook | 0.7800 ± 0.0141 |" in text
  assert "| 5.0 ± 1.4 |" in text  # NCF epoch kept
  assert "| product | 1 | 0.8100 |" in text
  # Its targets, on means over seeds: 0.80 < 0.81; gain 0.02 >= 0.015;
  # log loss 0.56 <= 0.6; no tutorial run to compare with.
  quality = {line.split(" | ")[0].lstrip("| "): line
             for line in text.splitlines() if line.startswith("| ")}
  assert quality["AUC"].endswith("| **NOT met** |")
  assert quality["AUC gain over the notebook's recipe"].endswith("| met |")
  assert quality["log loss"].endswith("| met |")
  assert "n/a" in quality["tutorial top-100 vs the tutorial's recipe"]
  # The literature's protocol: the served list beside the published rows;
  # recall 0.17 < NCF's 0.181, the rest above it; nDCG short of BiVAE's.
  assert "| product, served (retrieval + NCF rerank) | 0.4200 ± 0.0000 |" in text
  assert "| published NCF | 0.396 | 0.347 | 0.181 | 0.108 |" in text
  assert quality["nDCG@10 vs published NCF"].endswith("| met |")
  assert quality["recall@10 vs published NCF"].endswith("| **NOT met** |")
  assert quality["nDCG@10 vs published BiVAE (stretch)"].endswith(
      "| **NOT met** |")
  # New users from 10 ratings: 0.12 / 0.096 = 1.25x, short of 1.5x.
  # Beside them, the same users served by a model retrained with them.
  assert ("| 10 | 0.1200 ± 0.0100 | 0.0960 ± 0.0000 | 1.25× | 0.1100 ± "
          "0.0200 | 0.5200 ± 0.0000 | 0.4200 ± 0.0000 | – | 94 |") in text
  assert quality["new users with 10 ratings: liked recall@10 vs most rated"
                 ].endswith("| **NOT met** |")
  # Target checks, computed: joint 150k >= 140k met; ranking-only 450k < 500k
  # not; AUC gain 0.0412 >= 0.03 met; halfway 0.8412 >= 0.8365 met; wall
  # 560 <= 601.8 met; recall 0.57 < 0.6 not; random catalog is no target.
  lines = {line.split(" | ")[0].lstrip("| "): line
           for line in text.splitlines() if line.startswith("| ")}
  # The train command's whole run (150k) against the windows: 150k >=
  # 0.9 x 150,123 met, 150k < 35 x 8,500 not; a 12.5 s pause > 10 s.
  assert lines["train command, whole run, ratings/s vs joint windows × "
               "0.9"].endswith("| met |")
  assert lines["train command, whole run, ratings/s vs notebook windows × "
               "35"].endswith("| **NOT met** |")
  # On the CSV release: 130k < 0.9 x 150,123 not met.
  assert lines["train command on the CSV release, whole run, ratings/s vs "
               "joint windows × 0.9"].endswith(
                   "| 130,000 | ≥ 135,111 | **NOT met** |")
  assert "| the same, read from the CSV release `configs/synthetic-32m." \
      "flags` | 25,600,163 |" in text
  assert lines["longest pause between epochs (s)"].endswith(
      "| 12.5 | ≤ 10.0 | **NOT met** |")
  # The CSV release's prepare: 3.0 s <= 90 met; 2.5x > 2x pandas not.
  assert lines["synthetic-small: as the CSV release: prepare (parse "
               "ratings.csv + movies.csv, write TFDS), s"].endswith("| met |")
  assert lines["synthetic-small: CSV prepare / bare pandas"].endswith(
      "| **NOT met** |")
  assert lines["joint training ratings/s"].endswith("| met |")
  assert lines["ranking-only training ratings/s"].endswith("| **NOT met** |")
  assert lines["product peak RSS (GiB)"].endswith("| met |")
  assert lines["AUC gain over notebook"].endswith("| met |")
  assert lines["accuracy gain over notebook"].endswith("| **NOT met** |")
  assert lines["product AUC halfway from notebook to oracle"].endswith(
      "| met |")
  assert "| 0.8365 |" not in text and "≥ 0.8365" in text
  assert lines["product wall time (s) vs notebook's × 0.2"].endswith("| met |")
  assert lines["retrieval recall@100 vs tutorial's × 1.2"].endswith(
      "| **NOT met** |")
  assert lines["recommend p50 latency (ms)"].endswith("| **NOT met** |")
  assert lines["batched recommend users/s"].endswith("| met |")
  assert "recall@100, 84,432 movies, random" not in lines
  assert "Not in this report" not in text

  # The run with curve points has its own row; the headline is the other.
  assert any(line.startswith("| the same with learning-curve points "
                             "`configs/synthetic-32m.flags` | 25,600,163 |")
             and "| 142,000 |" in line for line in text.splitlines())
  names = {os.path.basename(p) for p in files.images}
  assert names == {"training_curves.png", "recall_at_k.png",
                   "scann_vs_exact.png", "serving_latency.png"}
  for name in names:
    assert f"]({name})" in text
    width, height = _png_size(out / name)
    assert 800 <= width <= 2000 and 400 <= height <= 1200, (name, width,
                                                            height)


def test_missing_sections_are_named_and_real_data_has_no_oracle(tmp_path):
  doc = train_doc(dataset="32m", oracle=False)
  del doc["stages"]["tutorial"], doc["throughput"]
  del doc["stages"]["product_csv"]  # An optional stage: no rows without it.
  del doc["targets"]["peak_rss_gib"]
  inputs = _write(tmp_path, train=doc) + [str(tmp_path / "bench_data.json")]
  files = report.build_report(inputs, str(tmp_path / "out"))

  text = (tmp_path / "out" / "results.md").read_text()
  assert "`32m` (real MovieLens)" in text and "SYNTHETIC" not in text
  assert "- data: no results (bench_data.json: not found)" in text
  assert "- serving: no results given" in text
  assert "- training: no tutorial stage in the train results" in text
  assert "- training: no throughput section" in text
  assert "| n/a (no oracle: real data) |" in text
  assert "n/a (no throughput section)" in text
  assert "train command on the CSV release" not in text
  assert "| product peak RSS (GiB) | 6.00 | – | n/a (no target in the JSON) |" in (
      text)
  assert {os.path.basename(p) for p in files.images} == {
      "training_curves.png", "recall_at_k.png"}


def test_latency_histogram_when_single_latencies_exist(tmp_path):
  inputs = _write(tmp_path, serving=serving_doc(latencies=True))
  files = report.build_report(inputs, str(tmp_path))
  assert {os.path.basename(p) for p in files.images} == {
      "scann_vs_exact.png", "serving_latency.png"}
  assert _png_size(tmp_path / "serving_latency.png")[0] >= 800


def test_readme_block_replaced_idempotently(tmp_path):
  inputs = _write(tmp_path, serving=serving_doc())
  readme = tmp_path / "README.md"
  readme.write_text(README)
  out = tmp_path / "docs" / "results"

  report.build_report(inputs, str(out), readme=str(readme))
  once = readme.read_text()
  report.build_report(inputs, str(out), readme=str(readme))
  assert readme.read_text() == once
  assert "old numbers" not in once
  assert once.startswith("# project\n\nIntro.\n\n## Results\n\n")
  assert once.endswith("<!-- results:end -->\n\n## After\nKept.\n")
  # Image links are relative to the README, one heading level down.
  assert "](docs/results/scann_vs_exact.png)" in once
  assert "#### Serving" in once


def test_readme_without_markers_is_a_clear_error_and_writes_nothing(
    tmp_path):
  inputs = _write(tmp_path, serving=serving_doc())
  readme = tmp_path / "README.md"
  readme.write_text("# no markers\n")
  with pytest.raises(report.ReportError, match="results:begin"):
    report.build_report(inputs, str(tmp_path / "out"), readme=str(readme))
  assert not (tmp_path / "out").exists()
  assert readme.read_text() == "# no markers\n"


def test_bad_inputs_are_clear_errors(tmp_path):
  with pytest.raises(report.ReportError, match="none of the inputs exists"):
    report.load_inputs([str(tmp_path / "nope.json")])
  bad = tmp_path / "bad.json"
  bad.write_text("{")
  with pytest.raises(report.ReportError, match="not valid JSON"):
    report.load_inputs([str(bad)])
  twice = _write(tmp_path, a=serving_doc(), b=serving_doc())
  with pytest.raises(report.ReportError, match="both serving results"):
    report.load_inputs(twice)


def _cli(*args, cwd):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "ncf_tfrs.report", *args],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=900, check=False)


def test_cli_writes_report_and_readme(tmp_path):
  _write(tmp_path, train=train_doc(), serving=serving_doc(), data=data_doc())
  (tmp_path / "README.md").write_text(README)
  result = _cli("--inputs",
                "bench_train.json,bench_serving.json,bench_data.json",
                "--output_dir", "docs/results", "--readme", "README.md",
                cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "updated the results block of README.md" in result.stdout
  text = (tmp_path / "docs" / "results" / "results.md").read_text()
  assert ("Generated by `python -m ncf_tfrs.report --inputs bench_train.json,"
          "bench_serving.json,bench_data.json --output_dir docs/results "
          "--readme README.md`") in text
  assert "](docs/results/training_curves.png)" in (
      tmp_path / "README.md").read_text()


def test_cli_missing_markers_exits_with_message(tmp_path):
  _write(tmp_path, serving=serving_doc())
  (tmp_path / "README.md").write_text("# no markers\n")
  result = _cli("--inputs", "bench_serving.json", "--readme", "README.md",
                cwd=tmp_path)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "error: README.md needs exactly one '<!-- results:begin -->'")
  assert "Traceback" not in result.stderr
