//! A run report opened in headless Chromium from `file://`, driven through the DevTools
//! protocol: no console errors or exceptions, tables and images render, hovering a map
//! point (a real mouse event) shows its tooltip, a filter hides points. A screenshot is
//! kept under the build's target folder (its path is printed).
//!
//! Skipped, with a note, when no Chromium is installed (Debian: `apt-get install
//! chromium`), unless `FUTE_REQUIRE_BROWSER=1` (CI sets it), which makes it mandatory.

mod common;

use serde_json::{json, Value};
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

fn chromium() -> Option<PathBuf> {
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
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A DevTools-protocol connection to one page session.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
    /// Every event received so far, for the console checks.
    events: Vec<Value>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
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

    fn read(&mut self, deadline: Instant) -> Option<Value> {
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

    fn wait_event(&mut self, method: &str, secs: u64) {
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

    fn eval(&mut self, expr: &str) -> Value {
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

fn launch(exe: &Path, profile: &Path) -> (Browser, String) {
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

#[test]
fn report_renders_in_headless_chromium_and_tooltips_work() {
    let Some(exe) = chromium() else {
        if std::env::var("FUTE_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("FUTE_REQUIRE_BROWSER=1 but no Chromium found (apt-get install chromium, or set FUTE_CHROMIUM)");
        }
        eprintln!("note: skipped: no Chromium (apt-get install chromium; FUTE_REQUIRE_BROWSER=1 makes this test mandatory)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (html, map) = common::write_report(tmp.path());
    let profile = tmp.path().join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let (_browser, endpoint) = launch(&exe, &profile);
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

    let page = cdp.eval(
        "({title: document.title, tables: document.querySelectorAll('table').length, \
          cells: document.querySelectorAll('td').length, \
          images: Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]), \
          points: document.querySelectorAll('.explorer .pt').length, \
          labels: Array.from(document.querySelectorAll('.explorer .lbl')).map(t => t.textContent), \
          injected: document.querySelectorAll('img[src=x]').length})",
    );
    assert!(
        page["title"].as_str().unwrap().contains("<img src=x"),
        "the title is the text: {}",
        page["title"]
    );
    assert!(
        page["tables"].as_u64().unwrap() >= 3,
        "subjects, provenance, timings: {page}"
    );
    assert!(page["cells"].as_u64().unwrap() >= 14, "{page}");
    let images = page["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "PCA and t-SNE pictures: {page}");
    for i in images {
        assert_eq!(i[0], json!(true), "image loaded: {page}");
        assert!(
            i[1].as_u64().unwrap() >= 1000 && i[2].as_u64().unwrap() >= 600,
            "image rendered at size: {page}"
        );
    }
    assert_eq!(page["points"].as_u64().unwrap() as usize, map.points.len());
    let labels: Vec<&str> = page["labels"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        labels.contains(&common::EVIL),
        "the markup name is shown as text: {labels:?}"
    );
    assert_eq!(
        page["injected"],
        json!(0),
        "no element injected by user text"
    );

    // Hover imdb's DTE with a real mouse event and read the tooltip.
    let imdb = map.points.iter().position(|p| p.subject == "imdb").unwrap();
    let at = cdp.eval(&format!(
        "(() => {{ const e = document.querySelector('.explorer .pt[data-id=\"{}\"]'); \
           e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
           return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
        map.points[imdb].id
    ));
    let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    cdp.call(
        "Input.dispatchMouseEvent",
        json!({"type": "mouseMoved", "x": x - 30.0, "y": y - 30.0}),
    );
    cdp.call(
        "Input.dispatchMouseEvent",
        json!({"type": "mouseMoved", "x": x, "y": y}),
    );
    let tip = cdp.eval(
        "(() => { const t = document.querySelector('.explorer .tooltip'); \
           return {hidden: t.hidden, text: t.innerText, shown: t.getBoundingClientRect().width > 0}; })()",
    );
    assert_eq!(
        tip["hidden"],
        json!(false),
        "hovering shows the tooltip: {tip}"
    );
    assert_eq!(tip["shown"], json!(true), "{tip}");
    let text = tip["text"].as_str().unwrap();
    let nearest = &map.points[map.neighbours[imdb][0].0].label;
    assert!(
        text.contains("subject: imdb")
            && text.contains("DTE (dataset)")
            && text.contains("method: fim"),
        "{text}"
    );
    assert!(
        text.contains(nearest.as_str()),
        "the tooltip names the nearest neighbour {nearest}: {text}"
    );
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));

    // Filter: unticking "LLM + CoT" hides exactly the CoT points.
    let hidden = cdp.eval(
        "(() => { const cb = document.querySelector('.explorer .kinds input[value=\"llm-cot\"]'); cb.click(); \
           return document.querySelectorAll('.explorer g.hidden').length; })()",
    );
    let cot = map
        .points
        .iter()
        .filter(|p| p.marker == fute::map::Marker::LlmCot)
        .count();
    assert_eq!(hidden.as_u64().unwrap() as usize, cot);

    let errors: Vec<&Value> = cdp
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let keep = common::artefacts().join("report-screenshot.png");
    std::fs::write(&keep, &png).unwrap();
    println!(
        "screenshot of the report with a tooltip: {}",
        keep.display()
    );
    let mut head = [0u8; 8];
    std::fs::File::open(&keep)
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    assert_eq!(&head, b"\x89PNG\r\n\x1a\n");
}
