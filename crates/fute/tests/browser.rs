//! A run report opened in headless Chromium from `file://`, driven through the DevTools
//! protocol: no console errors or exceptions, tables and images render, hovering a map
//! point (a real mouse event) shows its tooltip, a filter hides points. A screenshot is
//! kept under the build's target folder (its path is printed).
//!
//! Skipped, with a note, when no Chromium is installed (Debian: `apt-get install
//! chromium`), unless `FUTE_REQUIRE_BROWSER=1` (CI sets it), which makes it mandatory.

#[path = "support/chromium.rs"]
mod chromium;
mod common;

use serde_json::{json, Value};

#[test]
fn report_renders_in_headless_chromium_and_tooltips_work() {
    let Some(exe) = chromium::required_or_skip() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (html, map) = common::write_report(tmp.path());
    let (_browser, mut cdp) = chromium::open(&exe, &tmp.path().join("profile"), &html);

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

    // Labels: no two clear (not faded) labels overlap, none leaves the plot.
    let layout = cdp.eval(
        "(() => { const ls = Array.from(document.querySelectorAll('.explorer g:not(.hidden) .lbl')); \
           const bs = ls.map(t => t.getBBox()); let overlaps = 0, outside = 0, crowded = 0; \
           for (let i = 0; i < bs.length; i++) { const a = bs[i]; \
             if (a.x < 0 || a.y < 0 || a.x + a.width > 900 || a.y + a.height > 600) outside++; \
             if (ls[i].classList.contains('crowded')) { crowded++; continue; } \
             for (let j = 0; j < i; j++) { if (ls[j].classList.contains('crowded')) continue; const b = bs[j]; \
               if (a.x < b.x + b.width - 0.5 && b.x < a.x + a.width - 0.5 && \
                   a.y < b.y + b.height - 0.5 && b.y < a.y + a.height - 0.5) overlaps++; } } \
           return {labels: bs.length, overlaps, outside, crowded}; })()",
    );
    assert_eq!(layout["overlaps"], json!(0), "overlapping labels: {layout}");
    assert_eq!(
        layout["outside"],
        json!(0),
        "labels outside the plot: {layout}"
    );
    assert!(
        layout["crowded"].as_u64().unwrap() * 2 <= layout["labels"].as_u64().unwrap(),
        "most labels find a free spot: {layout}"
    );

    // Hover imdb's DTE with a real mouse event and read the tooltip.
    let imdb = map.points.iter().position(|p| p.subject == "imdb").unwrap();
    let tip = cdp.hover_point(&map.points[imdb].id);
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
    let keep = common::artefacts().join("report-screenshot.png");
    cdp.screenshot(&keep);
    println!(
        "screenshot of the report with a tooltip: {}",
        keep.display()
    );

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

    let errors = cdp.errors();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}
