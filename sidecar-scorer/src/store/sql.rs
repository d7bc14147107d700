//! The SQL both backends run: fixed statements with `$n` placeholders (both databases
//! take them), the generated multi-row statements in either placeholder style, and the
//! conversion of counts to and from rows.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use outrider_protocol::{
    ClosedSet, LATENCY_SLOTS, SCORE_DIFF_SLOTS, ShadowCounts, ShadowSkip, VariantCounts,
};

use crate::experiment::Unit;

/// Rows per multi-row INSERT: few statements, and well under both databases' limits
/// on bound parameters (SQLite 32,766; PostgreSQL 65,535).
pub const INSERT_CHUNK: usize = 1_000;

pub const INSERT_ROLLOUT: &str = "INSERT INTO rollouts (name, version, body, updated_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING";
pub const UPDATE_ROLLOUT: &str =
    "UPDATE rollouts SET version = $1, body = $2, updated_ms = $3 WHERE name = $4 AND version = $5";
pub const INSERT_EVENT: &str = "INSERT INTO rollout_events (rollout, version, kind, actor, reason, at_ms, details) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const SELECT_ROLLOUT: &str = "SELECT body FROM rollouts WHERE name = $1";
pub const SELECT_ROLLOUTS: &str = "SELECT body FROM rollouts ORDER BY name";
pub const SELECT_EVENTS: &str = "SELECT rollout, version, kind, actor, reason, at_ms, details FROM rollout_events \
     WHERE rollout = $1 ORDER BY version";
pub const SELECT_LAST_EVENT: &str = "SELECT rollout, version, kind, actor, reason, at_ms, details FROM rollout_events \
     WHERE rollout = $1 ORDER BY version DESC LIMIT 1";
pub const INSERT_BATCH: &str = "INSERT INTO telemetry_batches (batch_id, rollout, proxy, received_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (batch_id) DO NOTHING";
/// A worker's telemetry is complete through the end of the newest batch applied
/// (batches arrive in order; a resent old one never moves the mark back).
pub const UPSERT_WORKER: &str = "INSERT INTO telemetry_workers (rollout, proxy, worker, complete_through_ms, last_seen_ms) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rollout, proxy, worker) DO UPDATE SET \
     complete_through_ms = CASE WHEN excluded.complete_through_ms > telemetry_workers.complete_through_ms \
     THEN excluded.complete_through_ms ELSE telemetry_workers.complete_through_ms END, \
     last_seen_ms = excluded.last_seen_ms";
pub const SELECT_WORKERS: &str = "SELECT proxy, worker, complete_through_ms, last_seen_ms FROM telemetry_workers \
     WHERE rollout = $1 ORDER BY proxy, worker";
pub const INSERT_RUN: &str = "INSERT INTO analysis_runs (rollout, end_ms, start_ms, step, outcome, body) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (rollout, end_ms) DO NOTHING";
pub const SELECT_RUNS: &str = "SELECT body FROM (SELECT body, end_ms FROM analysis_runs WHERE rollout = $1 \
     ORDER BY end_ms DESC LIMIT $2) newest ORDER BY end_ms";
pub const INSERT_EXPERIMENT_RUN: &str = "INSERT INTO experiment_runs (rollout, end_ms, start_ms, verdict, body) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (rollout, end_ms) DO NOTHING";
pub const SELECT_EXPERIMENT_RUNS: &str = "SELECT body FROM (SELECT body, end_ms FROM experiment_runs WHERE rollout = $1 \
     ORDER BY end_ms DESC LIMIT $2) newest ORDER BY end_ms";
pub const SELECT_SCORES: &str = "SELECT variant, score FROM samples \
     WHERE rollout = $1 AND at_ms >= $2 AND at_ms < $3 AND score IS NOT NULL";
pub const UPSERT_ALERT: &str = "INSERT INTO alerts (fingerprint, starts_ms, rollout, name, status, ends_ms, body) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint, starts_ms) DO UPDATE SET \
     status = excluded.status, ends_ms = excluded.ends_ms, body = excluded.body";
pub const SELECT_ALERTS: &str = "SELECT body FROM (SELECT body, starts_ms FROM alerts \
     ORDER BY starts_ms DESC LIMIT $1) newest ORDER BY starts_ms";
pub const SELECT_FIRING: &str =
    "SELECT body FROM alerts WHERE status = 'firing' ORDER BY starts_ms";
