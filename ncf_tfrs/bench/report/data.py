"""The data suite's section: MovieLens to training batches."""

from __future__ import annotations

from typing import Any


from ncf_tfrs.bench.report import common


_DATA_METRICS = (
    ("ratings", "ratings", common.rate),
    ("prepare_s", "prepare (generate/parse + write TFDS), s", common.seconds),
    ("prepare_peak_rss_gib", "prepare peak RSS, GiB", common.gib),
    ("load_s", "load (TFDS → columns), s", common.seconds),
    ("split_s", "split, s", common.seconds),
    ("epoch_s", "one pass of training batches, s", common.seconds),
    ("epoch_ratings_per_s", "training batches, ratings/s", common.rate),
    ("full_pass_ratings_per_s", "load + split + pass, ratings/s", common.rate),
    ("pipeline_peak_rss_gib", "pipeline peak RSS, GiB", common.gib),
    ("notebook_ratings_per_s", "notebook input pipeline, ratings/s", common.rate),
    ("epoch_speedup_vs_notebook", "speed-up over the notebook's pipeline",
     common.times),
)


def render_data(doc: dict[str, Any], heading: str) -> tuple[str, list[str]]:
  """The data-pipeline section: medians (min–max), one column per config."""
  results = doc.get("results") or {}
  configs = list(results)
  data = ", ".join(
      f"`{c}`" + (" (**SYNTHETIC**)" if common.is_synthetic(c) else
                  " (real MovieLens)") for c in configs) or "none"
  parts = [f"{heading} Data pipeline: MovieLens → training batches", "",
           common.labels(doc, data, "data"), ""]
  if not configs:
    return "\n".join(parts), ["data: no results in the data suite"]
  rows = []
  for key, title, show in _DATA_METRICS:
    cells = []
    for config in configs:
      s = common.get(results[config], "summary", key)
      if s is None:
        cells.append("–")
      elif s.get("min") == s.get("max") or key == "ratings":
        cells.append(show(s.get("median")))
      else:
        cells.append(f"{show(s.get('median'))} ({show(s.get('min'))}–"
                     f"{show(s.get('max'))})")
    if any(c != "–" for c in cells):
      rows.append([title] + cells)
  parts += [f"Medians (min–max) over {common.num(doc.get('repeats'))} repeats, "
            f"batch size {common.rate(doc.get('batch_size'))}:", "",
            common.table(["measurement"] + [
                f"{c} (SYNTHETIC)" if common.is_synthetic(c) else c
                for c in configs], rows), ""]
  return "\n".join(parts), []
