"""The scipy side of `make bench-stats`: the same exact computations on the
same data, timed the same way (best of 3). Prints one JSON object."""

import json
import sys
import time

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

path, n = sys.argv[1], int(sys.argv[2])
data = np.fromfile(path, dtype="<f8")
ref, cur = data[:n], data[n:2 * n]
ref_cat = np.fromfile(path + ".cat", dtype="<u1")
cur_cat = ref_cat[n:2 * n]
ref_cat = ref_cat[:n]


def best(fn):
    times = []
    for _ in range(3):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def psi_js():
    edges = np.quantile(ref, np.arange(1, 10) / 10)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10) / len(cur)
    rf, cf = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
    return float(np.sum((cf - rf) * np.log(cf / rf))), float(jensenshannon(r, c, base=2))


def chi2():
    cats = np.union1d(ref_cat, cur_cat)
    rc = np.array([np.count_nonzero(ref_cat == k) for k in cats])
    cc = np.array([np.count_nonzero(cur_cat == k) for k in cats])
    return stats.chi2_contingency(np.array([rc, cc]), correction=False)


out = {
    "ks": best(lambda: stats.ks_2samp(ref, cur)),
    "wasserstein": best(lambda: stats.wasserstein_distance(ref, cur)),
    "psi_js": best(psi_js),
    "mann_whitney": best(lambda: stats.mannwhitneyu(cur, ref, method="asymptotic")),
    "chi2": best(chi2),
    "check": {
        "ks_statistic": float(stats.ks_2samp(ref, cur).statistic),
        "ks_p_value": float(stats.ks_2samp(ref, cur).pvalue),
        "wasserstein": float(stats.wasserstein_distance(ref, cur)),
        "mann_whitney_p": float(stats.mannwhitneyu(cur, ref, method="asymptotic").pvalue),
        "chi2": float(chi2().statistic),
    },
}
print(json.dumps(out))
