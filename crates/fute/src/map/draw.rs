//! PNG and SVG pictures of a [`TaskMap`] through `plotters`: colour = task class
//! (Okabe–Ito colours, safe for colour-blind readers), marker = kind, every point
//! labelled (placed by [`super::labels`]), a legend and the settings beside the plot.

use super::labels::{self, Bbox};
use super::{Layout, Marker, TaskClass, TaskMap};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeSet;
use std::sync::OnceLock;

/// Picture width in pixels.
pub const WIDTH: u32 = 1280;
/// Picture height in pixels.
pub const HEIGHT: u32 = 820;
const LEGEND_W: i32 = 330;
const MARKER: f64 = 7.0;
const LABEL_SIZE: f64 = 14.0;

/// Why a picture could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    /// No TrueType font for the PNG's text (SVG text needs none).
    #[error("{0}")]
    NoFont(String),
    /// The layout has no coordinates (t-SNE of fewer than 4 points).
    #[error("the map has no {0} layout (t-SNE needs at least 4 points)")]
    NoLayout(&'static str),
    /// Drawing or encoding failed.
    #[error("drawing the map: {0}")]
    Draw(String),
}

/// The colour of a task class.
pub fn class_colour(c: TaskClass) -> RGBColor {
    match c {
        TaskClass::Sa => RGBColor(0, 114, 178),
        TaskClass::Nli => RGBColor(230, 159, 0),
        TaskClass::Cr => RGBColor(0, 158, 115),
        TaskClass::Qa => RGBColor(213, 94, 0),
        TaskClass::Unknown => RGBColor(153, 153, 153),
    }
}

/// The SVG text of a layout.
pub fn svg(map: &TaskMap, layout: Layout, title: &str) -> Result<String, DrawError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, map, layout, title)?;
        root.present().map_err(|e| DrawError::Draw(e.to_string()))?;
    }
    Ok(out)
}

/// The PNG bytes of a layout. Needs a TrueType font for its text: `$FUTE_FONT`, else
/// the one `fc-match sans-serif` names, else DejaVu Sans at its usual places.
pub fn png(map: &TaskMap, layout: Layout, title: &str) -> Result<Vec<u8>, DrawError> {
    ensure_font()?;
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        render(&root, map, layout, title)?;
        root.present().map_err(|e| DrawError::Draw(e.to_string()))?;
    }
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, WIDTH, HEIGHT);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .map_err(|e| DrawError::Draw(e.to_string()))?;
    w.write_image_data(&rgb)
        .map_err(|e| DrawError::Draw(e.to_string()))?;
    w.finish().map_err(|e| DrawError::Draw(e.to_string()))?;
    Ok(bytes)
}

fn ensure_font() -> Result<(), DrawError> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let mut tried = Vec::new();
        let mut candidates: Vec<String> = Vec::new();
        if let Ok(p) = std::env::var("FUTE_FONT") {
            candidates.push(p);
        }
        if let Ok(o) = std::process::Command::new("fc-match")
            .args(["-f", "%{file}", "sans-serif"])
            .output()
        {
            let p = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            if o.status.success() && !p.is_empty() {
                candidates.push(p);
            }
        }
        candidates.extend(
            [
                "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
                "/System/Library/Fonts/Supplemental/Arial.ttf",
                "/Library/Fonts/Arial.ttf",
            ]
            .map(String::from),
        );
        for p in candidates {
            match std::fs::read(&p) {
                Ok(bytes) => {
                    // plotters keeps fonts for the life of the process; one font, loaded once.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                        return Ok(());
                    }
                    tried.push(format!("{p} (not a TrueType font)"));
                }
                Err(_) => tried.push(p),
            }
        }
        Err(format!(
            "no TrueType font for the PNG map's text (tried {}); install one (Debian: apt-get install fonts-dejavu-core) or set FUTE_FONT=/path/to/font.ttf — the SVG map was written",
            tried.join(", ")
        ))
    })
    .clone()
    .map_err(DrawError::NoFont)
}

