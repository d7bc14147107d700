"""Evidently's data-drift report on the windows the scorer's monitor judged, for
`make bench-drift`: the same reference rows and the same windows' samples, timed per
window in this process (the import, once, is reported apart).

    evidently_windows.py REFERENCE_CSV WINDOW_CSV...

Prints one JSON object: import seconds, and per window its rows, seconds and the
share of drifted columns Evidently reports.
"""

import json
import sys
import time

import pandas as pd

started = time.perf_counter()
from evidently import DataDefinition, Dataset, Report  # noqa: E402
from evidently.presets import DataDriftPreset  # noqa: E402

imported = time.perf_counter() - started

CATEGORICAL = ["merchant_category"]


def dataset(frame):
    numeric = [c for c in frame.columns if c not in CATEGORICAL]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=CATEGORICAL)
    return Dataset.from_pandas(frame, data_definition=definition)


reference = pd.read_csv(sys.argv[1])
reference["merchant_category"] = reference["merchant_category"].astype(int).astype(str)
reference_data = dataset(reference)
windows = []
for path in sys.argv[2:]:
    current = pd.read_csv(path)
    current["merchant_category"] = current["merchant_category"].astype(int).astype(str)
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(current_data=dataset(current), reference_data=reference_data)
    seconds = time.perf_counter() - t
    share = next(m["value"]["share"] for m in snapshot.dict()["metrics"] if m["metric_name"].startswith("DriftedColumnsCount"))
    windows.append({"rows": len(current), "seconds": seconds, "drifted_share": share})
print(json.dumps({"import_seconds": imported, "windows": windows}))
