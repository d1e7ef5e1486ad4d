//! Headless Chromium driven through the DevTools protocol, for the report tests of
//! `fute` (`tests/browser.rs`) and `fute-cli` (`tests/demo_report.rs`, which includes
//! this file by path): find the browser, start it on a private profile, open a page
//! from `file://`, evaluate script, dispatch real mouse events, collect console errors.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium to use: `FUTE_CHROMIUM`, else the first of the usual names on `PATH`.
pub fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FUTE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The browser process, killed when dropped (the test started it; nothing else is touched).
pub struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DevTools-protocol connection to one page session.
pub struct Cdp {
    pub ws: WebSocket<MaybeTlsStream<TcpStream>>,
    pub next_id: u64,
    pub session: Option<String>,
    /// Every event received so far, for the console checks.
    pub events: Vec<Value>,
}

impl Cdp {
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to Chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .read(deadline)
                .unwrap_or_else(|| panic!("no answer to {method} within 60 s"));
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    pub fn read(&mut self, deadline: Instant) -> Option<Value> {
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(&t).expect("JSON from Chromium"))
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection: {e}"),
            }
        }
        None
    }

    pub fn wait_event(&mut self, method: &str, secs: u64) {
        if self.events.iter().any(|e| e["method"] == method) {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(v) = self.read(deadline) {
            let hit = v["method"] == method;
            self.events.push(v);
            if hit {
                return;
            }
        }
        panic!("no {method} within {secs} s");
    }

    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating {expr}: {e}");
        }
        r["result"]["value"].clone()
    }
}

pub fn launch(exe: &Path, profile: &Path) -> (Browser, String) {
    let child = Command::new(exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--remote-debugging-port=0",
            "--window-size=1400,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", exe.display()));
    let browser = Browser(child);
    // Chromium writes the port it chose and the browser's endpoint into the profile.
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(&file) {
            let mut lines = s.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return (browser, format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        assert!(
            Instant::now() < deadline,
            "Chromium did not open its DevTools port within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether the browser tests must run: `Some(exe)`, or `None` after printing why they
/// are skipped; panics when `FUTE_REQUIRE_BROWSER=1` and there is no Chromium.
pub fn required_or_skip() -> Option<PathBuf> {
    let Some(exe) = chromium() else {
        if std::env::var("FUTE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("FUTE_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium, or set FUTE_CHROMIUM)");
        }
        eprintln!("note: skipped: no Chromium (apt-get install chromium; FUTE_REQUIRE_BROWSER=1 makes this test mandatory)");
        return None;
    };
    Some(exe)
}

/// Starts Chromium with its profile in `profile` and opens `html` (a file) in a page of
/// 1400 × 1600 CSS pixels; returns when the page has fired its load event.
pub fn open(exe: &Path, profile: &Path, html: &Path) -> (Browser, Cdp) {
    std::fs::create_dir_all(profile).unwrap();
    let (browser, endpoint) = launch(exe, profile);
    let (ws, _) = tungstenite::connect(endpoint.as_str()).expect("connect to Chromium's DevTools");
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
    }
    let mut cdp = Cdp {
        ws,
        next_id: 0,
        session: None,
        events: Vec::new(),
    };
    let target = cdp.call("Target.createTarget", json!({"url": "about:blank"}));
    let session = cdp.call(
        "Target.attachToTarget",
        json!({"targetId": target["targetId"], "flatten": true}),
    );
    cdp.session = Some(session["sessionId"].as_str().unwrap().to_owned());
    for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
        cdp.call(domain, json!({}));
    }
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 1600, "deviceScaleFactor": 1, "mobile": false}),
    );
    cdp.events.clear();
    let url = format!("file://{}", html.canonicalize().unwrap().display());
    cdp.call("Page.navigate", json!({"url": url}));
    cdp.wait_event("Page.loadEventFired", 60);
    (browser, cdp)
}

impl Cdp {
    /// Moves the mouse onto the explorer point `id` (scrolled into view) with real
    /// mouse events and returns the tooltip: `{hidden, text, shown}`.
    pub fn hover_point(&mut self, id: &str) -> Value {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector('.explorer .pt[data-id=\"{id}\"]'); \
               e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
               return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x - 30.0, "y": y - 30.0}),
        );
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        );
        self.eval(
            "(() => { const t = document.querySelector('.explorer .tooltip'); \
               return {hidden: t.hidden, text: t.innerText, shown: t.getBoundingClientRect().width > 0}; })()",
        )
    }

    /// Exceptions, console errors and log errors seen since the page was opened.
    pub fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .collect()
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        std::fs::write(path, &png).unwrap();
    }
}
