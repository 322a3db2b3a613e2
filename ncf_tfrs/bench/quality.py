"""Quality benchmark over seeds: the product's train command against the baselines.

For each seed, on the same random 80/20 split of one release: the notebook's
recipe (`ncf_tfrs.bench.baseline`, its one epoch), the product's train
command on a flagfile, which carves its validation slice out of the training
split and keeps the epochs validation chooses, and, given its flagfile, the
TFRS basic-retrieval tutorial's recipe (retrieval only, so it has no ranking
figures; its retrieval is compared by the tutorial's own protocol,
`factorized_top_100`). All are scored once on the test split. The suite reports every seed and the mean and standard
deviation, because one seed's difference is within the noise at 100k
ratings.

The product also serves users it never saw: with a history side
(`--history_share`), a seeded tenth of the users is held out of training and
served from their first 5, 10 and 20 ratings (`--cold_user_fraction`), against
the most rated movies, the list such users got before, and against what
retraining would give them: the same command without the history side,
trained with each held-out user's first 10 ratings, serving them by id
(`--cold_known_ratings`).

The product also runs on the literature's protocol, so its served list
(retrieval, then the NCF rerank) compares with published tables: Microsoft
Recommenders' ml-100k benchmark, a per-user stratified 75/25 split, every
held-out rating relevant, top 10 over the movies the user has not rated
(`PUBLISHED`).

Real MovieLens comes in through the offline archive path users take
(`manual_dir`, no download); for development, `python -m
ncf_tfrs.datasets.movielens_users.recbole_ml100k` writes real ml-100k from a
package registry's wheel. MovieLens may not be redistributed: its files and
these runs stay on the machine that made them.
"""

from __future__ import annotations

import os
import statistics
import tempfile

from ncf_tfrs.bench import process
from ncf_tfrs.bench import train as train_suite

# What the product must reach on a real release, mean over seeds: absolute,
# and against the baselines run in the same suite.
TARGETS = {"auc": 0.81, "auc_gain": 0.03, "accuracy": 0.73,
           "accuracy_gain": 0.02, "log_loss": 0.53,
           "tutorial_top_100_ratio": 1.5, "cold_ratio": 1.5}

# The cold-user run: the share of each training batch that trains the
# history encoder, the users held out, and the ratings the target counts.
COLD_HISTORY_SHARE = 0.1
COLD_USER_FRACTION = 0.1
COLD_GIVEN = 10

# Microsoft Recommenders' ml-100k benchmark table (stratified 75/25 split,
# top 10): its NCF row, and BiVAE, the best row, as the stretch goal.
PUBLISHED = {
    "ncf": {"ndcg": 0.396, "precision": 0.347, "recall": 0.181, "map": 0.108},
    "bivae": {"ndcg": 0.475, "precision": 0.412, "recall": 0.219,
              "map": 0.147},
}
STRATIFIED_TEST_FRACTION = 0.25

# The figures compared, as each recipe names them in its test metrics.
METRICS = {"auc": ("auc", "ranking_auc"),
           "accuracy": ("accuracy", "ranking_accuracy"),
           "log_loss": ("loss", "ranking_log_loss")}


def _figures(result: dict[str, object], notebook: bool) -> dict[str, float]:
  test = result["test"]
  out = {name: float(test[keys[0] if notebook else keys[1]])
         for name, keys in METRICS.items()
         if (keys[0] if notebook else keys[1]) in test}
  out["train_seconds"] = float(result["train_seconds"])
  if not notebook:
    for name in ("retrieval_recall_at_100", "factorized_top_100"):
      out[name] = float(result["lists"][name])
    out["epochs_run"] = float(result["epochs_run"])
    kept = result.get("validation", {}).get("kept_epoch", {})
    if "ranking" in kept:
      out["ranking_epoch_kept"] = float(kept["ranking"])
  return out


def _stratified_figures(result: dict[str, object]) -> dict[str, float]:
  out = {name: float(result["lists"][f"rerank_{name}_at_10"])
         for name in PUBLISHED["ncf"]}
  out["train_seconds"] = float(result["train_seconds"])
  return out


def _cold_figures(result: dict[str, object]) -> dict[str, float]:
  """Served and most-rated liked recall@10 and NDCG@10 per ratings given."""
  out = {}
  for given, lists in result["cold_users"].items():
    n = given.removeprefix("given_")
    for metric in ("recall", "ndcg"):
      for name in ("history_served", "popularity"):
        out[f"{name}_{metric}_{n}"] = float(
            lists[f"{name}_liked_{metric}_at_10"])
    out[f"users_{n}"] = float(lists["cold_users"])
  return out


def _known_figures(result: dict[str, object]) -> dict[str, float]:
  """Liked recall@10 and NDCG@10 of the held-out users served by id by a
  model trained with their first ratings."""
  lists = result["cold_users"][f"known_given_{COLD_GIVEN}"]
  return {f"known_served_{metric}_{COLD_GIVEN}": float(
      lists[f"rerank_liked_{metric}_at_10"]) for metric in ("recall", "ndcg")}


