//! A private headless Chromium for one test: Debian's `chromium` (`make setup` installs
//! it) with its profile in a temporary folder, driven over the Chrome DevTools Protocol
//! on its loopback websocket, stopped when dropped.
//!
//! It has one page: [`Browser::goto`] loads a URL in it, [`Browser::eval`] and
//! [`Browser::wait_for`] run JavaScript there, [`Browser::screenshot`] captures it
//! whole, and [`Browser::messages`] gives what it logged since it started: console
//! calls, uncaught exceptions, and the browser's own log (failed loads, content
//! security policy violations).
//!
//! The browser reaches nothing beyond loopback: every other host name fails to resolve
//! and every other request goes to a proxy on a closed loopback port, so a page that
//! needs anything from the internet fails visibly (a failed load in the log) instead
//! of loading it, and background services never call out.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The viewport, in CSS pixels.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags for a quiet, private, loopback-only browser.
const FLAGS: &[&str] = &[
    "--headless=new",
    // Tests run as root, where Chromium's sandbox cannot start.
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--no-pings",
    "--dns-prefetch-disable",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
];

/// One thing the page or the browser logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LogMessage {
    /// `console` (a console call), `exception` (uncaught), or the browser log's source
    /// (`network`, `security`, `javascript`, ...).
    pub source: String,
    /// `error`, `warning`, `info`, `log`, `debug`, ...
    pub level: String,
    pub text: String,
    pub url: Option<String>,
}

impl LogMessage {
    pub fn is_error(&self) -> bool {
        self.level == "error"
    }
}

impl std::fmt::Display for LogMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{} {}] {}", self.source, self.level, self.text)?;
        if let Some(url) = &self.url {
            write!(f, " ({url})")?;
        }
        Ok(())
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Pending = Arc<Mutex<HashMap<u64, (String, oneshot::Sender<Result<Value>>)>>>;

pub struct Browser {
    child: Child,
    dir: TempDir,
    socket: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    pending: Pending,
    messages: Arc<Mutex<Vec<LogMessage>>>,
    next_id: AtomicU64,
    /// The DevTools session of the page.
    session: String,
    reader: tokio::task::JoinHandle<()>,
}

/// The Chromium to run: `OUTRIDER_CHROMIUM`, else `chromium` on the `PATH`.
pub fn binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("OUTRIDER_CHROMIUM") {
        let path = PathBuf::from(path);
        if !path.exists() {
            bail!("OUTRIDER_CHROMIUM={} does not exist", path.display());
        }
        return Ok(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow!(
                "chromium not found on the PATH (run `make setup`, which installs Debian's chromium; or set OUTRIDER_CHROMIUM)"
            )
        })
}

impl Browser {
    /// Starts the browser with one blank page of [`WIDTH`] × [`HEIGHT`].
    pub async fn start() -> Result<Self> {
        let binary = binary()?;
        let dir = tempfile::Builder::new()
            .prefix("outrider-chromium-")
            .tempdir()?;
        let profile = dir.path().join("profile");
        let log = std::fs::File::create(dir.path().join("chromium.log"))?;
        let mut cmd = Command::new(&binary);
        cmd.args(FLAGS)
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // SAFETY: setpgid and prctl are async-signal-safe. The browser leads a process
        // group of its own (its renderers and helpers join it), so dropping it ends
        // them all; and it dies with the test process.
        unsafe {
            cmd.pre_exec(|| {
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "starting {} (run `make setup`, which installs Debian's chromium)",
                binary.display()
            )
        })?;

        let port_file = profile.join("DevToolsActivePort");
        let deadline = Instant::now() + START_TIMEOUT;
        let endpoint = loop {
            if let Some(status) = child.try_wait()? {
                let log =
                    std::fs::read_to_string(dir.path().join("chromium.log")).unwrap_or_default();
                bail!("chromium exited during start ({status}):\n{log}");
            }
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some((port, path)) = text.split_once('\n')
                && !path.trim().is_empty()
            {
                break format!("ws://127.0.0.1:{}{}", port.trim(), path.trim());
            }
            if Instant::now() > deadline {
                stop(&mut child);
                bail!("chromium wrote no DevToolsActivePort within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };

        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(256 << 20))
            .max_frame_size(Some(256 << 20));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(&endpoint, Some(config), true)
                .await
                .with_context(|| format!("connecting to chromium's DevTools at {endpoint}"))?;
        let (sink, stream) = socket.split();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn(read(stream, pending.clone(), messages.clone()));
        let mut browser = Self {
            child,
            dir,
            socket: tokio::sync::Mutex::new(sink),
            pending,
            messages,
            next_id: AtomicU64::new(1),
            session: String::new(),
            reader,
        };

        let target = browser
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .context("Target.createTarget gave no targetId")?
            .to_owned();
        let attached = browser
            .send(
                None,
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("Target.attachToTarget gave no sessionId")?
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({})).await?;
        }
        browser
            .call(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false}),
            )
            .await?;
        Ok(browser)
    }

    /// A DevTools command to the page.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    async fn send(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(id, (method.to_owned(), tx));
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await
            .with_context(|| format!("sending {method} to chromium"))?;
        tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .with_context(|| format!("chromium did not answer {method} within {CALL_TIMEOUT:?}"))?
            .with_context(|| format!("chromium went away before answering {method}"))?
    }

    /// Loads `url` and waits until the page and what it loads are in.
    pub async fn goto(&self, url: &str) -> Result<()> {
        let answer = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(error) = answer.get("errorText").and_then(Value::as_str) {
            bail!("loading {url}: {error}");
        }
        self.wait_for(
            &format!(
                "document.readyState === 'complete' && location.href === {}",
                json!(url)
            ),
            Duration::from_secs(20),
        )
        .await
        .with_context(|| format!("loading {url}"))?;
        Ok(())
    }

    /// The value of a JavaScript expression in the page (promises awaited), as JSON;
    /// an exception is an error with its description.
    pub async fn eval(&self, expression: &str) -> Result<Value> {
        let answer = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            let what = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("an exception");
            bail!("evaluating `{expression}`: {what}");
        }
        Ok(answer["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Waits until `expression` is truthy in the page; its value then. An exception
    /// counts as not yet (while a page loads, its context comes and goes).
    pub async fn wait_for(&self, expression: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(expression).await {
                Ok(value) if truthy(&value) => return Ok(value),
                Ok(value) => value.to_string(),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("`{expression}` still {last} after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the whole page, beyond the viewport, written to `path` (its folder made).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let layout = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &layout["cssContentSize"];
        let width = size["width"].as_f64().unwrap_or(f64::from(WIDTH)).ceil();
        let height = size["height"].as_f64().unwrap_or(f64::from(HEIGHT)).ceil();
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true,
                       "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}}),
            )
            .await?;
        let data = shot["data"]
            .as_str()
            .context("Page.captureScreenshot gave no data")?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))?;
        Ok(())
    }

    /// Everything logged so far, oldest first.
    pub fn messages(&self) -> Vec<LogMessage> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Chromium's own output (its standard error), for a failing test's report.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromium.log")).unwrap_or_default()
    }
}

