//! Where each point's label goes: greedy placement that avoids other labels and markers.
//!
//! Points are taken in order; for each, candidate positions around the marker (right,
//! left, above, below, the diagonals; then the same farther out) are tried and the first
//! that overlaps nothing already placed and stays inside the plot wins. When none is
//! free, the candidate with the least overlap is used, so every point keeps its label.

/// An axis-aligned box in pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bbox {
    /// Left edge.
    pub x: f64,
    /// Top edge.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
}

impl Bbox {
    /// Area of the intersection of two boxes (0 when disjoint).
    pub fn overlap(&self, o: &Bbox) -> f64 {
        let w = (self.x + self.w).min(o.x + o.w) - self.x.max(o.x);
        let h = (self.y + self.h).min(o.y + o.h) - self.y.max(o.y);
        if w > 0.0 && h > 0.0 {
            w * h
        } else {
            0.0
        }
    }

    fn outside(&self, area: &Bbox) -> f64 {
        self.w * self.h - self.overlap(area)
    }
}

/// Width and height in pixels of `text` at font size `size` (sans-serif): an estimate
/// (0.6 em per character) that works without the font, so SVG and PNG agree.
pub fn text_size(text: &str, size: f64) -> (f64, f64) {
    (text.chars().count() as f64 * 0.6 * size + 2.0, size * 1.25)
}

/// The top-left corner of each label. `points` are marker centres, `sizes` the labels'
/// (width, height), `marker` the markers' radius, `area` the box labels must stay in.
pub fn place(
    points: &[(f64, f64)],
    sizes: &[(f64, f64)],
    marker: f64,
    area: Bbox,
) -> Vec<(f64, f64)> {
    let markers: Vec<Bbox> = points
        .iter()
        .map(|&(x, y)| Bbox {
            x: x - marker,
            y: y - marker,
            w: 2.0 * marker,
            h: 2.0 * marker,
        })
        .collect();
    let mut placed: Vec<Bbox> = Vec::with_capacity(points.len());
    for (i, (&(px, py), &(w, h))) in points.iter().zip(sizes).enumerate() {
        let mut best: Option<(f64, Bbox)> = None;
        'rings: for ring in [0.0, 10.0, 22.0, 36.0] {
            let gap = marker + 3.0 + ring;
            let candidates = [
                (px + gap, py - h / 2.0),
                (px - gap - w, py - h / 2.0),
                (px - w / 2.0, py - gap - h),
                (px - w / 2.0, py + gap),
                (px + gap * 0.7, py - gap * 0.7 - h),
                (px + gap * 0.7, py + gap * 0.7),
                (px - gap * 0.7 - w, py - gap * 0.7 - h),
                (px - gap * 0.7 - w, py + gap * 0.7),
            ];
            for (x, y) in candidates {
                let b = Bbox { x, y, w, h };
                let cost: f64 = placed.iter().map(|p| p.overlap(&b)).sum::<f64>()
                    + markers
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, m)| m.overlap(&b))
                        .sum::<f64>()
                    + 4.0 * b.outside(&area)
                    // Farther labels read worse: a small price per pixel of distance.
                    + ring * 0.01;
                if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                    best = Some((cost, b));
                }
                if cost <= ring * 0.01 {
                    break 'rings;
                }
            }
        }
        let b = best.map(|(_, b)| b).unwrap_or(Bbox { x: px, y: py, w, h });
        placed.push(b);
    }
    placed.into_iter().map(|b| (b.x, b.y)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_of_close_points_do_not_overlap() {
        // Five points in a tight cluster: each label must find free room.
        let points: Vec<(f64, f64)> = (0..5)
            .map(|i| (300.0 + 4.0 * i as f64, 200.0 + 3.0 * i as f64))
            .collect();
        let sizes: Vec<(f64, f64)> = (0..5)
            .map(|i| text_size(&format!("dataset-{i}"), 13.0))
            .collect();
        let area = Bbox {
            x: 0.0,
            y: 0.0,
            w: 800.0,
            h: 600.0,
        };
        let at = place(&points, &sizes, 6.0, area);
        let boxes: Vec<Bbox> = at
            .iter()
            .zip(&sizes)
            .map(|(&(x, y), &(w, h))| Bbox { x, y, w, h })
            .collect();
        for i in 0..5 {
            assert!(boxes[i].outside(&area) == 0.0, "label {i} leaves the plot");
            for j in 0..i {
                assert_eq!(
                    boxes[i].overlap(&boxes[j]),
                    0.0,
                    "labels {i} and {j} overlap: {boxes:?}"
                );
            }
        }
    }

    #[test]
    fn a_label_at_the_right_edge_goes_left() {
        let area = Bbox {
            x: 0.0,
            y: 0.0,
            w: 400.0,
            h: 300.0,
        };
        let size = text_size("a long label", 13.0);
        let at = place(&[(395.0, 150.0)], &[size], 6.0, area);
        assert!(at[0].0 + size.0 <= 400.0, "{at:?}");
    }
}
