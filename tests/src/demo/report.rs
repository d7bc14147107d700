//! The demo's report: one self-contained HTML file (inline CSS and SVG) drawn from what
//! the run read from Envoy's stats and the scorer's API.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::Run;

const COLOURS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

type Series = (String, Vec<(f64, f64)>);

/// A line chart over the run's seconds, with the phases marked.
fn chart(series: &[Series], y_label: &str, phases: &[(f64, String)], t_max: f64) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 260.0, 60.0, 160.0, 20.0, 40.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let mut y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite())
        .fold(0.0_f64, f64::max);
    if y_max <= 0.0 {
        y_max = 1.0;
    }
    y_max *= 1.05;
    let t_max = t_max.max(1.0);
    let x = |t: f64| left + plot_w * (t / t_max).clamp(0.0, 1.0);
    let y = |v: f64| top + plot_h * (1.0 - (v / y_max).clamp(0.0, 1.0));
    let mut svg = format!(
        r#"<svg viewBox="0 0 {w} {h}" width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg" class="chart">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for i in 0..=4 {
        let v = y_max * f64::from(i) / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#eee"/><text x="{}" y="{}" class="tick" text-anchor="end">{}</text>"##,
            left + plot_w,
            left - 4.0,
            y(v) + 4.0,
            fmt_tick(v),
            y = y(v)
        );
    }
    for (t, name) in phases {
        let xp = x(*t);
        let _ = write!(
            svg,
            r##"<line x1="{xp}" x2="{xp}" y1="{top}" y2="{}" stroke="#999" stroke-dasharray="3,3"/><text x="{}" y="{}" class="phase">{}</text>"##,
            top + plot_h,
            xp + 2.0,
            top + 10.0,
            esc(name),
        );
    }
    let steps = 6;
    for i in 0..=steps {
        let t = t_max * f64::from(i) / f64::from(steps);
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" class="tick" text-anchor="middle">{:.0}s</text>"#,
            x(t),
            top + plot_h + 15.0,
            t
        );
    }
    let _ = write!(
        svg,
        r#"<text x="12" y="{}" class="axis" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        top + plot_h / 2.0,
        top + plot_h / 2.0,
        esc(y_label)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        if path.len() == 1 {
            let _ = write!(
                svg,
                r#"<circle cx="{}" r="3" fill="{colour}"/>"#,
                path[0].replace(',', "\" cy=\"")
            );
        } else if !path.is_empty() {
            let _ = write!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{}"/>"#,
                path.join(" ")
            );
        }
        let ly = top + 12.0 + 16.0 * i as f64;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="4" fill="{colour}"/><text x="{}" y="{}" class="legend">{}</text>"#,
            left + plot_w + 10.0,
            ly - 4.0,
            left + plot_w + 26.0,
            ly + 1.0,
            esc(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Per variant, the change of a counter between readings, as a function of the time.
fn per_interval(
    run: &Run,
    f: impl Fn(u64, u64, u64, u64) -> Option<f64>,
    which: fn(&super::view::VariantPoint) -> (u64, u64),
) -> Vec<Series> {
    let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for pair in run.points.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        for (name, v) in &b.variants {
            let (num_b, den_b) = which(v);
            let (num_a, den_a) = a.variants.get(name).map_or((num_b, den_b), which);
            if let Some(value) = f(num_a, num_b, den_a, den_b) {
                out.entry(name.clone()).or_default().push((b.t, value));
            }
        }
    }
    out.into_iter().collect()
}

fn ms_to_t(run: &Run, ms: u64) -> f64 {
    // The points' clock starts when the traffic starts; the scorer's in ms since the epoch.
    let first = run.started_ms as f64 / 1000.0;
    ms as f64 / 1000.0 - first - run.offset()
}

impl Run {
    /// Seconds between the start of setup and the first reading.
    fn offset(&self) -> f64 {
        self.setup_seconds
    }
}