pub const COUNT_FEEDBACK: &str = "SELECT COUNT(*) FROM feedback";
pub const COUNT_FEEDBACK_ROLLOUT: &str = "SELECT COUNT(*) FROM feedback WHERE rollout = $1";
pub const COUNT_SAMPLES: &str = "SELECT COUNT(*) FROM samples WHERE rollout = $1";
pub const SELECT_SAMPLES: &str = "SELECT variant, at_ms, request_id, user_key, features, score FROM samples \
     WHERE rollout = $1 ORDER BY id DESC LIMIT $2";
// Model monitoring (migration 0008).
macro_rules! monitored {
    ($tail:literal) => {
        concat!(
            "SELECT id, at_ms, features, score FROM samples WHERE rollout = $1 AND variant = $2",
            $tail
        )
    };
}
macro_rules! labelled {
    ($tail:literal) => {
        concat!(
            "SELECT s.at_ms, s.score, l.label FROM samples s JOIN sample_labels l ON l.sample_id = s.id ",
            "WHERE s.rollout = $1 AND s.variant = $2 AND s.score IS NOT NULL",
            $tail
        )
    };
}
pub const SELECT_MONITORED_TIME: &str = monitored!(" AND at_ms >= $3 AND at_ms < $4 ORDER BY id");
pub const SELECT_MONITORED_AFTER: &str = monitored!(" AND id > $3 ORDER BY id LIMIT $4");
pub const SELECT_MONITORED_THROUGH: &str = monitored!(" AND id <= $3 ORDER BY id DESC LIMIT $4");
pub const SELECT_NEXT_SAMPLE_MS: &str = "SELECT at_ms FROM samples WHERE rollout = $1 AND variant = $2 \
     AND at_ms >= $3 ORDER BY at_ms LIMIT 1";
pub const SELECT_LABELLED_TIME: &str = labelled!(" AND s.at_ms >= $3 AND s.at_ms < $4");
pub const SELECT_LABELLED_IDS: &str = labelled!(" AND s.id > $3 AND s.id <= $4");
pub const SELECT_CURSOR: &str = "SELECT position FROM monitor_cursors WHERE name = $1";
pub const UPSERT_CURSOR: &str = "INSERT INTO monitor_cursors (name, position) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET position = excluded.position";
pub const SELECT_FEEDBACK_AFTER: &str = "SELECT id, request_id, user_key, label, observed_ms, received_ms FROM feedback \
     WHERE id > $1 ORDER BY id LIMIT $2";
pub const SELECT_SAMPLES_BY_REQUEST: &str = "SELECT id FROM samples WHERE request_id = $1";
pub const SELECT_SAMPLES_BY_USER: &str = "SELECT id FROM samples WHERE user_key = $1";
pub const UPSERT_LABEL: &str = "INSERT INTO sample_labels (sample_id, label, observed_ms) VALUES ($1, $2, $3) \
     ON CONFLICT (sample_id) DO UPDATE SET label = excluded.label, observed_ms = excluded.observed_ms";
pub const INSERT_DRIFT_WINDOW: &str = "INSERT INTO drift_windows (model, version, end_key, start_key, judged_ms, body) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (model, version, end_key) DO NOTHING";
pub const SELECT_DRIFT_WINDOWS: &str = "SELECT body FROM (SELECT body, end_key FROM drift_windows \
     WHERE model = $1 AND version = $2 ORDER BY end_key DESC LIMIT $3) newest ORDER BY end_key";
pub const SELECT_LATEST_DRIFT_WINDOWS: &str = "SELECT body FROM drift_windows d WHERE end_key = \
     (SELECT MAX(end_key) FROM drift_windows m WHERE m.model = d.model AND m.version = d.version) \
     ORDER BY model, version";
pub const SELECT_MODEL_VERSIONS: &str =
    "SELECT DISTINCT version FROM drift_windows WHERE model = $1 ORDER BY version";
pub const INSERT_MODEL_EVENT: &str =
    "INSERT INTO model_events (model, version, kind, at_ms, body) VALUES ($1, $2, $3, $4, $5)";
pub const SELECT_MODEL_EVENTS: &str =
    "SELECT id, body FROM model_events WHERE id > $1 ORDER BY id LIMIT $2";
pub const UPSERT_REALISED: &str = "INSERT INTO model_performance (model, version, evaluated_ms, body) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (model, version) DO UPDATE SET evaluated_ms = excluded.evaluated_ms, body = excluded.body";
pub const SELECT_REALISED: &str = "SELECT body FROM model_performance ORDER BY model, version";

pub const TAKE_LEASE: &str = "INSERT INTO leases (name, holder, expires_ms) VALUES ('controller', $1, $2) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms \
     WHERE leases.holder = excluded.holder OR leases.expires_ms < $3";
pub const RELEASE_LEASE: &str = "DELETE FROM leases WHERE name = 'controller' AND holder = $1";

