//! The PyTorch peer: `scripts/bench/peer_torch.py` (embedded in the binary),
//! run by the given Python as one child process that answers one JSON line per
//! workload on stdin/stdout, so its model loads once and every row runs right
//! after fute's.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::Context as _;
use serde::Deserialize;

use super::{machine, Measurement, Workload};

/// The peer script, as committed under `scripts/bench/`.
pub const SCRIPT: &str = include_str!("../../../../scripts/bench/peer_torch.py");

/// A running peer.
pub struct TorchPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// `torch X, transformers Y` as the peer reports them.
    pub versions: String,
    _script: tempfile::TempPath,
}

#[derive(Deserialize)]
struct Hello {
    torch: String,
    transformers: String,
    threads: usize,
}

#[derive(Deserialize)]
struct Answer {
    seconds: Option<f64>,
    examples: Option<usize>,
    peak_rss_mib: Option<f64>,
    error: Option<String>,
}

impl TorchPeer {
    /// Starts `python scripts/bench/peer_torch.py` on the model folder `model`
    /// with `threads` intra-op threads and waits for it to load.
    ///
    /// # Errors
    /// When Python cannot start or lacks torch / transformers (the message says
    /// which and how to install them).
    pub fn start(python: &Path, model: &Path, threads: usize) -> anyhow::Result<Self> {
        let mut file = tempfile::Builder::new()
            .prefix("fute-peer-")
            .suffix(".py")
            .tempfile()?;
        file.write_all(SCRIPT.as_bytes())?;
        let script = file.into_temp_path();
        let mut child = Command::new(python)
            .arg(&*script)
            .arg("--model")
            .arg(model)
            .arg("--threads")
            .arg(threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .env("MKL_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run the peer Python `{}`", python.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let hello: Hello = serde_json::from_str(line.trim()).with_context(|| {
            format!(
                "the peer `{}` did not start (it needs torch and transformers: \
                 `{} -m pip install torch transformers safetensors`); it said: {:?}",
                python.display(),
                python.display(),
                line.trim()
            )
        })?;
        anyhow::ensure!(
            hello.threads == threads,
            "peer runs {} threads, asked {threads}",
            hello.threads
        );
        Ok(Self {
            child,
            stdin,
            stdout,
            versions: format!("torch {}, transformers {}", hello.torch, hello.transformers),
            _script: script,
        })
    }

    /// Runs workload `w` on the token ids `ids` in the peer. Other processes'
    /// CPU during the run is measured here (machine busy − the peer's own).
    pub fn run(&mut self, w: &Workload, ids: &[Vec<u32>]) -> anyhow::Result<Measurement> {
        self.run_on(w, ids, None)
    }

    /// [`TorchPeer::run`] on the HF folder `model` (an arch row: any
    /// architecture, loaded with `AutoModelForSequenceClassification`) instead
    /// of the MiniLM folder the peer started with.
    pub fn run_on(
        &mut self,
        w: &Workload,
        ids: &[Vec<u32>],
        model: Option<&Path>,
    ) -> anyhow::Result<Measurement> {
        let load_before = machine::idle_check(std::time::Duration::from_millis(700));
        let request = serde_json::json!({ "workload": w, "ids": ids, "model": model });
        let window = machine::CpuWindow::start(self.child.id());
        writeln!(self.stdin, "{request}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let (others_during, own_cores) = window.finish();
        let a: Answer = serde_json::from_str(line.trim())
            .with_context(|| format!("peer answered {:?} to {}", line.trim(), w.id))?;
        if let Some(e) = a.error {
            anyhow::bail!("{e}");
        }
        Ok(Measurement {
            seconds: a.seconds.context("peer answer lacks seconds")?,
            examples: a.examples.context("peer answer lacks examples")?,
            peak_rss_mib: a.peak_rss_mib,
            load_before,
            others_during,
            own_cores,
        })
    }
}

impl Drop for TorchPeer {
    fn drop(&mut self) {
        // Closing stdin ends the peer's loop; do not leave it running.
        let _ = writeln!(self.stdin, "{{\"quit\": true}}");
        let _ = self.stdin.flush();
        if self.child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if self.child.try_wait().ok().flatten().is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}
