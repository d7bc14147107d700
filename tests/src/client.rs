//! An HTTP client for driving traffic through Envoy (keep-alive, HTTP/1.1 or h2c).

use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
}

/// A whole response: status, headers, body and trailers (if any).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: Option<HeaderMap>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers
            .as_ref()?
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("response body is not JSON")
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// HTTP/1.1 with a keep-alive pool. A new client means new connections, which
    /// matters after Envoy changes a listener: old connections keep the old filter
    /// chain until they drain.
    pub fn new() -> Self {
        Self::build(false)
    }

    /// HTTP/2 with prior knowledge (h2c), as gRPC clients speak.
    pub fn http2() -> Self {
        Self::build(true)
    }

    fn build(http2: bool) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .http2_only(http2)
            .pool_max_idle_per_host(256)
            .build(connector);
        Self { inner }
    }

    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Reply> {
        self.request(Method::GET, url, headers, Bytes::new()).await
    }

    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder.body(Full::new(body))?;
        let exchange = async {
            let response = self.inner.request(request).await?;
            let (parts, body) = response.into_parts();
            let collected = body.collect().await?;
            let trailers = collected.trailers().cloned();
            anyhow::Ok(Reply {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("{url}: no response within {REQUEST_TIMEOUT:?}"))?
            .with_context(|| format!("request to {url} failed"))
    }

    /// GETs `url` once per key (sent in `key_header`), `concurrency` at a time, and
    /// returns each key with its reply, in the order of `keys`.
    pub async fn keyed_gets(
        &self,
        url: &str,
        key_header: &str,
        keys: &[String],
        concurrency: usize,
    ) -> Result<Vec<(String, Reply)>> {
        futures::stream::iter(keys.iter().cloned())
            .map(|key| async move {
                let reply = self.get(url, &[(key_header, &key)]).await?;
                anyhow::Ok((key, reply))
            })
            .buffered(concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect()
    }
}