fn render<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    map: &TaskMap,
    layout: Layout,
    title: &str,
) -> Result<(), DrawError> {
    let coords = map
        .coords(layout)
        .ok_or(DrawError::NoLayout(layout.key()))?;
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError::Draw(e.to_string());
    root.fill(&WHITE).map_err(e)?;
    let font = |size: f64| ("sans-serif", size).into_font().color(&BLACK);
    let (x0, y0) = (70.0, 60.0);
    let (x1, y1) = (
        f64::from(WIDTH) - f64::from(LEGEND_W) - 20.0,
        f64::from(HEIGHT) - 60.0,
    );
    root.draw(&Text::new(title.to_owned(), (20, 16), font(22.0)))
        .map_err(e)?;
    root.draw(&Rectangle::new(
        [(x0 as i32, y0 as i32), (x1 as i32, y1 as i32)],
        ShapeStyle::from(&BLACK.mix(0.5)).stroke_width(1),
    ))
    .map_err(e)?;
    let (ax, ay) = match layout {
        Layout::Pca => (
            format!("PC1 ({:.1} % of variance)", map.explained[0] * 100.0),
            format!("PC2 ({:.1} %)", map.explained[1] * 100.0),
        ),
        Layout::Tsne => ("t-SNE 1".to_owned(), "t-SNE 2".to_owned()),
    };
    root.draw(&Text::new(
        ax,
        (((x0 + x1) / 2.0 - 80.0) as i32, (y1 + 14.0) as i32),
        font(15.0),
    ))
    .map_err(e)?;
    root.draw(&Text::new(
        format!("↑ {ay}"),
        (x0 as i32, (y0 - 22.0) as i32),
        font(15.0),
    ))
    .map_err(e)?;

    // Equal scale on both axes: distances on the picture are distances in the layout.
    let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
    for c in coords {
        for k in 0..2 {
            lo[k] = lo[k].min(c[k]);
            hi[k] = hi[k].max(c[k]);
        }
    }
    let pad = 60.0;
    let span = [(hi[0] - lo[0]).max(1e-12), (hi[1] - lo[1]).max(1e-12)];
    let scale = ((x1 - x0 - 2.0 * pad) / span[0]).min((y1 - y0 - 2.0 * pad) / span[1]);
    let mid = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let px: Vec<(f64, f64)> = coords
        .iter()
        .map(|c| {
            (
                (x0 + x1) / 2.0 + (c[0] - mid[0]) * scale,
                // Screen y grows downwards.
                (y0 + y1) / 2.0 - (c[1] - mid[1]) * scale,
            )
        })
        .collect();
    let sizes: Vec<(f64, f64)> = map
        .points
        .iter()
        .map(|p| labels::text_size(&p.label, LABEL_SIZE))
        .collect();
    let area = Bbox {
        x: x0 + 2.0,
        y: y0 + 2.0,
        w: x1 - x0 - 4.0,
        h: y1 - y0 - 4.0,
    };
    let at = labels::place(&px, &sizes, MARKER, area);
    for (i, p) in map.points.iter().enumerate() {
        let (lx, ly) = at[i];
        let (w, h) = sizes[i];
        // A leader line when the label had to move away from its point.
        let cx = px[i].0.clamp(lx, lx + w);
        let cy = px[i].1.clamp(ly, ly + h);
        if ((cx - px[i].0).powi(2) + (cy - px[i].1).powi(2)).sqrt() > MARKER + 8.0 {
            root.draw(&PathElement::new(
                vec![(px[i].0 as i32, px[i].1 as i32), (cx as i32, cy as i32)],
                ShapeStyle::from(&BLACK.mix(0.35)).stroke_width(1),
            ))
            .map_err(e)?;
        }
        draw_marker(root, p.marker, px[i], class_colour(p.class)).map_err(e)?;
        root.draw(&Text::new(
            p.label.clone(),
            (lx as i32, ly as i32),
            font(LABEL_SIZE),
        ))
        .map_err(e)?;
    }
    legend(root, map, layout, x1 + 20.0).map_err(e)
}

