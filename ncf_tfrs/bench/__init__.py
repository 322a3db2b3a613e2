"""Benchmarks, each against its baseline in the same run, and their report.

- `data`: MovieLens to training batches, against the notebook's pipeline;
- `train`: the product's train command against the notebook's recipe
  (`baseline`) and the TFRS tutorial's, plus interleaved throughput windows;
- `serving`: ScaNN against exact search, and end-to-end recommend latency;
- `distribute`: training ratings/s per tf.distribute strategy;
- `process`: fresh processes per stage, so each peak RSS is its own;
- `report`: tables and plots from the suites' JSON.

`python -m ncf_tfrs.bench` runs a suite; `python -m ncf_tfrs.report` renders.
"""
