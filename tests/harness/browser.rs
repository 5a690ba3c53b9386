//! A real browser for end-to-end tests: Debian's headless Chromium, driven over the DevTools
//! protocol (a WebSocket speaking JSON). Each test gets its own Chromium process and empty
//! profile, so cookies never leak between tests. Waits poll the page with a deadline.
//!
//! `Browser::launch` returns `None` only when no Chromium is installed (scripts/install-deps
//! installs Debian's `chromium`); the caller skips with a clear message then.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    /// DevTools events received while waiting for answers (console, log, network), in order.
    events: Vec<Value>,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where Chromium is, if anywhere.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

impl Browser {
    /// Starts headless Chromium with a fresh profile and opens one page.
    pub fn launch() -> Option<Browser> {
        let binary = chromium()?;
        let profile = TempDir(super::scratch("chromium-profile"));
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--autoplay-policy=no-user-gesture-required",
                "--remote-debugging-port=0",
                "--window-size=900,700",
            ])
            .arg(format!("--user-data-dir={}", profile.0.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium names its DevTools endpoint on stderr once it listens.
        let stderr = child.stderr.take().expect("chromium's stderr");
        let mut lines = BufReader::new(stderr).lines();
        let endpoint = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("chromium exited before its DevTools endpoint was up"),
            };
            if let Some(url) = line.split("DevTools listening on ").nth(1) {
                break url.trim().to_string();
            }
        };
        // Keep draining stderr so Chromium never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let (mut socket, _) = tungstenite::connect(endpoint.as_str()).expect("connect to DevTools");
        if let MaybeTlsStream::Plain(stream) = socket.get_mut() {
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("read timeout");
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        Some(browser)
    }

    /// Navigates and waits for the load event (redirects followed, cookies they set kept).
    pub fn open(&mut self, url: &str) {
        let reply = self.call("Page.navigate", json!({"url": url}));
        assert!(
            reply.get("errorText").is_none(),
            "navigating to {url}: {reply}"
        );
        let loaded = self.wait_for(
            Duration::from_secs(15),
            "document.readyState === 'complete'",
        );
        assert!(loaded, "{url} did not finish loading");
    }

    /// The value of a JavaScript expression in the page (awaited when it is a promise).
    pub fn eval(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = reply.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        reply["result"]["value"].clone()
    }

    /// Polls `expression` until it is true or `timeout` passes.
    pub fn wait_for(&mut self, timeout: Duration, expression: &str) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.eval(expression) == Value::Bool(true) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// From now on, keeps the page's console messages, uncaught exceptions, browser log
    /// entries (CSP violations, failed loads) and failed network requests; read them with
    /// [`Browser::problems`].
    pub fn watch_problems(&mut self) {
        self.call("Log.enable", json!({}));
        self.call("Network.enable", json!({}));
    }

    /// Console errors, exceptions, error log entries and failed or blocked requests seen so
    /// far, one line each.
    pub fn problems(&mut self) -> Vec<String> {
        // A round trip, so events already sent are read.
        self.eval("true");
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => {
                        Some(format!("exception: {}", p["exceptionDetails"]))
                    }
                    "Runtime.consoleAPICalled"
                        if matches!(p["type"].as_str(), Some("error" | "assert")) =>
                    {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
                        "log ({}): {}",
                        p["entry"]["source"], p["entry"]["text"]
                    )),
                    "Network.loadingFailed" => Some(format!(
                        "request failed: {} {}",
                        p["errorText"], p["blockedReason"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// The page's layout size for screenshots (CSS pixels).
    pub fn set_viewport(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// A PNG of the page, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let data = shot["data"].as_str().expect("screenshot data");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 screenshot");
        std::fs::write(path, bytes).expect("write the screenshot");
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn call_browser(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < deadline, "no DevTools answer to {method}");
            let frame = self.socket.read().expect("read from DevTools");
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if reply.get("id").is_none() && reply.get("method").is_some() {
                // Bounded: a test page sends a handful of events between two calls.
                if self.events.len() < 10_000 {
                    self.events.push(reply);
                }
                continue;
            }
            if reply["id"] == json!(id) {
                if let Some(error) = reply.get("error") {
                    panic!("{method}: {error}");
                }
                return reply["result"].clone();
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