/// Feedback received this long before an experiment started is about none of its
/// exposures; the margin is for the clocks of filters and feedback sources, which
/// may disagree.
pub const FEEDBACK_MARGIN_MS: u64 = 10 * 60 * 1000;

/// Per-variant sums of an experiment's exposures and their feedback: `$1` the rollout,
/// `$2 <= at_ms < $3` the exposures, `$4` the oldest `received_ms` of feedback read
/// (an index keeps that a range, not the whole log). An exposure is the first sample
/// of its key; its conversion is its latest label (by `observed_ms`, then arrival)
/// being positive, its value the sum of its feedback values. By user, only feedback
/// observed from the user's first exposure on counts.
pub fn select_exposure_sums(unit: Unit) -> &'static str {
    static BY_REQUEST: OnceLock<String> = OnceLock::new();
    static BY_USER: OnceLock<String> = OnceLock::new();
    let (cell, key, after) = match unit {
        Unit::Request => (&BY_REQUEST, "request_id", ""),
        Unit::User => (&BY_USER, "user_key", " AND f.observed_ms >= e.at_ms"),
    };
    cell.get_or_init(|| {
        format!(
            "WITH ranked AS (SELECT {key} AS k, variant, at_ms, \
               ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY at_ms, id) AS nth FROM samples \
               WHERE rollout = $1 AND at_ms >= $2 AND at_ms < $3 AND {key} IS NOT NULL), \
             exposure AS (SELECT k, variant, at_ms FROM ranked WHERE nth = 1), \
             fb AS (SELECT id, {key} AS k, label, value, observed_ms FROM feedback \
               WHERE received_ms >= $4 AND {key} IS NOT NULL AND (rollout IS NULL OR rollout = $1)), \
             matched AS (SELECT e.k, f.label, f.value, \
               ROW_NUMBER() OVER (PARTITION BY e.k ORDER BY f.observed_ms DESC, f.id DESC) AS nth \
               FROM exposure e JOIN fb f ON f.k = e.k{after}), \
             outcome AS (SELECT k, MAX(CASE WHEN nth = 1 THEN label END) AS label, \
               SUM(COALESCE(value, 0.0)) AS value FROM matched GROUP BY k) \
             SELECT e.variant, COUNT(*) AS exposures, \
               SUM(CASE WHEN o.label > 0 THEN 1 ELSE 0 END) AS conversions, \
               COALESCE(SUM(o.value), 0.0) AS value_sum, \
               COALESCE(SUM(o.value * o.value), 0.0) AS value_sum_sq \
             FROM exposure e LEFT JOIN outcome o ON o.k = e.k \
             GROUP BY e.variant ORDER BY e.variant"
        )
    })
}

/// The columns of `variant_windows` that hold counts, in the order they are bound.
pub fn window_count_columns() -> Vec<String> {
    let mut columns: Vec<String> = [
        "requests",
        "rs_2xx",
        "rs_3xx",
        "rs_4xx",
        "rs_5xx",
        "grpc_errors",
        "latency_sum_ms",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    columns.extend((0..LATENCY_SLOTS).map(|i| format!("l{i:02}")));
    columns
}

/// The columns of `shadow_windows` that hold counts, in the order of [`shadow_values`].
pub fn shadow_columns() -> Vec<String> {
    let mut columns: Vec<String> = [
        "mirrored",
        "completed",
        "errors",
        "timeouts",
        "compared",
        "no_prediction_primary",
        "no_prediction_shadow",
        "c00",
        "c01",
        "c10",
        "c11",
        "latency_delta_sum_ms",
    ]
    .iter()
    .map(|c| (*c).to_owned())
    .collect();
    columns.extend(ShadowSkip::names().map(|r| format!("skip_{r}")));
    columns.extend((0..SCORE_DIFF_SLOTS).map(|i| format!("d{i:02}")));
    columns.extend((0..LATENCY_SLOTS).map(|i| format!("s{i:02}")));
    columns.extend((0..LATENCY_SLOTS).map(|i| format!("p{i:02}")));
    columns
}

fn slots(values: &[u64], n: usize) -> impl Iterator<Item = i64> + '_ {
    (0..n).map(move |i| db_int(values.get(i).copied().unwrap_or(0)))
}

