//! `POST /v2/models/{name}/score`: an NDJSON stream of transactions in, one
//! line per transaction out (`{"line": 1, "score": 0.0123}`, or
//! `{"line": 2, "error": "..."}`), in order, while the request is still
//! being sent. Back-pressure: each chunk's answers wait in a small bounded
//! queue; when the client stops reading them, the server stops reading its
//! request, and TCP flow control slows the sender. A stream stays on the
//! model version it started with.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::model::LoadedModel;
use super::rest::error_response;
use super::rows::Score;
use super::state::ServerState;
use crate::error::Error;

/// Answer chunks queued before the server stops reading the request.
const QUEUE: usize = 4;
/// Longest accepted line.
pub const MAX_LINE: usize = 1 << 20;
/// Rows scored in one model run.
const MAX_BATCH: usize = 1024;

pub async fn score(
    State(state): State<ServerState>,
    Path(name): Path<String>,
    body: Body,
) -> Response {
    let model = match state.slot.get(&name, None) {
        Ok(m) => m,
        Err(e) => return error_response(&e),
    };
    if let Err(e) = model.rows() {
        return error_response(&e);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(QUEUE);
    tokio::spawn(pump(model, body, tx));
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    response
}

#[derive(Serialize)]
struct Line<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<Score>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Parsed lines waiting to be scored together.
#[derive(Default)]
struct Batch {
    /// (line number, id, error) per line, in order; `None` error: scored.
    lines: Vec<(u64, Option<Value>, Option<String>)>,
    values: Vec<f32>,
}

impl Batch {
    fn push_line(&mut self, model: &LoadedModel, number: u64, text: &[u8]) {
        let schema = model.rows.as_ref().expect("checked before streaming");
        let parsed = serde_json::from_slice::<Value>(text)
            .map_err(|e| Error::invalid("line", format!("not JSON: {e}")))
            .and_then(|row| {
                schema.push_json_row(&row, &mut self.values)?;
                Ok(row)
            });
        match parsed {
            Ok(row) => {
                let id = row.get("transaction_id").or_else(|| row.get("id")).cloned();
                self.lines.push((number, id, None));
            }
            Err(e) => self.lines.push((number, None, Some(e.to_string()))),
        }
    }

    /// Scores the batch and renders its answer lines.
    fn render(self, model: &LoadedModel) -> Bytes {
        let schema = model.rows.as_ref().expect("checked before streaming");
        let scored = if self.values.is_empty() {
            Ok(Vec::new())
        } else {
            schema
                .tensor(&self.values)
                .and_then(|t| model.onnx.run(vec![t]))
                .and_then(|out| schema.scores(&out))
        };
        let mut out = Vec::with_capacity(self.lines.len() * 40);
        let mut scores = scored.as_ref().ok().map(|s| s.iter());
        for (line, id, error) in &self.lines {
            let (score, error) = match (error, scores.as_mut()) {
                (Some(e), _) => (None, Some(e.clone())),
                (None, Some(s)) => (s.next().copied(), None),
                (None, None) => (None, scored.as_ref().err().map(ToString::to_string)),
            };
            let answer = Line {
                line: *line,
                id: id.as_ref(),
                score,
                error,
            };
            // Plain structs of numbers and strings always serialise.
            let _ = serde_json::to_writer(&mut out, &answer);
            out.push(b'\n');
        }
        Bytes::from(out)
    }
}

async fn pump(model: Arc<LoadedModel>, body: Body, tx: mpsc::Sender<Result<Bytes, Infallible>>) {
    let mut stream = body.into_data_stream();
    let mut pending = BytesMut::new();
    let mut number = 0u64;
    // Skipping the rest of a line that was too long.
    let mut skipping = false;
    loop {
        let chunk = stream.next().await;
        let done = chunk.is_none();
        match chunk {
            Some(Ok(bytes)) => pending.extend_from_slice(&bytes),
            Some(Err(e)) => {
                tracing::debug!("NDJSON request body failed: {e}");
                return;
            }
            None => {}
        }
        let mut batch = Batch::default();
        loop {
            let newline = pending.iter().position(|&b| b == b'\n');
            let line = match newline {
                Some(i) => pending.split_to(i + 1),
                None if done && !pending.is_empty() => pending.split(),
                None => break,
            };
            if skipping {
                skipping = false;
                continue;
            }
            number += 1;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            batch.push_line(&model, number, text);
            if batch.lines.len() >= MAX_BATCH {
                let full = std::mem::take(&mut batch);
                if tx.send(Ok(full.render(&model))).await.is_err() {
                    return;
                }
            }
        }
        if pending.len() > MAX_LINE {
            number += 1;
            batch.lines.push((
                number,
                None,
                Some(format!("line: longer than {MAX_LINE} bytes")),
            ));
            pending.clear();
            skipping = true;
        }
        if !batch.lines.is_empty() && tx.send(Ok(batch.render(&model))).await.is_err() {
            return;
        }
        if done {
            return;
        }
    }
}
