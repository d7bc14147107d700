"""The onnxruntime side of `make bench-model`: the same ONNX model through
onnxruntime's Python API, on one core (one thread, pinned), measured the way
the Rust side measures outrider's server and batch scorer.

    ort_bench.py MODEL.onnx TRANSACTIONS.csv SCHEMA.json CPU

prints JSON: single-row and batch-64 latency (p50, p99) and throughput of
session.run in-process, and batch scoring rows/s both in memory and from the
CSV file to a CSV of scores (pandas for the file work).
"""

import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
import pandas as pd


def percentiles(samples_ns):
    a = np.asarray(samples_ns) / 1000.0
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99))}


def timed_calls(session, name, batches):
    samples = []
    start = time.perf_counter_ns()
    for x in batches:
        t = time.perf_counter_ns()
        session.run(None, {name: x})
        samples.append(time.perf_counter_ns() - t)
    elapsed = (time.perf_counter_ns() - start) / 1e9
    return samples, elapsed


def features(frame, schema):
    codes = {n: i for i, n in enumerate(schema["categories"]["merchant_category"])}
    columns = []
    for f in schema["features"]:
        if f == "merchant_category":
            columns.append(frame[f].map(codes).fillna(-1).to_numpy(np.float32))
        else:
            columns.append(frame[f].to_numpy(np.float32))
    return np.stack(columns, axis=1)


def main():
    model, csv_path, schema_path, cpu = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    os.sched_setaffinity(0, {cpu})
    with open(schema_path) as f:
        schema = json.load(f)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = features(pd.read_csv(csv_path, nrows=200_000), schema)

    out = {"onnxruntime": ort.__version__}
    singles = [x[i % len(x) : i % len(x) + 1] for i in range(20_000)]
    timed_calls(session, name, singles[:2_000])  # warm-up
    samples, elapsed = timed_calls(session, name, singles)
    out["single"] = {**percentiles(samples), "per_s": len(singles) / elapsed}
    starts = range(0, len(x) - 63, 64)
    batches = [x[starts[i % len(starts)] :][:64] for i in range(2_000)]
    samples, elapsed = timed_calls(session, name, batches)
    out["batch64"] = {**percentiles(samples), "rows_per_s": 64 * len(batches) / elapsed}

    # Batch scoring in memory: chunks of 4096 rows, as outrider's batch scorer runs them.
    start = time.perf_counter()
    for i in range(0, len(x), 4096):
        session.run(None, {name: x[i : i + 4096]})
    out["in_memory_rows_per_s"] = len(x) / (time.perf_counter() - start)

    # File to file: read the CSV, score, write line and score.
    start = time.perf_counter()
    frame = pd.read_csv(csv_path)
    matrix = features(frame, schema)
    scores = np.concatenate(
        [session.run(None, {name: matrix[i : i + 4096]})[0].reshape(-1) for i in range(0, len(matrix), 4096)]
    )
    target = csv_path + ".ort-scores.csv"
    pd.DataFrame({"transaction_id": frame["transaction_id"], "score": scores}).to_csv(target, index=False)
    out["csv_rows_per_s"] = len(frame) / (time.perf_counter() - start)
    os.remove(target)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
