//! The report page: escaping, layout, styles. Every string that comes from the user or
//! from data (dataset names, prompts, model paths) goes through [`escape`] or, inside the
//! page's JSON, [`json_for_script`]; the page's script only ever sets `textContent`.

use super::{map_pictures, Block, MapBlock, Report, Table};
use std::fmt::Write;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON that is safe inside `<script type="application/json">`: `<`, `>`, `&` and the
/// JavaScript line separators are written as `\uXXXX` escapes, so no data can close
/// the script element or start markup.
pub fn json_for_script(v: &serde_json::Value) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1320px;padding:16px 24px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:.4em 0}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.92em}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f2f2f2}
tr:nth-child(even) td{background:#fafafa}pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:.88em}
figure{margin:8px 0 18px}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.88em;color:#555}
.explorer{position:relative;border:1px solid #ccc;padding:8px;margin:10px 0 20px;background:#fff}
.explorer .controls{font-size:.9em;margin-bottom:6px;display:flex;flex-wrap:wrap;gap:6px 18px}
.explorer .controls fieldset{border:none;margin:0;padding:0}.explorer label{margin-right:8px;white-space:nowrap}
.explorer svg.plot{display:block;width:100%;height:auto;max-height:640px;background:#fff}
.explorer .pt{cursor:pointer;stroke:#000;stroke-width:1}.explorer .pt:hover,.explorer .pt.hi{stroke-width:3}
.explorer .lbl{font-size:12px;pointer-events:none;fill:#222}.explorer .lbl.crowded{opacity:.28}.explorer g:hover .lbl.crowded{opacity:1}.explorer .hidden{display:none}
.explorer .tooltip{position:absolute;z-index:5;background:#fffff0;border:1px solid #888;border-radius:4px;padding:6px 9px;
font-size:.85em;max-width:420px;box-shadow:0 2px 6px rgba(0,0,0,.25);pointer-events:none}
.explorer .tooltip b{display:block;margin-bottom:2px}.explorer .tooltip ol{margin:2px 0 0 18px;padding:0}
.prov td:first-child{font-weight:600;white-space:nowrap}.note{color:#555;font-size:.9em}
"#;

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data: file:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\
<title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&r.title),
        escape(&r.title)
    );
    let p = &r.provenance;
    let _ = writeln!(
        h,
        "<p class=\"note\">fute {} (commit {}){}; made {}{}.</p>",
        escape(&p.fute_version),
        escape(&p.git_commit),
        p.run_id
            .as_ref()
            .map(|id| format!(", run <code>{}</code>", escape(id)))
            .unwrap_or_default(),
        escape(&p.created_at),
        p.total_seconds
            .map(|s| format!(" in {}", human_seconds(s)))
            .unwrap_or_default()
    );
    let mut map_index = 0;
    for s in &r.sections {
        let _ = writeln!(h, "<section><h2>{}</h2>", escape(&s.heading));
        for b in &s.blocks {
            match b {
                Block::Text(t) => {
                    let _ = writeln!(h, "<p>{}</p>", escape(t));
                }
                Block::Pre(t) => {
                    let _ = writeln!(h, "<pre>{}</pre>", escape(t));
                }
                Block::Table(t) => h.push_str(&table(t, "")),
                Block::Map(m) => {
                    h.push_str(&map_block(m, map_index));
                    map_index += 1;
                }
            }
        }
        h.push_str("</section>\n");
    }
    h.push_str(&provenance(r));
    if map_index > 0 {
        let _ = writeln!(h, "<script>{}</script>", super::explorer::SCRIPT);
    }
    h.push_str("</body></html>\n");
    h
}

fn table(t: &Table, class: &str) -> String {
    let mut h = String::new();
    let _ = write!(h, "<table class=\"{class}\">");
    if !t.caption.is_empty() {
        let _ = write!(h, "<caption>{}</caption>", escape(&t.caption));
    }
    h.push_str("<thead><tr>");
    for c in &t.header {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    h.push_str("</tr></thead><tbody>");
    for row in &t.rows {
        h.push_str("<tr>");
        for c in row {
            let _ = write!(h, "<td>{}</td>", escape(c));
        }
        h.push_str("</tr>");
    }
    h.push_str("</tbody></table>\n");
    h
}

fn map_block(m: &MapBlock, index: usize) -> String {
    let mut h = String::new();
    let _ = writeln!(h, "<h3>{}</h3>", escape(&m.title));
    h.push_str(&super::explorer::html(m, index));
    for (layout, mime, data) in map_pictures(m) {
        let file = format!("{}-{}.svg", m.stem, layout.key());
        let _ = writeln!(
            h,
            "<figure><img alt=\"{} ({})\" src=\"data:{mime};base64,{data}\"><figcaption>{}: static picture; also <a href=\"{}\">{}</a> in the run folder.</figcaption></figure>",
            escape(&m.title),
            layout.key(),
            match layout {
                crate::map::Layout::Pca => "PCA",
                crate::map::Layout::Tsne => "t-SNE",
            },
            escape(&file),
            escape(&file)
        );
    }
    h
}

fn provenance(r: &Report) -> String {
    let p = &r.provenance;
    let mut t = Table::new("", &["what", "value"]);
    t.row(vec!["fute version".into(), p.fute_version.clone()]);
    t.row(vec![
        "git commit (HEAD at build)".into(),
        p.git_commit.clone(),
    ]);
    t.row(vec!["command".into(), p.command.join(" ")]);
    t.row(vec!["created (UTC)".into(), p.created_at.clone()]);
    if let Some(id) = &p.run_id {
        t.row(vec!["run id".into(), id.clone()]);
    }
    for (k, v) in &p.seeds {
        t.row(vec![format!("seed: {k}"), v.to_string()]);
    }
    for (k, v) in &p.hashes {
        t.row(vec![format!("hash: {k}"), v.clone()]);
    }
    for (k, v) in &p.settings {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        t.row(vec![format!("setting: {k}"), v]);
    }
    let mut h = String::from("<section><h2>Provenance</h2>\n");
    h.push_str(&table(&t, "prov"));
    if !p.timings.is_empty() {
        let mut tt = Table::new("Timings (wall clock)", &["step", "seconds"]);
        for (k, s) in &p.timings {
            tt.row(vec![k.clone(), format!("{s:.1}")]);
        }
        if let Some(total) = p.total_seconds {
            tt.row(vec!["whole run".into(), format!("{total:.1}")]);
        }
        h.push_str(&table(&tt, "timings"));
    }
    h.push_str("</section>\n");
    h
}

/// `95.2 s`, `4 min 03 s`.
pub fn human_seconds(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_become_markup() {
        assert_eq!(
            escape("<b a=\"x\">&'"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;"
        );
        let v = serde_json::json!({"name": "</script><script>alert(1)</script>\u{2028}"});
        let j = json_for_script(&v);
        assert!(
            !j.contains('<') && !j.contains('>') && !j.contains('\u{2028}'),
            "{j}"
        );
        // Still the same JSON once parsed.
        assert_eq!(serde_json::from_str::<serde_json::Value>(&j).unwrap(), v);
    }
}
