"""Benchmarks (`invoke bench`, `invoke bench.report`): results, report.

``run.run_bench`` is the engine: ``clients`` (KServe v2 REST/gRPC, in-process OpenVINO and
TensorFlow), ``inputs`` (test-split images), ``known_answer``, ``scenarios`` (batch = Offline,
realtime = SingleStream), ``stats``, ``cpuinfo`` and ``results`` (JSON Schema, files, CSV).
``report`` turns the results into the Markdown table and chart.
"""