fn draw_marker<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    m: Marker,
    (x, y): (f64, f64),
    colour: RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let r = MARKER;
    let pts: Vec<(f64, f64)> = match m {
        Marker::Dte => (0..24)
            .map(|k| {
                let a = k as f64 * std::f64::consts::TAU / 24.0;
                (x + r * a.cos(), y + r * a.sin())
            })
            .collect(),
        Marker::ModelMte => vec![
            (x, y - r * 1.2),
            (x + r * 1.1, y + r * 0.8),
            (x - r * 1.1, y + r * 0.8),
        ],
        Marker::LlmVanilla => vec![
            (x - r * 0.9, y - r * 0.9),
            (x + r * 0.9, y - r * 0.9),
            (x + r * 0.9, y + r * 0.9),
            (x - r * 0.9, y + r * 0.9),
        ],
        Marker::LlmCot => vec![
            (x, y - r * 1.25),
            (x + r * 1.25, y),
            (x, y + r * 1.25),
            (x - r * 1.25, y),
        ],
    };
    let ipts: Vec<(i32, i32)> = pts
        .iter()
        .map(|&(a, b)| (a.round() as i32, b.round() as i32))
        .collect();
    root.draw(&Polygon::new(ipts.clone(), colour.filled()))?;
    let mut outline = ipts;
    outline.push(outline[0]);
    root.draw(&PathElement::new(
        outline,
        ShapeStyle::from(&BLACK).stroke_width(1),
    ))
}

fn legend<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    map: &TaskMap,
    layout: Layout,
    x: f64,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let font = |size: f64| ("sans-serif", size).into_font().color(&BLACK);
    let mut y = 70.0;
    let classes: BTreeSet<TaskClass> = map.points.iter().map(|p| p.class).collect();
    let markers: BTreeSet<Marker> = map.points.iter().map(|p| p.marker).collect();
    root.draw(&Text::new(
        "Task class (colour)",
        (x as i32, y as i32),
        font(16.0),
    ))?;
    y += 28.0;
    for c in classes {
        draw_marker(root, Marker::Dte, (x + 10.0, y + 8.0), class_colour(c))?;
        root.draw(&Text::new(
            c.describe(),
            ((x + 26.0) as i32, y as i32),
            font(14.0),
        ))?;
        y += 24.0;
    }
    y += 16.0;
    root.draw(&Text::new(
        "Kind (marker)",
        (x as i32, y as i32),
        font(16.0),
    ))?;
    y += 28.0;
    for m in markers {
        draw_marker(root, m, (x + 10.0, y + 8.0), RGBColor(110, 110, 110))?;
        root.draw(&Text::new(
            m.describe(),
            ((x + 26.0) as i32, y as i32),
            font(14.0),
        ))?;
        y += 24.0;
    }
    y += 16.0;
    let mut notes = vec![
        format!("{} embeddings, method {}", map.points.len(), map.method),
        format!("space {}", map.space_key),
    ];
    match layout {
        Layout::Pca => notes.push("PCA of the vectors (via their Gram matrix)".into()),
        Layout::Tsne => {
            notes.push(format!(
                "t-SNE on {} cosine distances",
                if map.centred { "centred" } else { "plain" }
            ));
            if let Some(p) = map.perplexity {
                notes.push(format!(
                    "perplexity {p:.1}, {} iterations, PCA start",
                    map.tsne_epochs
                ));
            }
        }
    }
    for n in notes {
        root.draw(&Text::new(n, (x as i32, y as i32), font(13.0)))?;
        y += 20.0;
    }
    Ok(())
}