def _summary(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  return {k: {"mean": statistics.mean(r[k] for r in runs),
              "sd": statistics.stdev(r[k] for r in runs) if len(runs) > 1
                    else 0.0}
          for k in runs[0]}


def run_suite(dataset: str, data_dir: str | None, manual_dir: str | None,
              work_dir: str | None, product_flagfile: str, seeds: list[int],
              notebook_epochs: int = 1,
              tutorial_flagfile: str | None = None) -> dict[str, object]:
  """Every recipe on every seed's split; per-seed figures and their summary."""
  data_dir = data_dir or tempfile.mkdtemp(prefix="ncf_tfrs_bench_")
  work_dir = work_dir or tempfile.mkdtemp(prefix="ncf_tfrs_quality_")
  os.makedirs(work_dir, exist_ok=True)
  process.run_stage("prepare", dataset, data_dir,
                    *([f"--manual_dir={manual_dir}"] if manual_dir else []))
  runs = {"notebook": [], "product": []}
  if tutorial_flagfile:
    runs["tutorial"] = []
  stratified, cold = [], []
  for seed in seeds:
    notebook = process.run_stage("notebook_train", dataset, data_dir,
                                 f"--seeds={seed}",
                                 f"--notebook_epochs={notebook_epochs}")
    runs["notebook"].append({"seed": seed, **_figures(notebook, True)})
    product = train_suite.train_command(
        f"product_seed{seed}", product_flagfile, dataset, data_dir, work_dir,
        0, f"--seed={seed}")
    runs["product"].append({"seed": seed, **_figures(product, False)})
    if tutorial_flagfile:
      tutorial = train_suite.train_command(
          f"tutorial_seed{seed}", tutorial_flagfile, dataset, data_dir,
          work_dir, 0, f"--seed={seed}")
      runs["tutorial"].append({"seed": seed, **_figures(tutorial, False)})
    served = train_suite.train_command(
        f"product_stratified_seed{seed}", product_flagfile, dataset, data_dir,
        work_dir, 0, f"--seed={seed}", "--split=stratified",
        f"--test_fraction={STRATIFIED_TEST_FRACTION}")
    stratified.append({"seed": seed, **_stratified_figures(served)})
    new_users = train_suite.train_command(
        f"product_cold_seed{seed}", product_flagfile, dataset, data_dir,
        work_dir, 0, f"--seed={seed}",
        f"--history_share={COLD_HISTORY_SHARE}",
        f"--cold_user_fraction={COLD_USER_FRACTION}")
    retrained = train_suite.train_command(
        f"product_cold_known_seed{seed}", product_flagfile, dataset, data_dir,
        work_dir, 0, f"--seed={seed}",
        f"--cold_user_fraction={COLD_USER_FRACTION}",
        f"--cold_known_ratings={COLD_GIVEN}")
    cold.append({"seed": seed, **_cold_figures(new_users),
                 **_known_figures(retrained)})
    print(f"seed {seed}: notebook AUC {runs['notebook'][-1]['auc']:.4f}, "
          f"product AUC {runs['product'][-1]['auc']:.4f}", flush=True)
  return {
      "dataset": dataset, "split": "random", "seeds": seeds,
      "product_flagfile": product_flagfile,
      "tutorial_flagfile": tutorial_flagfile,
      "notebook_epochs": notebook_epochs,
      "targets": TARGETS,
      "runs": runs,
      "summary": {name: _summary([{k: v for k, v in r.items() if k != "seed"}
                                  for r in recipe_runs])
                  for name, recipe_runs in runs.items()},
      "stratified": {
          "split": "stratified",
          "test_fraction": STRATIFIED_TEST_FRACTION,
          "published": PUBLISHED,
          "runs": stratified,
          "summary": _summary([{k: v for k, v in r.items() if k != "seed"}
                               for r in stratified]),
      },
      "cold_users": {
          "history_share": COLD_HISTORY_SHARE,
          "user_fraction": COLD_USER_FRACTION,
          "given_target": COLD_GIVEN,
          "runs": cold,
          "summary": _summary([{k: v for k, v in r.items() if k != "seed"}
                               for r in cold]),
      },
  }


def print_table(report: dict[str, object]) -> None:
  print(f"\n{report['dataset']}, random split, test split scored once, "
        f"seeds {report['seeds']} (mean ± sd):")
  names = ["auc", "accuracy", "log_loss", "retrieval_recall_at_100",
           "factorized_top_100", "train_seconds"]
  print("recipe | " + " | ".join(names))
  for recipe, summary in report["summary"].items():
    print(" | ".join([recipe] + [
        f"{summary[n]['mean']:.4f} ± {summary[n]['sd']:.4f}" if n in summary
        else "-" for n in names]))
  strat = report["stratified"]
  print(f"\nserved top 10, stratified {1 - strat['test_fraction']:.0%}/"
        f"{strat['test_fraction']:.0%} split (mean ± sd), against the "
        "published rows:")
  names = list(PUBLISHED["ncf"])
  print("row | " + " | ".join(names))
  print(" | ".join(["product"] + [
      f"{strat['summary'][n]['mean']:.4f} ± {strat['summary'][n]['sd']:.4f}"
      for n in names]))
  for row, values in PUBLISHED.items():
    print(" | ".join([f"published {row}"] + [f"{values[n]:.3f}"
                                             for n in names]))
  cold = report["cold_users"]["summary"]
  print("\nusers held out of training, served from their first N ratings "
        "(liked recall@10, mean over seeds): served vs most rated "
        "[vs a model retrained with them]")
  for n in (5, 10, 20):
    if f"history_served_recall_{n}" in cold:
      known = cold.get(f"known_served_recall_{n}")
      print(f"N={n}: {cold[f'history_served_recall_{n}']['mean']:.4f} vs "
            f"{cold[f'popularity_recall_{n}']['mean']:.4f}" +
            (f" [vs {known['mean']:.4f}]" if known else ""))
