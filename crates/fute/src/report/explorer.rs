//! The interactive map in a report: an inline SVG drawn by a small script from the
//! map's data (kept as JSON in the page). Hover a point for its subject, kind, class,
//! method and nearest neighbours (by the map's cosines); switch between PCA and t-SNE;
//! filter by kind and by class. No server, no network, no library.

use super::html::{escape, json_for_script};
use super::MapBlock;
use crate::map::draw::class_colour;
use serde_json::json;

/// The explorer's HTML for map number `index` of the page (its data inline).
pub fn html(m: &MapBlock, index: usize) -> String {
    let map = &m.map;
    let points: Vec<serde_json::Value> = map
        .points
        .iter()
        .map(|p| {
            let c = class_colour(p.class);
            json!({
                "id": p.id, "label": p.label, "subject": p.subject,
                "kind": p.kind.as_str().to_uppercase(),
                "class": p.class.as_str(), "classText": p.class.describe(),
                "colour": format!("#{:02x}{:02x}{:02x}", c.0, c.1, c.2),
                "marker": p.marker.key(), "markerText": p.marker.describe(), "markerShort": p.marker.short(),
                "method": p.method, "architecture": p.architecture,
            })
        })
        .collect();
    let data = json!({
        "title": m.title,
        "centred": map.centred,
        "explained": map.explained,
        "perplexity": map.perplexity,
        "points": points,
        "pca": map.pca,
        "tsne": map.tsne,
        "neighbours": map.neighbours,
    });
    format!(
        "<div class=\"explorer\" id=\"explorer-{index}\" aria-label=\"{title}\">\
<div class=\"controls\"><fieldset class=\"layouts\"><b>Layout:</b> \
<label><input type=\"radio\" name=\"layout-{index}\" value=\"pca\" checked> PCA</label>\
<label><input type=\"radio\" name=\"layout-{index}\" value=\"tsne\"{tsne_off}> t-SNE</label></fieldset>\
<fieldset class=\"kinds\"><b>Kind:</b> </fieldset><fieldset class=\"classes\"><b>Class:</b> </fieldset></div>\
<svg class=\"plot\" viewBox=\"0 0 900 600\" role=\"img\" aria-label=\"{title}\"></svg>\
<div class=\"tooltip\" hidden></div>\
<p class=\"note\">Hover a point for its subject and nearest neighbours ({cos} cosine of the stored vectors).</p>\
<script type=\"application/json\" class=\"map-data\">{json}</script></div>\n",
        title = escape(&m.title),
        tsne_off = if map.tsne.is_none() { " disabled" } else { "" },
        cos = if map.centred { "centred" } else { "plain" },
        json = json_for_script(&data),
    )
}