/// JavaScript's truthiness of a JSON value.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Routes answers to their callers and keeps the page's log messages.
async fn read(
    mut stream: futures::stream::SplitStream<Socket>,
    pending: Pending,
    messages: Arc<Mutex<Vec<LogMessage>>>,
) {
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            let waiting = pending.lock().ok().and_then(|mut p| p.remove(&id));
            if let Some((method, tx)) = waiting {
                let answer = match message.get("error") {
                    Some(error) => Err(anyhow!("{method}: {error}")),
                    None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                };
                let _ = tx.send(answer);
            }
        } else if let Some(logged) = log_message(&message)
            && let Ok(mut all) = messages.lock()
        {
            all.push(logged);
        }
    }
    // The socket closed: callers still waiting get an error.
    if let Ok(mut p) = pending.lock() {
        p.clear();
    }
}

/// A console call, an uncaught exception or a browser log entry, from its event.
fn log_message(event: &Value) -> Option<LogMessage> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" => {
            let kind = params["type"].as_str().unwrap_or("log");
            let level = match kind {
                "error" | "assert" => "error",
                "warning" => "warning",
                other => other,
            };
            let text = params["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|a| match a.get("value") {
                            Some(Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => a["description"].as_str().unwrap_or("").to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let url = params["stackTrace"]["callFrames"][0]["url"]
                .as_str()
                .map(str::to_owned);
            Some(LogMessage {
                source: "console".into(),
                level: level.into(),
                text,
                url,
            })
        }
        "Runtime.exceptionThrown" => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("uncaught exception")
                .to_owned();
            Some(LogMessage {
                source: "exception".into(),
                level: "error".into(),
                text,
                url: details["url"].as_str().map(str::to_owned),
            })
        }
        "Log.entryAdded" => {
            let entry = &params["entry"];
            Some(LogMessage {
                source: entry["source"].as_str().unwrap_or("other").into(),
                level: entry["level"].as_str().unwrap_or("info").into(),
                text: entry["text"].as_str().unwrap_or("").into(),
                url: entry["url"].as_str().map(str::to_owned),
            })
        }
        _ => None,
    }
}

/// Ends the browser's process group: politely, then for good.
fn stop(child: &mut Child) {
    let Ok(group) = i32::try_from(child.id()) else {
        let _ = child.kill();
        let _ = child.wait();
        return;
    };
    // SAFETY: kill has no memory effects; the group is the browser's own (setpgid).
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above; helpers that outlived the browser go with it.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.wait();
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let messages: Vec<String> = self.messages().iter().map(|m| m.to_string()).collect();
            eprintln!(
                "--- chromium: what the page logged ---\n{}",
                messages.join("\n")
            );
        }
        self.reader.abort();
        stop(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_messages_are_read_from_their_events() {
        let console = json!({"method": "Runtime.consoleAPICalled", "params": {"type": "error",
            "args": [{"type": "string", "value": "boom"}, {"type": "number", "value": 3}],
            "stackTrace": {"callFrames": [{"url": "http://x/app.js"}]}}});
        assert_eq!(
            log_message(&console),
            Some(LogMessage {
                source: "console".into(),
                level: "error".into(),
                text: "boom 3".into(),
                url: Some("http://x/app.js".into()),
            })
        );
        let thrown = json!({"method": "Runtime.exceptionThrown", "params": {"exceptionDetails": {
            "text": "Uncaught", "exception": {"description": "TypeError: x is undefined"}}}});
        let m = log_message(&thrown).unwrap();
        assert!(m.is_error() && m.text == "TypeError: x is undefined", "{m}");
        let entry = json!({"method": "Log.entryAdded", "params": {"entry": {"source": "network",
            "level": "error", "text": "Failed to load resource", "url": "http://x/y"}}});
        assert_eq!(log_message(&entry).unwrap().source, "network");
        assert_eq!(
            log_message(&json!({"method": "Page.loadEventFired", "params": {}})),
            None
        );
    }
}
