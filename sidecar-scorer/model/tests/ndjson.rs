//! The NDJSON scoring stream: one answer line per transaction, in order, bad
//! lines answered with their error; and back-pressure: a client that stops
//! reading stops the server from reading.

mod support;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use outrider_model::onnx::OnnxModel;
use outrider_model::train;
use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transaction_line_gets_its_score_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;
    let http = Http::new(server.http_addr);

    let data = transactions(500, 21);
    let mut lines: Vec<String> = data
        .iter()
        .map(|t| serde_json::to_string(t).unwrap())
        .collect();
    // Bad lines among the good, a blank line, and a row given as an array.
    lines.insert(10, "not json".into());
    let mut missing = serde_json::to_value(&data[0]).unwrap();
    missing.as_object_mut().unwrap().remove("amount");
    lines.insert(20, missing.to_string());
    let mut text_amount = serde_json::to_value(&data[0]).unwrap();
    text_amount["amount"] = json!("a lot");
    lines.insert(30, text_amount.to_string());
    lines.insert(40, String::new());
    lines.push(json!(data[1].features()).to_string());
    let body = lines.join("\n");

    let reply = http
        .send(
            hyper::Method::POST,
            "/v2/models/fraud/score",
            &[("content-type", "application/x-ndjson".into())],
            Bytes::from(body),
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/x-ndjson");
    let answers: Vec<Value> = String::from_utf8(reply.body.to_vec())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), 500 + 3 + 1, "one answer per non-blank line");
    let numbers: Vec<u64> = answers
        .iter()
        .map(|a| a["line"].as_u64().unwrap())
        .collect();
    let expected_numbers: Vec<u64> = (1..=lines.len() as u64).filter(|&n| n != 41).collect();
    assert_eq!(numbers, expected_numbers);
    assert_eq!(
        answers[10]["error"].as_str().unwrap().split(':').next(),
        Some("line")
    );
    assert_eq!(answers[20]["error"], "amount: is missing");
    assert_eq!(answers[30]["error"], "amount: `a lot` is not a number");

    let model = OnnxModel::from_bytes(&trained().onnx).unwrap();
    let refs: Vec<_> = data.iter().collect();
    let expected = train::score(&model, &refs).unwrap();
    let good: Vec<&Value> = answers
        .iter()
        .filter(|a| a.get("score").is_some())
        .collect();
    assert_eq!(good.len(), 501);
    for (i, answer) in good[..500].iter().enumerate() {
        assert_eq!(answer["id"], json!(data[i].transaction_id));
        assert!((answer["score"].as_f64().unwrap() - expected[i]).abs() < 1e-6);
    }
    assert!((good[500]["score"].as_f64().unwrap() - expected[1]).abs() < 1e-6);
    server.shutdown().await;
}

/// A request body that writes lines as fast as it may, counting the bytes
/// the server accepted.
fn endless_lines(
    sent: Arc<AtomicU64>,
    stop_after: u64,
) -> StreamBody<BoxStream<'static, Result<Frame<Bytes>, Infallible>>> {
    let row = json!(rows_of(1, 1)[0]).to_string() + "\n";
    let chunk = Bytes::from(row.repeat(64 * 1024 / row.len()));
    let stream = futures::stream::unfold((), move |()| {
        let (sent, chunk) = (sent.clone(), chunk.clone());
        async move {
            if sent.load(Ordering::Relaxed) >= stop_after {
                return None;
            }
            sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            Some((Ok(Frame::data(chunk)), ()))
        }
    });
    StreamBody::new(stream.boxed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_stops_the_server_reading() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_trained(dir.path()).await;

    // 1 GB would take minutes to score; a stalled server never asks for it.
    let limit: u64 = 1 << 30;
    let sent = Arc::new(AtomicU64::new(0));
    let client =
        Client::builder(TokioExecutor::new()).build::<_, StreamBody<_>>(HttpConnector::new());
    let request =
        hyper::Request::post(format!("http://{}/v2/models/fraud/score", server.http_addr))
            .header("content-type", "application/x-ndjson")
            .body(endless_lines(sent.clone(), limit))
            .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("headers come back while the body is still being sent")
        .unwrap();
    assert_eq!(response.status(), 200);

    // Do not read. The sender must come to a halt well short of the limit.
    let mut last = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sender never stalled ({now} bytes)"
        );
        last = now;
    }
    assert!(
        last < 64 << 20,
        "the server read {last} bytes nobody was reading answers for"
    );

    // Read again: the stream resumes. Count answers until the sender has
    // sent twice as much as when it stalled, which proves it moved on.
    let mut body = response.into_body().into_data_stream();
    let mut answered = 0u64;
    let mut pending = Vec::new();
    while sent.load(Ordering::Relaxed) < 2 * last {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("answers keep coming")
            .expect("stream open")
            .unwrap();
        pending.extend_from_slice(&chunk);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let answer: Value = serde_json::from_slice(&line).unwrap();
            answered += 1;
            assert_eq!(
                answer["line"].as_u64(),
                Some(answered),
                "in order, none lost"
            );
            assert!(answer["score"].is_number(), "{answer}");
        }
    }
    assert!(answered > 0);
    // Dropping the server ends the still-open stream.
    drop(body);
    drop(server);
}