/// A shadow's counts as the row values of [`shadow_columns`].
pub fn shadow_values(s: &ShadowCounts) -> Vec<i64> {
    let [[c00, c01], [c10, c11]] = s.confusion;
    let mut values: Vec<i64> = [
        s.mirrored,
        s.completed,
        s.errors,
        s.timeouts,
        s.compared,
        s.no_prediction_primary,
        s.no_prediction_shadow,
        c00,
        c01,
        c10,
        c11,
    ]
    .into_iter()
    .map(db_int)
    .collect();
    values.push(s.latency_delta_sum_ms);
    values.extend(
        ShadowSkip::ALL
            .iter()
            .map(|r| db_int(s.skipped.get(r).copied().unwrap_or(0))),
    );
    values.extend(slots(&s.score_diff, SCORE_DIFF_SLOTS));
    values.extend(slots(&s.shadow_latency_ms, LATENCY_SLOTS));
    values.extend(slots(&s.primary_latency_ms, LATENCY_SLOTS));
    values
}

/// The inverse of [`shadow_values`].
pub fn shadow_from_values(variant: String, values: &[i64]) -> ShadowCounts {
    let mut it = values.iter().copied();
    let mut take = |n: usize| -> Vec<i64> { (0..n).map(|_| it.next().unwrap_or(0)).collect() };
    let counts = |v: Vec<i64>| -> Vec<u64> { v.into_iter().map(from_db_int).collect() };
    let head = counts(take(11));
    let at = |i: usize| head.get(i).copied().unwrap_or(0);
    let delta = take(1).first().copied().unwrap_or(0);
    let skips = counts(take(ShadowSkip::ALL.len()));
    ShadowCounts {
        variant,
        mirrored: at(0),
        completed: at(1),
        errors: at(2),
        timeouts: at(3),
        compared: at(4),
        no_prediction_primary: at(5),
        no_prediction_shadow: at(6),
        confusion: [[at(7), at(8)], [at(9), at(10)]],
        latency_delta_sum_ms: delta,
        skipped: ShadowSkip::ALL
            .iter()
            .zip(skips)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| (*r, n))
            .collect(),
        score_diff: counts(take(SCORE_DIFF_SLOTS)),
        shadow_latency_ms: counts(take(LATENCY_SLOTS)),
        primary_latency_ms: counts(take(LATENCY_SLOTS)),
    }
}

/// Adds a shadow's counts into its window, creating the row if needed.
pub fn upsert_shadow() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let columns = shadow_columns();
        let placeholders: Vec<String> = (0..columns.len()).map(|i| format!("${}", i + 4)).collect();
        let sums: Vec<String> = columns.iter().map(|c| format!("{c} = shadow_windows.{c} + excluded.{c}")).collect();
        format!(
            "INSERT INTO shadow_windows (rollout, variant, window_start_ms, {}) VALUES ($1, $2, $3, {}) \
             ON CONFLICT (rollout, variant, window_start_ms) DO UPDATE SET {}",
            columns.join(", "),
            placeholders.join(", "),
            sums.join(", ")
        )
    })
}

pub fn select_shadows() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT variant, window_start_ms, {} FROM shadow_windows \
             WHERE rollout = $1 AND window_start_ms >= $2 AND window_start_ms < $3 \
             ORDER BY window_start_ms, variant",
            shadow_columns().join(", ")
        )
    })
}

/// Adds the counts of `rows` variants into their windows, creating rows as needed.
pub fn upsert_windows(style: Placeholders, rows: usize) -> String {
    static PARTS: OnceLock<(String, String, usize)> = OnceLock::new();
    let (head, tail, width) = PARTS.get_or_init(|| {
        let columns = window_count_columns();
        let sums: Vec<String> = columns
            .iter()
            .map(|c| format!("{c} = variant_windows.{c} + excluded.{c}"))
            .collect();
        (
            format!(
                "INSERT INTO variant_windows (rollout, variant, window_start_ms, {}) VALUES ",
                columns.join(", ")
            ),
            format!(
                " ON CONFLICT (rollout, variant, window_start_ms) DO UPDATE SET {}",
                sums.join(", ")
            ),
            columns.len() + 3,
        )
    });
    format!("{head}{}{tail}", values_list(style, rows, *width))
}

/// A batch's counts, one per variant (a variant listed twice is summed), in name
/// order. PostgreSQL refuses to change a row twice in one statement; and rows changed
/// in one order keep concurrent batches from deadlocking (filters list variants in
/// their configuration's order).
pub fn by_variant(variants: &[VariantCounts]) -> Vec<VariantCounts> {
    let mut out: BTreeMap<&str, VariantCounts> = BTreeMap::new();
    for v in variants {
        let Some(sum) = out.get_mut(v.variant.as_str()) else {
            out.insert(&v.variant, v.clone());
            continue;
        };
        sum.requests += v.requests;
        sum.responses.success += v.responses.success;
        sum.responses.redirect += v.responses.redirect;
        sum.responses.client_error += v.responses.client_error;
        sum.responses.server_error += v.responses.server_error;
        sum.grpc_errors += v.grpc_errors;
        sum.latency_sum_ms += v.latency_sum_ms;
        for (a, b) in sum.latency_ms.iter_mut().zip(&v.latency_ms) {
            *a += b;
        }
    }
    out.into_values().collect()
}

