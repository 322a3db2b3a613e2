"""The serving benchmark at toy sizes: what it measures reaches the report."""

import ncf_tfrs  # noqa: F401  (must precede TensorFlow: selects tf-keras)

from ncf_tfrs.bench import serving as bench_serving
from ncf_tfrs import model as model_lib
from ncf_tfrs.bench.report import serving as serving_report

SMALL = model_lib.ModelConfig(
    retrieval_embedding_dim=8, ncf_embedding_dim=4, ncf_mlp_layers=(8, 4),
    ncf_bias=True)


def test_serving_suite_measures_the_given_architecture_and_reports_it(
    tmp_path):
  ann = bench_serving.ann_case(500, "clustered", repeats=1, num_queries=50,
                               single_queries=10, exact_single_queries=5)
  # A catalog this small gets no tree: ScaNN scores every movie.
  assert ann["scann"]["num_leaves"] is None
  assert ann["recall_at_100"] >= 0.95
  e2e = bench_serving.end_to_end(
      1, num_users=30, num_movies=300, model_config=SMALL, num_candidates=50,
      k=5, requests=20, warmup=2, batch_size=8, batches=1,
      work_dir=str(tmp_path),
      history=bench_serving.synthetic_history(30, 300))
  assert e2e["excludes_rated"] and e2e["history_ratings"] >= 30 * 10
  assert e2e["export_bytes"] > 0
  assert e2e["model"]["ncf_embedding_dim"] == 4 and e2e["model"]["ncf_bias"]
  assert len(e2e["single_latencies_ms"]) == 20
  latencies = sorted(e2e["single_latencies_ms"])
  assert latencies[0] <= e2e["single_p50_ms"] <= latencies[-1]
  assert e2e["batched_users_per_s"] > 0

  doc = {"repeats": 1, "targets": {"single_p50_ms": 3}, "ann": [ann],
         "end_to_end": e2e}
  text, missing = serving_report.render_serving(doc, {}, str(tmp_path), "##")
  assert not missing
  assert ("30-user × 300-movie model (retrieval dim 8, NCF dim 4, MLP 8-4)"
          in text)
  assert serving_report.plot_latency(doc, str(tmp_path / "latency.png"))
  assert (tmp_path / "latency.png").stat().st_size > 0
