//! Live traffic: generated transactions sent through Envoy at a steady rate, each with
//! its card as the sticky key and its own request id, and the outcome labels posted to
//! the scorer a few seconds later, as chargebacks would arrive.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use hyper::Method;
use outrider_harness::client::HttpClient;
use outrider_model::data::{Drift, GeneratorConfig, Transaction, generate};
use serde_json::{Value, json};

use super::Settings;

#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub labels_posted: AtomicU64,
    pub frauds_labelled: AtomicU64,
}

pub struct Traffic {
    pub drifted: Arc<AtomicBool>,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Transactions of the calm phase and of the drifted one.
pub fn rows(settings: &Settings) -> Result<(Vec<Transaction>, Vec<Transaction>)> {
    let config = |seed, drift| GeneratorConfig {
        rows: 20_000,
        seed,
        days: 40,
        fraud_rate: settings.fraud_rate,
        drift,
        ..GeneratorConfig::default()
    };
    let calm = generate(&config(7, Drift::default()))?;
    let drifted = generate(&config(
        8,
        Drift {
            amount_scale: settings.amount_scale,
            new_category_share: settings.new_category_share,
            ..Drift::default()
        },
    ))?;
    Ok((calm, drifted))
}

impl Traffic {
    pub fn start(
        url: String,
        feedback_url: String,
        token: String,
        settings: &Settings,
        calm: Vec<Transaction>,
        drifted_rows: Vec<Transaction>,
    ) -> Self {
        let drifted = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let labels: Arc<Mutex<VecDeque<(Instant, String, bool)>>> = Arc::default();
        let rate = settings.rate.max(1);
        let delay = Duration::from_secs(settings.label_delay_seconds);
        let sender = {
            let (drifted, counters, stop, labels) = (
                drifted.clone(),
                counters.clone(),
                stop.clone(),
                labels.clone(),
            );
            tokio::spawn(async move {
                let client = HttpClient::new();
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                let mut requests = tokio::task::JoinSet::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let rows = if drifted.load(Ordering::Relaxed) {
                        &drifted_rows
                    } else {
                        &calm
                    };
                    let row = &rows[i % rows.len()];
                    let data: Vec<Value> = row.features().iter().map(|v| json!(v)).collect();
                    let body = json!({"inputs": [{"name": "transaction", "datatype": "FP32",
                        "shape": [1, data.len()], "data": data}]});
                    let id = format!("tx-{i}");
                    let key = format!("card-{}", row.customer_id);
                    if let Ok(mut queue) = labels.lock() {
                        queue.push_back((Instant::now() + delay, id.clone(), row.fraud()));
                    }
                    i += 1;
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    let (client, url, counters) = (client.clone(), url.clone(), counters.clone());
                    requests.spawn(async move {
                        let reply = client
                            .request(
                                Method::POST,
                                &url,
                                &[
                                    ("x-user-id", &key),
                                    ("x-request-id", &id),
                                    ("content-type", "application/json"),
                                ],
                                Bytes::from(body.to_string()),
                            )
                            .await;
                        if !reply.is_ok_and(|r| r.status < 500) {
                            counters.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                    while requests.try_join_next().is_some() {}
                }
                while requests.join_next().await.is_some() {}
            })
        };
        let labeller = {
            let (counters, stop) = (counters.clone(), stop.clone());
            tokio::spawn(async move {
                let client = HttpClient::new();
                let auth = format!("Bearer {token}");
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let due: Vec<(String, bool)> = match labels.lock() {
                        Ok(mut queue) => {
                            let now = Instant::now();
                            let mut due = Vec::new();
                            while queue.front().is_some_and(|(at, _, _)| *at <= now) {
                                if let Some((_, id, fraud)) = queue.pop_front() {
                                    due.push((id, fraud));
                                }
                            }
                            due
                        }
                        Err(_) => return,
                    };
                    for chunk in due.chunks(1_000) {
                        let events: Vec<Value> = chunk
                            .iter()
                            .map(|(id, fraud)| {
                                json!({"request_id": id, "label": if *fraud { 1 } else { 0 }})
                            })
                            .collect();
                        let body = Bytes::from(json!({"events": events}).to_string());
                        let posted = client
                            .request(
                                Method::POST,
                                &feedback_url,
                                &[
                                    ("authorization", auth.as_str()),
                                    ("content-type", "application/json"),
                                ],
                                body,
                            )
                            .await;
                        if posted.is_ok_and(|r| r.status < 300) {
                            counters
                                .labels_posted
                                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                            counters.frauds_labelled.fetch_add(
                                chunk.iter().filter(|(_, f)| *f).count() as u64,
                                Ordering::Relaxed,
                            );
                        }
                    }
                }
            })
        };
        Self {
            drifted,
            counters,
            stop,
            tasks: vec![sender, labeller],
        }
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
