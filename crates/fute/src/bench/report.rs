//! Benchmark results: per-row measurements of fute and the peer, the ratio, and
//! the Markdown table the README's performance section is generated from.

use serde::{Deserialize, Serialize};

use super::machine::MachineInfo;
use super::Workload;

/// One timed run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Wall time of the timed part, seconds.
    pub seconds: f64,
    /// Examples (or LLM calls) it processed.
    pub examples: usize,
    /// Peak resident memory of the process during the run, MiB (`VmHWM` after a
    /// reset; the peer reports its own).
    pub peak_rss_mib: Option<f64>,
    /// Cores' worth of CPU other processes used in the 0.7 s before the run.
    pub load_before: Option<f64>,
    /// Cores' worth of CPU other processes used during the run.
    pub others_during: Option<f64>,
    /// Cores' worth of CPU the measured process used during the run.
    pub own_cores: Option<f64>,
}

impl Measurement {
    /// Examples per second.
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.examples as f64 / self.seconds
        } else {
            f64::NAN
        }
    }
}

/// One row: the workload, fute's run, the peer's run (if any).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// What ran.
    pub workload: Workload,
    /// fute's measurement.
    pub fute: Option<Measurement>,
    /// The peer's measurement.
    pub peer: Option<Measurement>,
    /// Why fute or the peer has no figure, if so.
    pub note: Option<String>,
}

impl Row {
    /// fute ex/s ÷ peer ex/s.
    pub fn ratio(&self) -> Option<f64> {
        Some(self.fute.as_ref()?.per_second() / self.peer.as_ref()?.per_second())
    }

    fn gflops(&self, m: &Option<Measurement>) -> Option<f64> {
        Some(self.workload.flops_per_example()? * m.as_ref()?.per_second() / 1e9)
    }
}

/// A whole invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    /// UTC time the run started (RFC 3339).
    pub started: String,
    /// The fute version and, when known, the git commit it was built from.
    pub fute: String,
    /// The machine.
    pub machine: MachineInfo,
    /// Threads each side used (rayon / torch intra-op).
    pub threads: usize,
    /// candle's matmul thread count as candle reports it.
    pub candle_matmul_threads: usize,
    /// The peer's versions (torch, transformers, server), if one ran.
    pub peer: Option<String>,
    /// Resident memory of the loaded LLM backend, MiB (after load), if measured.
    pub llm_rss_mib: Option<f64>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Wall time of the whole invocation, seconds.
    pub total_seconds: f64,
}

fn num(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "—".into(),
    }
}

/// Shapes of a row in words.
pub fn shape(w: &Workload) -> String {
    use super::Kind::*;
    match w.kind {
        LlmLabels | LlmPerplexity => format!("{} calls", w.units),
        FisherPerExample => format!("{} ex × T={}", w.units, w.seq_len),
        FisherPerBatch | FisherSquareOfMean => {
            format!("B={}, {} ex × T={}", w.batch, w.units, w.seq_len)
        }
        _ => format!("B={}, {} batches × T={}", w.batch, w.units, w.seq_len),
    }
}

impl BenchReport {
    /// The side-by-side table in Markdown (what the README shows).
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "fute {} vs {}, {} thread(s) each, {} ({} logical CPUs{}), started {}; {:.0} s in all.\n\n",
            self.fute,
            self.peer.as_deref().unwrap_or("no peer"),
            self.threads,
            self.machine.cpu,
            self.machine.logical_cpus,
            if self.machine.avx512 { ", AVX-512" } else { "" },
            self.started,
            self.total_seconds
        ));
        s.push_str(
            "| row | shape | fute ex/s | peer ex/s | fute / peer | fute GFLOP/s | peer GFLOP/s | \
             fute peak MiB | peer peak MiB | other load before / during (cores) |\n",
        );
        s.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for r in &self.rows {
            let per = |m: &Option<Measurement>| num(m.as_ref().map(Measurement::per_second), 2);
            let mem = |m: &Option<Measurement>| num(m.as_ref().and_then(|m| m.peak_rss_mib), 0);
            let load = |m: &Option<Measurement>| match m {
                Some(m) => format!("{}/{}", num(m.load_before, 2), num(m.others_during, 2)),
                None => "—".into(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | fute {}, peer {} |\n",
                r.workload.id,
                shape(&r.workload),
                per(&r.fute),
                per(&r.peer),
                num(r.ratio(), 2),
                num(r.gflops(&r.fute), 1),
                num(r.gflops(&r.peer), 1),
                mem(&r.fute),
                mem(&r.peer),
                load(&r.fute),
                load(&r.peer),
            ));
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .filter_map(|r| r.note.as_ref().map(|n| format!("- {}: {n}", r.workload.id)))
            .collect();
        if !notes.is_empty() {
            s.push('\n');
            s.push_str(&notes.join("\n"));
            s.push('\n');
        }
        if let Some(m) = self.llm_rss_mib {
            s.push_str(&format!("\nLLM backend resident after load: {m:.0} MiB.\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::default_workloads;

    fn m(seconds: f64, examples: usize) -> Measurement {
        Measurement {
            seconds,
            examples,
            peak_rss_mib: Some(512.0),
            load_before: Some(0.05),
            others_during: Some(0.1),
            own_cores: Some(1.9),
        }
    }

    #[test]
    fn ratio_and_gflops_come_from_the_same_flop_count() {
        let w = default_workloads(4)[0].clone(); // train-b8
        let row = Row {
            workload: w.clone(),
            fute: Some(m(2.0, 24)),
            peer: Some(m(3.0, 24)),
            note: None,
        };
        assert!((row.ratio().unwrap() - 1.5).abs() < 1e-12);
        let f = row.gflops(&row.fute).unwrap();
        let p = row.gflops(&row.peer).unwrap();
        assert!((f / p - 1.5).abs() < 1e-12);
        // 3 × forward of MiniLM at T=128 ≈ 8.6 GFLOP per example (peer-baselines.md).
        assert!((w.flops_per_example().unwrap() / 1e9 - 8.6).abs() < 0.1);
    }

    #[test]
    fn markdown_has_a_line_per_row_and_dashes_for_missing_figures() {
        let rows: Vec<Row> = default_workloads(2)
            .into_iter()
            .map(|w| Row {
                workload: w,
                fute: Some(m(1.0, 8)),
                peer: None,
                note: Some("no peer given".into()),
            })
            .collect();
        let report = BenchReport {
            started: "2026-11-30T00:00:00Z".into(),
            fute: "0.1.0".into(),
            machine: MachineInfo {
                cpu: "test cpu".into(),
                logical_cpus: 2,
                avx512: true,
                amx: false,
            },
            threads: 2,
            candle_matmul_threads: 2,
            peer: None,
            llm_rss_mib: None,
            rows: rows.clone(),
            total_seconds: 1.0,
        };
        let md = report.markdown();
        for r in &rows {
            assert!(md.contains(&format!("| {} |", r.workload.id)));
        }
        assert!(md.contains("| 8.00 | — | — |"));
        let back: BenchReport =
            serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back.markdown(), md);
    }
}
