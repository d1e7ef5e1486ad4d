//! Task maps and run reports: PCA and cosines against scikit-learn, a map of stored
//! embeddings on the tiny BERT written as PNG, SVG and HTML, and escaping of user text.

mod common;

use fute::map::reduce::{cosine_matrix, pca_from_gram};
use fute::map::{Marker, TaskClass};
use fute_core::similarity::Gram;

fn golden() -> serde_json::Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/map_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn matrix(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

#[test]
fn pca_from_the_gram_matrix_matches_scikit_learn() {
    for (k, case) in golden()["cases"].as_array().unwrap().iter().enumerate() {
        let vectors: Vec<Vec<f32>> = matrix(&case["vectors"])
            .into_iter()
            .map(|r| r.into_iter().map(|x| x as f32).collect())
            .collect();
        let g = Gram::of_vectors(&vectors).total();
        let p = pca_from_gram(&g);
        let want = matrix(&case["pca"]);
        let scale = want.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
        for c in 0..2 {
            // A principal component's sign is arbitrary: align it, then compare.
            let dot: f64 = (0..want.len()).map(|i| want[i][c] * p.coords[i][c]).sum();
            let s = dot.signum();
            for (i, (got, w)) in p.coords.iter().zip(&want).enumerate() {
                let err = (s * got[c] - w[c]).abs();
                assert!(
                    err <= 1e-6 * scale,
                    "case {k} point {i} PC{}: {} vs {}",
                    c + 1,
                    got[c],
                    w[c]
                );
            }
            let ev = case["explained_variance_ratio"][c].as_f64().unwrap();
            assert!(
                (p.explained[c] - ev).abs() < 1e-9,
                "case {k}: explained {} vs {ev}",
                p.explained[c]
            );
        }
        for (key, centre) in [("cosine", false), ("centred_cosine", true)] {
            let want = matrix(&case[key]);
            let got = cosine_matrix(&g, centre);
            for i in 0..want.len() {
                for j in 0..want.len() {
                    assert!(
                        (got[i][j] - want[i][j]).abs() < 1e-9,
                        "case {k} {key}[{i}][{j}]: {} vs {}",
                        got[i][j],
                        want[i][j]
                    );
                }
            }
        }
    }
}

#[test]
fn a_map_of_stored_embeddings_writes_png_svg_and_html() {
    let tmp = tempfile::tempdir().unwrap();
    let (html_path, map) = common::write_report(tmp.path());
    // Classes and markers come from schema, provenance and prompt sets.
    let by_label = |l: &str| map.points.iter().find(|p| p.subject == l).unwrap().clone();
    assert_eq!(
        (by_label("imdb").class, by_label("imdb").marker),
        (TaskClass::Sa, Marker::Dte)
    );
    assert_eq!(by_label("snli").class, TaskClass::Nli);
    assert_eq!(by_label("models/imdb").marker, Marker::ModelMte);
    assert_eq!(
        by_label("models/imdb").label,
        "imdb (model)",
        "short, unique labels"
    );
    assert_eq!(by_label("smollm2:sa#0").marker, Marker::LlmVanilla);
    assert_eq!(by_label("smollm2:sa#10").marker, Marker::LlmCot);
    assert_eq!(by_label("smollm2:nli#1").class, TaskClass::Nli);
    assert_eq!(map.tsne.as_ref().unwrap().len(), 7);
    assert!(map
        .tsne
        .as_ref()
        .unwrap()
        .iter()
        .flatten()
        .all(|x| x.is_finite()));
    // Neighbours come from the same cosine matrix, best first.
    for (i, nn) in map.neighbours.iter().enumerate() {
        assert_eq!(nn.len(), 5);
        assert!(nn.windows(2).all(|w| w[0].1 >= w[1].1));
        assert!(nn
            .iter()
            .all(|&(j, c)| j != i && (c - map.cosine[i][j]).abs() < 1e-15));
    }

    let run = html_path.parent().unwrap();
    for layout in ["pca", "tsne"] {
        let png = std::fs::read(run.join(format!("map-fim-{layout}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            png.len() > 10_000,
            "a {layout} PNG of {} bytes is too small to hold a map",
            png.len()
        );
        let svg = std::fs::read_to_string(run.join(format!("map-fim-{layout}.svg"))).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        for p in &map.points {
            if p.subject != common::EVIL {
                assert!(
                    svg.contains(&format!(">{}<", p.label)) || svg.contains(&p.label),
                    "{layout} SVG lacks {}",
                    p.label
                );
            }
        }
        assert!(
            svg.contains("&lt;img src=x"),
            "the markup name is text in the SVG"
        );
        assert!(!svg.contains("<img"), "no markup from user text in the SVG");
    }
    let csv = std::fs::read_to_string(run.join("map-fim.csv")).unwrap();
    assert_eq!(csv.lines().count(), 8);
    assert!(
        csv.contains("\"<img src=x onerror=alert(1)>&\"\"rt\"\"\""),
        "CSV quoting: {csv}"
    );
    let subjects = std::fs::read_to_string(run.join("subjects.csv")).unwrap();
    assert!(
        subjects.starts_with("subject,kind\nimdb,dte\n"),
        "{subjects}"
    );

    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        !html.contains(common::EVIL),
        "user text must be escaped everywhere"
    );
    assert!(!html.contains("<img src=x"), "no injected element");
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;&amp;&quot;rt&quot;"));
    assert!(html.contains("data:image/png;base64,"), "maps inline");
    assert!(html.contains("class=\"explorer\""));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no network resource"
    );
    assert!(html.contains("<th>subject</th>") && html.contains("smollm2:sa#10"));
    assert!(html.contains(env!("CARGO_PKG_VERSION")) && html.contains(fute::report::GIT_COMMIT));
    let prov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("provenance.json")).unwrap())
            .unwrap();
    assert_eq!(prov["seeds"]["embedding"], 3);
    assert_eq!(prov["timings"][0][0], "nothing");
    assert!(run.parent().unwrap().ends_with("runs"));

    // Keep the pictures for a person to look at.
    let keep = common::artefacts();
    for f in ["map-fim-pca.png", "map-fim-tsne.png", "report.html"] {
        std::fs::copy(run.join(f), keep.join(f)).unwrap();
    }
    println!("map pictures and report kept in {}", keep.display());
}

#[test]
fn a_map_needs_two_embeddings_of_one_space() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, records) = common::store_with_embeddings(tmp.path());
    let err =
        fute::map::TaskMap::build(&store, &records[..1], None, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("at least 2 embeddings"), "{err}");
    let mut other = records[1].clone();
    other.meta.space.method = "prefix".into();
    let err = fute::map::TaskMap::build(
        &store,
        &[records[0].clone(), other],
        None,
        &Default::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("different spaces"), "{err}");
}
