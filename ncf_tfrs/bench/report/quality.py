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


def render_quality(doc: dict[str, Any], heading: str) -> tuple[str, list[str]]:
  """Mean ± sd per recipe, then every seed, on one release's test split."""
  summary = doc.get("summary") or {}
  parts = [f"{heading} Quality over seeds: product vs the notebook's recipe",
           "", common.labels(doc, common.dataset_label(doc.get("dataset")),
                             "quality"), ""]
  if not summary:
    return "\n".join(parts), ["quality: no runs in the quality suite"]
  seeds = ", ".join(str(s) for s in doc.get("seeds") or [])
  parts += [
      f"Random 80/20 split per seed ({seeds}); the product trains on "
      "90% of the training split and keeps the epochs its validation "
      "slice (the other 10%) chooses; the notebook's recipe trains "
      f"{doc.get('notebook_epochs', 1)} epoch(s) on all of it. Both are "
      "scored once on the test split. recall@100 is per user over unrated "
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
  parts += ["Per seed:", "",
            common.table(["recipe", "seed", "AUC", "accuracy", "log loss",
                          "tutorial top-100"], rows, right_from=2), ""]
  return "\n".join(parts), []