pub fn html(run: &Run) -> String {
    let t_max = run.points.last().map_or(1.0, |p| p.t);
    let phases = &run.phases;
    let mut body = String::new();

    // Summary.
    let _ = write!(
        body,
        r#"<section id="summary"><h2>Summary</h2><p class="{}">{}</p><ul>"#,
        if run.outcome.is_ok() { "ok" } else { "bad" },
        esc(&match &run.outcome {
            Ok(()) => "The run went through every phase.".to_owned(),
            Err(e) => format!("The run stopped early: {e}"),
        })
    );
    let _ = write!(
        body,
        "<li>v1 trained on {} generated transactions in {:.1} s (test ROC AUC {}, PR AUC {})</li>",
        run.settings.train_rows,
        run.trained_in,
        num(&run.v1_report["test"]["roc_auc"]),
        num(&run.v1_report["test"]["pr_auc"])
    );
    let _ = write!(
        body,
        "<li>traffic: {} requests/s, fraud rate {}, labels posted {} s after each request</li>",
        run.settings.rate, run.settings.fraud_rate, run.settings.label_delay_seconds
    );
    for fact in &run.facts {
        let _ = write!(body, "<li>{}</li>", esc(fact));
    }
    let _ = write!(
        body,
        "<li>phases: {}</li></ul>",
        esc(&phases
            .iter()
            .map(|(t, p)| format!("{p} at {t:.0}s"))
            .collect::<Vec<_>>()
            .join(", "))
    );
    body.push_str("</section>");

    // Traffic share, errors, latency.
    let share = {
        let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for pair in run.points.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let delta = |name: &str| {
                let now = b.variants.get(name).map_or(0, |v| v.requests);
                let before = a.variants.get(name).map_or(now, |v| v.requests);
                now.saturating_sub(before)
            };
            let total: u64 = b.variants.keys().map(|n| delta(n)).sum();
            if total == 0 {
                continue;
            }
            for name in b.variants.keys() {
                out.entry(name.clone())
                    .or_default()
                    .push((b.t, 100.0 * delta(name) as f64 / total as f64));
            }
        }
        out.into_iter().collect::<Vec<_>>()
    };
    let weights: Vec<Series> = {
        let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for p in &run.points {
            for (name, v) in &p.variants {
                out.entry(format!("{name} (weight)"))
                    .or_default()
                    .push((p.t, v.weight));
            }
        }
        out.into_iter().collect()
    };
    let errors = per_interval(
        run,
        |e0, e1, r0, r1| {
            let r = r1.saturating_sub(r0);
            (r > 0).then(|| 100.0 * e1.saturating_sub(e0) as f64 / r as f64)
        },
        |v| (v.errors_5xx, v.requests),
    );
    let latency: Vec<Series> = {
        let mut out: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for p in &run.points {
            for (name, v) in &p.variants {
                if let Some(ms) = v.p99_ms {
                    out.entry(name.clone()).or_default().push((p.t, ms));
                }
            }
        }
        out.into_iter().collect()
    };
    let _ = write!(
        body,
        r#"<section id="traffic"><h2>Traffic share per variant</h2><p>Share of the requests Envoy routed to each variant in each second (the filter's <code>outrider_rq_total</code>), and the weight the scorer's rollout gave it.</p>{}{}</section>"#,
        chart(&share, "% of requests", phases, t_max),
        chart(&weights, "weight %", phases, t_max)
    );
    let _ = write!(
        body,
        r#"<section id="errors"><h2>Error rate</h2><p>5xx answers per variant and second, as a share of its requests (Envoy's stats).</p>{}</section>"#,
        chart(&errors, "% 5xx", phases, t_max)
    );
    let _ = write!(
        body,
        r#"<section id="latency"><h2>Latency</h2><p>p99 of the upstream latency per variant over each stats flush (the filter's histogram in Envoy).</p>{}</section>"#,
        chart(&latency, "p99 ms", phases, t_max)
    );

    // Drift per feature, per version.
    let _ = write!(
        body,
        r#"<section id="drift"><h2>Drift per feature</h2><p>PSI of each feature in each 5-second window against the served version's reference profile (<code>GET /v1/models/fraud/drift</code>); a feature drifts at PSI 0.2 or more, the dataset when 20% of the judged features do, and a finding needs 2 of 3 windows.</p>"#
    );
    let drift_phases: Vec<(f64, String)> = phases.clone();
    for version in run.drift["versions"].as_array().into_iter().flatten() {
        let mut features: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut dataset = Vec::new();
        let mut findings = Vec::new();
        for w in version["windows"].as_array().into_iter().flatten() {
            let Some(end) = w["end"].as_u64() else {
                continue;
            };
            let t = ms_to_t(run, end);
            for f in w["features"].as_array().into_iter().flatten() {
                if let (Some(name), Some(psi)) =
                    (f["name"].as_str(), f["statistics"]["psi"].as_f64())
                {
                    features.entry(name.to_owned()).or_default().push((t, psi));
                }
            }
            if let Some(share) = w["dataset"]["share"].as_f64() {
                dataset.push((t, 100.0 * share));
            }
            for f in w["findings"].as_array().into_iter().flatten() {
                findings.push(format!(
                    "{:.0}s: {} {}",
                    t,
                    f["kind"].as_str().unwrap_or(""),
                    f["detail"].as_str().unwrap_or("")
                ));
            }
        }
        let series: Vec<Series> = features.into_iter().collect();
        let _ = write!(
            body,
            "<h3>v{} ({})</h3>{}{}",
            version["version"],
            esc(&served_by(&version["served_by"])),
            chart(&series, "PSI", &drift_phases, t_max),
            chart(
                &[("drifted features".to_owned(), dataset)],
                "% of features drifted",
                &drift_phases,
                t_max
            )
        );
        findings.dedup();
        if !findings.is_empty() {
            let _ = write!(
                body,
                "<details><summary>{} findings</summary><ul>",
                findings.len()
            );
            for f in findings.iter().take(60) {
                let _ = write!(body, "<li>{}</li>", esc(f));
            }
            body.push_str("</ul></details>");
        }
    }
    body.push_str("</section>");

    // Performance.
    let _ = write!(
        body,
        r#"<section id="performance"><h2>Estimated and realised performance</h2><p>Per window: recall and precision at the operating threshold estimated from the scores alone (CBPE), beside what the window's labelled samples realise once their labels arrive (<code>GET /v1/models/fraud/performance</code>).</p>"#
    );
    for version in run.performance["versions"].as_array().into_iter().flatten() {
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for w in version["windows"].as_array().into_iter().flatten() {
            let Some(end) = w["end"].as_u64() else {
                continue;
            };
            let t = ms_to_t(run, end);
            for metric in ["recall", "precision"] {
                let estimated = w["estimated"]["estimate"][metric]["value"].as_f64();
                if let Some(v) = estimated {
                    series
                        .entry(format!("{metric} estimated"))
                        .or_default()
                        .push((t, v));
                }
                if let Some(v) = w["realised"][metric]["value"].as_f64() {
                    series
                        .entry(format!("{metric} realised"))
                        .or_default()
                        .push((t, v));
                }
            }
        }
        let labelled = &version["labelled_window"];
        let _ = write!(
            body,
            "<h3>v{}</h3>{}<p>Labelled window: realised recall {} (95% {}–{}), precision {}, PR AUC {}; estimated recall {}; reference recall {}.</p>",
            version["version"],
            chart(
                &series.into_iter().collect::<Vec<_>>(),
                "value",
                phases,
                t_max
            ),
            num(&labelled["realised"]["recall"]["value"]),
            num(&labelled["realised"]["recall"]["low"]),
            num(&labelled["realised"]["recall"]["high"]),
            num(&labelled["realised"]["precision"]["value"]),
            num(&labelled["realised"]["pr_auc"]["value"]),
            num(&labelled["estimated"]["recall"]["value"]),
            num(&labelled["reference_recall"])
        );
    }
    body.push_str("</section>");

    // Retraining.
    body.push_str(r#"<section id="retraining"><h2>Retraining</h2>"#);
    for job in run.jobs["jobs"].as_array().into_iter().flatten() {
        let _ = write!(
            body,
            "<p>job {} <b>{}</b>, trigger <code>{}</code> ({}), version {}: {}</p>",
            job["id"],
            esc(job["status"].as_str().unwrap_or("")),
            esc(job["trigger"].as_str().unwrap_or("")),
            esc(job["reason"].as_str().unwrap_or("")),
            job["version"],
            esc(job["outcome"].as_str().unwrap_or(""))
        );
    }
    if let Some(job) = &run.job_detail {
        let _ = write!(
            body,
            "<details><summary>the first job's comparison and log</summary><pre>{}</pre><pre>{}</pre></details>",
            esc(&serde_json::to_string_pretty(&job["comparison"]).unwrap_or_default()),
            esc(job["log"].as_str().unwrap_or(""))
        );
    }
    body.push_str("</section>");

    // The canary analysis runs.
    let events: Vec<&Value> = run.events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    body.push_str(r#"<section id="analysis"><h2>Canary analysis runs</h2><p>Every run the scorer judged, with each check's figure and bound (the events' <code>details.analysis</code>).</p><table><tr><th>t</th><th>plan</th><th>decision</th><th>run</th><th>checks</th></tr>"#);
    for e in &events {
        let a = &e["details"]["analysis"];
        if a.is_null() {
            continue;
        }
        let checks: Vec<String> = a["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                format!(
                    "{} of {}: {}, {}",
                    c["name"].as_str().unwrap_or(""),
                    c["candidate"].as_str().unwrap_or(""),
                    c["outcome"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        let _ = write!(
            body,
            "<tr><td>{:.0}s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e["at_ms"].as_u64().map_or(0.0, |ms| ms_to_t(run, ms)),
            e["version"],
            esc(e["kind"].as_str().unwrap_or("")),
            esc(a["outcome"].as_str().unwrap_or("")),
            esc(&checks.join("; "))
        );
    }
    body.push_str("</table></section>");

    // The decision timeline.
    body.push_str(r#"<section id="timeline"><h2>Decision timeline</h2><p>Every change of rollout <code>fraud</code>, with who decided, why, and the evidence stored with it (<code>GET /v1/rollouts/fraud/events</code>).</p><table><tr><th>t</th><th>plan</th><th>kind</th><th>actor</th><th>reason</th><th>evidence</th></tr>"#);
    for e in &events {
        let details = &e["details"];
        let evidence = if details.is_null() {
            String::new()
        } else {
            format!(
                "<details><summary>{}</summary><pre>{}</pre></details>",
                esc(&details
                    .as_object()
                    .map(|o| o.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default()),
                esc(&serde_json::to_string_pretty(details).unwrap_or_default())
            )
        };
        let _ = write!(
            body,
            r#"<tr class="event {}"><td>{:.0}s</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(e["actor"].as_str().unwrap_or("")),
            e["at_ms"].as_u64().map_or(0.0, |ms| ms_to_t(run, ms)),
            e["version"],
            esc(e["kind"].as_str().unwrap_or("")),
            esc(e["actor"].as_str().unwrap_or("")),
            esc(e["reason"].as_str().unwrap_or("")),
            evidence
        );
    }
    body.push_str("</table></section>");

    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>outrider demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }}
h1 {{ font-size: 1.6em; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }}
.chart {{ display: block; margin: .5em 0; max-width: 100%; height: auto; }}
.tick, .legend {{ font-size: 11px; fill: #444; }} .axis {{ font-size: 12px; fill: #222; }}
.phase {{ font-size: 10px; fill: #777; }}
table {{ border-collapse: collapse; font-size: .85em; width: 100%; }}
td, th {{ border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; text-align: left; }}
pre {{ font-size: .8em; max-height: 30em; overflow: auto; background: #f6f6f6; padding: .5em; }}
.ok {{ color: #2a7a2a; font-weight: bold; }} .bad {{ color: #b00; font-weight: bold; }}
tr.guardrail {{ background: #fff0f0; }} tr.retraining {{ background: #f0f6ff; }} tr.analysis {{ background: #fbfbf0; }}
</style></head><body>
<h1>outrider demo: the fraud model's life, {} s</h1>
<p>Every figure below was read during the run from Envoy's stats and the scorer's API; the raw readings are in <code>points.json</code>, <code>events.json</code>, <code>drift.json</code>, <code>performance.json</code> and <code>jobs.json</code> beside this file. Times are seconds since the traffic started.</p>
{body}
</body></html>
"#,
        t_max.round()
    )
}

fn num(v: &Value) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.3}"),
        None => "-".to_owned(),
    }
}

/// The variants serving a version now, as words.
fn served_by(sources: &Value) -> String {
    let names: Vec<String> = sources
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{}/{}",
                s["rollout"].as_str().unwrap_or("?"),
                s["variant"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if names.is_empty() {
        "served by no variant at the end".to_owned()
    } else {
        format!("served by {} at the end", names.join(", "))
    }
}