/// Inserts `rows` samples.
pub fn insert_samples(style: Placeholders, rows: usize) -> String {
    format!(
        "INSERT INTO samples (rollout, variant, at_ms, request_id, user_key, features, score) VALUES {}",
        values_list(style, rows, 7)
    )
}

/// Inserts `rows` feedback events; an event whose id is stored already is skipped.
pub fn insert_feedback(style: Placeholders, rows: usize) -> String {
    format!(
        "INSERT INTO feedback (event_id, rollout, request_id, user_key, label, value, observed_ms, received_ms) \
         VALUES {} ON CONFLICT (event_id) DO NOTHING",
        values_list(style, rows, 8)
    )
}

pub fn select_windows() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT variant, window_start_ms, {} FROM variant_windows \
             WHERE rollout = $1 AND window_start_ms >= $2 AND window_start_ms < $3 \
             ORDER BY window_start_ms, variant",
            window_count_columns().join(", ")
        )
    })
}

/// How a backend's generated multi-row statements spell bound parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholders {
    /// `$1, $2, ...`: PostgreSQL.
    Numbered,
    /// `?, ?, ...`: SQLite finds a named parameter (`$1` is one) by a linear scan of
    /// the statement's names, once per bound value, so binding thousands of `$n`
    /// takes quadratic time; plain `?` are bound by position.
    Anonymous,
}

/// The placeholders of `rows` rows of `columns` values each, for a multi-row INSERT:
/// `($1, $2), ($3, $4)` or `(?, ?), (?, ?)`.
pub fn values_list(style: Placeholders, rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for c in 0..columns {
            if c > 0 {
                out.push_str(", ");
            }
            match style {
                Placeholders::Numbered => {
                    out.push('$');
                    out.push_str(&(r * columns + c + 1).to_string());
                }
                Placeholders::Anonymous => out.push('?'),
            }
        }
        out.push(')');
    }
    out
}

/// Milliseconds as a database integer (both backends store signed 64-bit).
pub fn db_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub fn from_db_int(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_rows_round_trip() {
        let mut s = ShadowCounts {
            variant: "v3".into(),
            mirrored: 10,
            completed: 9,
            errors: 1,
            timeouts: 0,
            compared: 8,
            no_prediction_primary: 0,
            no_prediction_shadow: 1,
            confusion: [[5, 1], [0, 2]],
            latency_delta_sum_ms: -40,
            score_diff: (0..SCORE_DIFF_SLOTS as u64).collect(),
            shadow_latency_ms: (0..LATENCY_SLOTS as u64).collect(),
            primary_latency_ms: (0..LATENCY_SLOTS as u64).rev().collect(),
            ..ShadowCounts::default()
        };
        s.skipped.insert(ShadowSkip::InFlightCap, 3);
        let values = shadow_values(&s);
        assert_eq!(values.len(), shadow_columns().len());
        assert_eq!(shadow_from_values("v3".into(), &values), s);
        assert!(upsert_shadow().contains("p22 = shadow_windows.p22 + excluded.p22"));
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            values_list(Placeholders::Numbered, 2, 2),
            "($1, $2), ($3, $4)"
        );
        assert_eq!(values_list(Placeholders::Anonymous, 2, 2), "(?, ?), (?, ?)");
        let two = upsert_windows(Placeholders::Numbered, 2);
        assert!(two.contains("l22 = variant_windows.l22 + excluded.l22"));
        assert!(two.contains("$66"));
        assert!(!two.contains("$67"));
        assert_eq!(
            upsert_windows(Placeholders::Anonymous, 3)
                .matches('?')
                .count(),
            99
        );
    }

    #[test]
    fn one_row_per_variant_in_name_order() {
        let counts = |variant: &str, requests: u64| VariantCounts {
            variant: variant.to_owned(),
            requests,
            latency_ms: vec![requests; LATENCY_SLOTS],
            ..VariantCounts::default()
        };
        let rows = by_variant(&[
            counts("stable", 5),
            counts("canary", 1),
            counts("stable", 2),
        ]);
        let summary: Vec<(&str, u64, u64)> = rows
            .iter()
            .map(|r| (r.variant.as_str(), r.requests, r.latency_ms[7]))
            .collect();
        assert_eq!(summary, [("canary", 1, 1), ("stable", 7, 7)]);
    }
}
