"""The quality suite's section: product vs the notebook's recipe over seeds."""

from __future__ import annotations

from typing import Any

from ncf_tfrs.bench.report import common

_COLUMNS = (("auc", "AUC"), ("accuracy", "accuracy"), ("log_loss", "log loss"),
            ("retrieval_recall_at_100", "recall@100"),
            ("factorized_top_100", "tutorial top-100"),
            ("ranking_epoch_kept", "NCF epoch kept"),
            ("train_seconds", "train s"))


def _cell(summary: dict[str, Any], key: str) -> str:
  s = summary.get(key)
  if not s:
    return "–"
  if key == "train_seconds":
    return f"{s['mean']:.0f} ± {s['sd']:.0f}"
  if key == "ranking_epoch_kept":
    return f"{s['mean']:.1f} ± {s['sd']:.1f}"
  return f"{s['mean']:.4f} ± {s['sd']:.4f}"


def quality_checks(doc: dict[str, Any]) -> list[list[str]]:
  """The quality targets as rows, on means over seeds."""
  targets = doc.get("targets") or {}
  mean = lambda recipe, key: common.get(  # pylint: disable=g-long-lambda
      doc, "summary", recipe, key, "mean")
  ge = lambda m, r: m >= r  # pylint: disable=unnecessary-lambda-assignment
  le = lambda m, r: m <= r  # pylint: disable=unnecessary-lambda-assignment

  def gain(key):
    product, notebook = mean("product", key), mean("notebook", key)
    return None if None in (product, notebook) else product - notebook

  def ratio():
    product = mean("product", "factorized_top_100")
    tutorial = mean("tutorial", "factorized_top_100")
    return None if not (product and tutorial) else product / tutorial

  return [
      common.check("AUC", mean("product", "auc"), targets.get("auc"), ge,
                   common.metric, "≥"),
      common.check("AUC gain over the notebook's recipe", gain("auc"),
                   targets.get("auc_gain"), ge, common.metric, "≥"),
      common.check("accuracy", mean("product", "accuracy"),
                   targets.get("accuracy"), ge, common.metric, "≥"),
      common.check("accuracy gain over the notebook's recipe",
                   gain("accuracy"), targets.get("accuracy_gain"), ge,
                   common.metric, "≥"),
      common.check("log loss", mean("product", "log_loss"),
                   targets.get("log_loss"), le, common.metric, "≤"),
      common.check("tutorial top-100 vs the tutorial's recipe", ratio(),
                   targets.get("tutorial_top_100_ratio"), ge, common.times,
                   "≥"),
  ]


def render_quality(doc: dict[str, Any], heading: str) -> tuple[str, list[str]]:
  """Mean ± sd per recipe, then every seed, on one release's test split."""
  summary = doc.get("summary") or {}
  parts = [f"{heading} Quality over seeds: product vs the notebook's and "
           "the TFRS tutorial's recipes",
           "", common.labels(doc, common.dataset_label(doc.get("dataset")),
                             "quality"), ""]
  if not summary:
    return "\n".join(parts), ["quality: no runs in the quality suite"]
  seeds = ", ".join(str(s) for s in doc.get("seeds") or [])
  parts += [
      f"Random 80/20 split per seed ({seeds}); the product trains on "
      "90% of the training split and keeps the epochs its validation "
      "slice (the other 10%) chooses; the notebook's recipe trains "
      f"{doc.get('notebook_epochs', 1)} epoch(s) on all of it, as it ran; "
      "the TFRS basic-retrieval tutorial's recipe trains retrieval only. All "
      "are scored once on the test split. recall@100 is per user over unrated "
      "movies; tutorial top-100 is the TFRS tutorial's protocol (per held-out "
      "rating, rated movies not excluded). Mean ± sd over seeds:", "",
      common.table(["recipe"] + [t for _, t in _COLUMNS],
                   [[name] + [_cell(s, k) for k, _ in _COLUMNS]
                    for name, s in summary.items()]), ""]
  runs = doc.get("runs") or {}
  rows = []
  for name, recipe_runs in runs.items():
    for r in recipe_runs:
      rows.append([name, str(r.get("seed"))] + [
          common.metric(r.get(k)) for k in ("auc", "accuracy", "log_loss",
                                            "factorized_top_100")])
  parts += ["Targets (means over seeds):", "",
            common.table(["target", "measured", "required", "status"],
                         quality_checks(doc)), ""]
  parts += ["Per seed:", "",
            common.table(["recipe", "seed", "AUC", "accuracy", "log loss",
                          "tutorial top-100"], rows, right_from=2), ""]
  return "\n".join(parts + _stratified(doc.get("stratified")) +
                   _cold_users(doc.get("cold_users"),
                               (doc.get("targets") or {}).get("cold_ratio"))
                   ), []