/// The script shared by every explorer of a page. It reads each explorer's JSON and
/// builds SVG elements; user text is only ever assigned with `textContent`.
pub const SCRIPT: &str = r##"
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 900, H = 600, PAD = 50;
  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function shape(marker, x, y, colour) {
    var r = 7, e;
    if (marker === "dte") { e = el("circle", {cx: x, cy: y, r: r}); }
    else if (marker === "model") { e = el("polygon", {points: [x, y - 1.2 * r, x + 1.1 * r, y + 0.8 * r, x - 1.1 * r, y + 0.8 * r].join(" ")}); }
    else if (marker === "llm-vanilla") { e = el("rect", {x: x - 0.9 * r, y: y - 0.9 * r, width: 1.8 * r, height: 1.8 * r}); }
    else { e = el("polygon", {points: [x, y - 1.25 * r, x + 1.25 * r, y, x, y + 1.25 * r, x - 1.25 * r, y].join(" ")}); }
    e.setAttribute("fill", colour);
    return e;
  }
  function setup(root) {
    var data = JSON.parse(root.querySelector("script.map-data").textContent);
    var svg = root.querySelector("svg.plot");
    var tip = root.querySelector(".tooltip");
    var shown = {kind: {}, cls: {}};
    function checkboxes(sel, key, field, textField) {
      var box = root.querySelector(sel), seen = {};
      data.points.forEach(function (p) {
        if (seen[p[field]]) { return; }
        seen[p[field]] = true;
        shown[key][p[field]] = true;
        var lab = document.createElement("label");
        var cb = document.createElement("input");
        cb.type = "checkbox"; cb.checked = true; cb.value = p[field];
        cb.addEventListener("change", function () { shown[key][p[field]] = cb.checked; draw(); });
        lab.appendChild(cb);
        lab.appendChild(document.createTextNode(" " + p[textField]));
        box.appendChild(lab);
      });
    }
    checkboxes(".kinds", "kind", "marker", "markerText");
    checkboxes(".classes", "cls", "class", "classText");
    root.querySelectorAll("input[type=radio]").forEach(function (r) { r.addEventListener("change", draw); });
    function layout() {
      var r = root.querySelector("input[type=radio]:checked");
      var which = r ? r.value : "pca";
      return (which === "tsne" && data.tsne) ? data.tsne : data.pca;
    }
    function showTip(i, evt) {
      var p = data.points[i];
      tip.textContent = "";
      var b = document.createElement("b"); b.textContent = p.label; tip.appendChild(b);
      [["subject", p.subject], ["kind", p.markerText], ["class", p.classText], ["method", p.method]].concat(p.architecture ? [["architecture", p.architecture]] : [], [["id", p.id]]).forEach(function (kv) {
        var d = document.createElement("div"); d.textContent = kv[0] + ": " + kv[1]; tip.appendChild(d);
      });
      var h = document.createElement("div"); h.textContent = "nearest (" + (data.centred ? "centred " : "") + "cosine):"; tip.appendChild(h);
      var ol = document.createElement("ol");
      (data.neighbours[i] || []).forEach(function (n) {
        var li = document.createElement("li");
        li.textContent = data.points[n[0]].label + "  " + n[1].toFixed(3);
        ol.appendChild(li);
      });
      tip.appendChild(ol);
      tip.hidden = false;
      var box = root.getBoundingClientRect();
      var x = evt.clientX - box.left + 14, y = evt.clientY - box.top + 14;
      if (x + 300 > box.width) { x = Math.max(4, x - 330); }
      tip.style.left = x + "px"; tip.style.top = y + "px";
    }
    // Greedy placement, as in the static maps (map/labels.rs): each label takes the
    // first spot around its marker that covers no placed label and no marker; when
    // none is free it takes the least-covered one and is faded ("crowded") until its
    // point is hovered.
    function placeLabels(drawn) {
      var R = 9, placed = [], marks = drawn.map(function (d) { return [d.x - R, d.y - R, 2 * R, 2 * R]; });
      function cover(a, b) {
        var w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
        var h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
        return (w > 0 && h > 0) ? w * h : 0;
      }
      function outside(b) { return b[2] * b[3] - cover(b, [2, 2, W - 164, H - 4]); }
      drawn.forEach(function (d) {
        var w = d.text.getComputedTextLength() + 2, h = 14, best = null;
        [0, 10, 22, 36].some(function (ring) {
          var gap = R + 2 + ring, k = 0.7 * gap;
          return [[d.x + gap, d.y - h / 2], [d.x - gap - w, d.y - h / 2], [d.x - w / 2, d.y - gap - h],
                  [d.x - w / 2, d.y + gap], [d.x + k, d.y - k - h], [d.x + k, d.y + k],
                  [d.x - k - w, d.y - k - h], [d.x - k - w, d.y + k]].some(function (c) {
            var b = [c[0], c[1], w, h], cost = 1e3 * outside(b);
            placed.forEach(function (p) { cost += cover(p, b); });
            marks.forEach(function (m) { cost += cover(m, b); });
            if (!best || cost < best.cost) { best = {box: b, cost: cost}; }
            return cost === 0;
          });
        });
        d.text.setAttribute("x", best.box[0] + 1);
        d.text.setAttribute("y", best.box[1] + 11);
        if (best.cost > 0) { d.text.classList.add("crowded"); }
        placed.push(best.box);
      });
    }
    function draw() {
      var drawn = [];
      while (svg.firstChild) { svg.removeChild(svg.firstChild); }
      var xy = layout(), lo = [Infinity, Infinity], hi = [-Infinity, -Infinity];
      xy.forEach(function (c) { for (var k = 0; k < 2; k++) { lo[k] = Math.min(lo[k], c[k]); hi[k] = Math.max(hi[k], c[k]); } });
      var sx = (W - 2 * PAD - 160) / Math.max(hi[0] - lo[0], 1e-12), sy = (H - 2 * PAD) / Math.max(hi[1] - lo[1], 1e-12);
      var s = Math.min(sx, sy);
      var mx = (lo[0] + hi[0]) / 2, my = (lo[1] + hi[1]) / 2;
      svg.appendChild(el("rect", {x: 1, y: 1, width: W - 2, height: H - 2, fill: "none", stroke: "#ccc"}));
      data.points.forEach(function (p, i) {
        var x = (W - 160) / 2 + (xy[i][0] - mx) * s, y = H / 2 - (xy[i][1] - my) * s;
        var visible = shown.kind[p.marker] && shown.cls[p["class"]];
        var g = el("g", {"class": visible ? "" : "hidden", "data-index": i});
        var m = shape(p.marker, x, y, p.colour);
        m.setAttribute("class", "pt");
        m.setAttribute("data-id", p.id);
        m.addEventListener("mouseenter", function (evt) { m.classList.add("hi"); showTip(i, evt); });
        m.addEventListener("mousemove", function (evt) { showTip(i, evt); });
        m.addEventListener("mouseleave", function () { m.classList.remove("hi"); tip.hidden = true; });
        var t = el("text", {x: x + 10, y: y + 4, "class": "lbl"});
        t.textContent = p.label;
        g.appendChild(m); g.appendChild(t); svg.appendChild(g);
        if (visible) { drawn.push({x: x, y: y, text: t}); }
      });
      placeLabels(drawn);
      var ly = 20;
      var seen = {};
      data.points.forEach(function (p) {
        if (seen[p["class"]]) { return; }
        seen[p["class"]] = true;
        svg.appendChild(shape("dte", W - 150, ly, p.colour));
        var t = el("text", {x: W - 136, y: ly + 4, "class": "lbl"}); t.textContent = p.classText.split(":")[0]; svg.appendChild(t);
        ly += 20;
      });
      seen = {};
      data.points.forEach(function (p) {
        if (seen[p.marker]) { return; }
        seen[p.marker] = true;
        svg.appendChild(shape(p.marker, W - 150, ly, "#777"));
        var t = el("text", {x: W - 136, y: ly + 4, "class": "lbl"}); t.textContent = p.markerShort; svg.appendChild(t);
        ly += 20;
      });
    }
    draw();
  }
  document.querySelectorAll(".explorer").forEach(setup);
})();
"##;
