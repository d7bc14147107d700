//! The private Prometheus of the harness: it scrapes its targets and evaluates its
//! rule files, so tests can query what a real Prometheus would hold.

use std::time::{Duration, Instant};

use outrider_harness::prometheus::{Prometheus, PrometheusSpec, Target, free_port};

const RULES: &str = r#"groups:
  - name: harness
    rules:
      - record: harness:scrapes_up:sum
        expr: sum(up{job="self"}) * 42
      - alert: HarnessAlwaysFiring
        expr: vector(1)
        labels: {severity: info}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_scrapes_its_targets_and_evaluates_its_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    // Prometheus scraping itself: the port is known before it starts.
    let port = free_port().unwrap();
    let prometheus = Prometheus::start(PrometheusSpec {
        targets: vec![Target::new(
            "self",
            format!("127.0.0.1:{port}").parse().unwrap(),
            "/metrics",
        )],
        rule_files: vec![rules],
        port: Some(port),
    })
    .await
    .unwrap();
    prometheus
        .wait_scraped("self", Duration::from_secs(15))
        .await
        .unwrap();
    let up = prometheus.query(r#"up{job="self"}"#).await.unwrap();
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].value, 1.0);
    assert_eq!(up[0].labels["instance"], format!("127.0.0.1:{port}"));

    // Rules are evaluated every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let recorded = prometheus.query("harness:scrapes_up:sum").await.unwrap();
        let alerts = prometheus
            .query(r#"ALERTS{alertname="HarnessAlwaysFiring",alertstate="firing"}"#)
            .await
            .unwrap();
        if recorded.first().map(|s| s.value) == Some(42.0) && alerts.len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not evaluated: {recorded:?} {alerts:?}\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = prometheus.query("sum(").await.unwrap_err().to_string();
    assert!(refused.contains("bad_data"), "{refused}");
}