_LIST_METRICS = (("ndcg", "nDCG@10"), ("precision", "precision@10"),
                 ("recall", "recall@10"), ("map", "MAP"))


def stratified_checks(stratified: dict[str, Any]) -> list[list[str]]:
  """The served list against the published NCF row (all four) and BiVAE's
  nDCG@10, the stretch goal."""
  summary, published = stratified["summary"], stratified["published"]
  rows = [common.check(f"{title} vs published NCF",
                       summary.get(key, {}).get("mean"),
                       published["ncf"][key], lambda m, r: m > r,
                       common.metric, ">")
          for key, title in _LIST_METRICS]
  rows.append(common.check("nDCG@10 vs published BiVAE (stretch)",
                           summary.get("ndcg", {}).get("mean"),
                           published["bivae"]["ndcg"], lambda m, r: m >= r,
                           common.metric, "≥"))
  return rows


def _stratified(stratified: dict[str, Any] | None) -> list[str]:
  """The literature's protocol: the product's served top 10 beside the
  published rows."""
  if not stratified or not stratified.get("runs"):
    return []
  test = stratified["test_fraction"]
  seeds = ", ".join(str(r["seed"]) for r in stratified["runs"])
  rows = [["product, served (retrieval + NCF rerank)"] +
          [_cell(stratified["summary"], k) for k, _ in _LIST_METRICS]]
  rows += [[f"published {name.upper() if name == 'ncf' else 'BiVAE'}"] +
           [f"{values[k]:.3f}" for k, _ in _LIST_METRICS]
           for name, values in stratified["published"].items()]
  return [
      "The literature's protocol (Microsoft Recommenders' ml-100k table): "
      f"per-user stratified {1 - test:.0%}/{test:.0%} split per seed "
      f"({seeds}), every held-out rating relevant, top 10 over the movies "
      "the user has not rated; the product's served list, mean ± sd over "
      "seeds; published rows as printed there (their own split, seed 42):",
      "", common.table(["list"] + [t for _, t in _LIST_METRICS], rows), "",
      common.table(["target", "measured", "required", "status"],
                   stratified_checks(stratified)), ""]


def cold_checks(cold: dict[str, Any],
                required: float | None) -> list[list[str]]:
  """The served list of users held out of training, given N ratings,
  against the most rated movies."""
  n = cold.get("given_target", 10)
  served = common.get(cold, "summary", f"history_served_recall_{n}", "mean")
  popular = common.get(cold, "summary", f"popularity_recall_{n}", "mean")
  return [common.check(
      f"new users with {n} ratings: liked recall@10 vs most rated",
      None if not (served and popular) else served / popular, required,
      lambda m, r: m >= r, common.times2, "≥")]


def _cold_users(cold: dict[str, Any] | None,
                required: float | None) -> list[str]:
  """Users the model never saw, served from their first N ratings."""
  if not cold or not cold.get("runs"):
    return []
  summary = cold["summary"]
  seeds = ", ".join(str(r["seed"]) for r in cold["runs"])
  rows = []
  for n in (5, 10, 20):
    if f"history_served_recall_{n}" not in summary:
      continue
    served = summary[f"history_served_recall_{n}"]["mean"]
    popular = summary[f"popularity_recall_{n}"]["mean"]
    rows.append([str(n), _cell(summary, f"history_served_recall_{n}"),
                 _cell(summary, f"popularity_recall_{n}"),
                 common.times2(served / popular if popular else None),
                 _cell(summary, f"known_served_recall_{n}"),
                 _cell(summary, f"history_served_ndcg_{n}"),
                 _cell(summary, f"popularity_ndcg_{n}"),
                 _cell(summary, f"known_served_ndcg_{n}"),
                 f"{summary[f'users_{n}']['mean']:.0f}"])
  return [
      "Users the model never saw: the same command with a history side "
      f"(`--history_share={cold.get('history_share')}`) holds "
      f"{cold.get('user_fraction', 0):.0%} of the users out of training "
      "(seeded) and serves each from their first N ratings by time "
      "(retrieval from the history, then the NCF rerank), against the most "
      "rated movies they had not rated (the fallback such users got "
      "before) and, at N = 10, against the same users served by id by the "
      "command without a history side retrained with their first 10 "
      "ratings (`--cold_known_ratings=10`); liked recall@10 and NDCG@10 on "
      f"their later ratings, seeds {seeds}, mean ± sd:", "",
      common.table(["ratings given", "served recall@10", "most rated",
                    "ratio", "retrained recall@10", "served NDCG@10",
                    "most rated NDCG@10", "retrained NDCG@10", "users"],
                   rows), "",
      common.table(["target", "measured", "required", "status"],
                   cold_checks(cold, required)), ""]
