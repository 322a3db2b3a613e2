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
    ("csv_prepare_s", "as the CSV release: prepare (parse ratings.csv + "
     "movies.csv, write TFDS), s", common.seconds),
    ("csv_prepare_peak_rss_gib", "as the CSV release: prepare peak RSS, GiB",
     common.gib),
    ("pandas_csv_s", "bare pandas read_csv of the same files + group by "
     "user, s", common.seconds),
    ("csv_prepare_vs_pandas", "CSV prepare / bare pandas", common.times),
    ("csv_load_s", "as the CSV release: load, s", common.seconds),
    ("csv_split_s", "as the CSV release: split, s", common.seconds),
    ("csv_load_split_s", "as the CSV release: load + split, s",
     common.seconds),
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
  checks = data_checks(doc)
  if checks:
    parts += ["Targets (medians):", "",
              common.table(["target", "measured", "required", "status"],
                           checks), ""]
  return "\n".join(parts), []


def data_checks(doc: dict[str, Any]) -> list[list[str]]:
  """The data targets of each config that has them, as check rows."""
  rows = []
  le = lambda m, r: m <= r  # pylint: disable=unnecessary-lambda-assignment
  shows = {key: (title, show) for key, title, show in _DATA_METRICS}
  for config, targets in (doc.get("targets") or {}).items():
    for key, required in targets.items():
      title, show = shows.get(key, (key, common.num))
      measured = common.get(doc, "results", config, "summary", key, "median")
      rows.append(common.check(f"{config}: {title}", measured, required, le,
                               show, "≤", "" if measured is not None else
                               "not in this run (--csv?)"))
  return rows
