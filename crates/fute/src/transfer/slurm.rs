//! A plan as Slurm job arrays.
//!
//! Two arrays: the jobs without dependencies (source fine-tunes and baselines)
//! first, then the transfers in a second array submitted with
//! `--dependency=afterok:<first array>`, so no transfer starts before every
//! source model exists. Every array task runs `fute transfer run RUN_DIR --job
//! $SLURM_ARRAY_TASK_ID`, one CPU, `CANDLE_NUM_THREADS=1`; each writes its own
//! result file, so the tasks never share a file and `fute transfer collect`
//! merges them afterwards. Array indices are the plan's job indices.

use std::path::Path;

use super::plan::Plan;

/// Paths and options baked into the scripts.
#[derive(Debug, Clone)]
pub struct SlurmOptions<'a> {
    /// Absolute path of the `fute` binary the nodes run.
    pub fute: &'a Path,
    /// Absolute run folder (on storage every node sees).
    pub run_dir: &'a Path,
    /// Workspace folder passed as `--workspace`.
    pub workspace: &'a Path,
    /// Asset cache passed as `--assets`.
    pub assets: &'a Path,
    /// `--partition`, when given.
    pub partition: Option<&'a str>,
    /// `--time` per array task (Slurm's `HH:MM:SS`).
    pub time: &'a str,
    /// `--mem` per array task (e.g. `4G`).
    pub mem: &'a str,
}

/// Quotes a string for a POSIX shell (single quotes; `'` as `'\''`).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Slurm's array syntax for a sorted index list, with ranges (`0-3,7,9-10`).
pub fn array_spec(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

fn batch_file(name: &str, indices: &[usize], o: &SlurmOptions) -> String {
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let logs = o.run_dir.join("slurm").join("logs");
    let mut s = String::from("#!/bin/bash\n");
    s.push_str(&format!("#SBATCH --job-name=fute-{name}\n"));
    s.push_str(&format!("#SBATCH --array={}\n", array_spec(indices)));
    s.push_str("#SBATCH --ntasks=1\n#SBATCH --cpus-per-task=1\n");
    s.push_str(&format!(
        "#SBATCH --time={}\n#SBATCH --mem={}\n",
        o.time, o.mem
    ));
    if let Some(p) = o.partition {
        s.push_str(&format!("#SBATCH --partition={p}\n"));
    }
    s.push_str(&format!(
        "#SBATCH --output={}/%A_%a.out\n",
        logs.to_string_lossy()
    ));
    s.push_str("set -euo pipefail\nexport CANDLE_NUM_THREADS=1\n");
    s.push_str(&format!(
        "exec {} --workspace {} --assets {} transfer run {} --job \"$SLURM_ARRAY_TASK_ID\"\n",
        q(o.fute),
        q(o.workspace),
        q(o.assets),
        q(o.run_dir)
    ));
    s
}

/// The files of a Slurm submission: `(file name, contents)` for
/// `slurm/first.sbatch`, `slurm/transfers.sbatch` (absent when the plan has no
/// transfers) and `slurm/submit.sh`, which submits both and prints the two
/// Slurm job ids.
pub fn scripts(plan: &Plan, o: &SlurmOptions) -> Vec<(String, String)> {
    let first: Vec<usize> = plan
        .jobs
        .iter()
        .filter(|j| j.depends_on.is_empty())
        .map(|j| j.index)
        .collect();
    let second: Vec<usize> = plan
        .jobs
        .iter()
        .filter(|j| !j.depends_on.is_empty())
        .map(|j| j.index)
        .collect();
    let dir = o.run_dir.join("slurm");
    let q = |p: &Path| shell_quote(&p.to_string_lossy());
    let mut files = vec![("first.sbatch".to_string(), batch_file("sources", &first, o))];
    let mut submit = String::from(
        "#!/bin/bash\n# Submits the plan as Slurm job arrays (written by `fute transfer slurm`).\n\
         # Array task i runs job i of plan.json; afterwards: fute transfer collect RUN_DIR\n\
         set -euo pipefail\n",
    );
    submit.push_str(&format!("mkdir -p {}\n", q(&dir.join("logs"))));
    submit.push_str(&format!(
        "first=$(sbatch --parsable {})\nfirst=${{first%%;*}}\necho \"$first\"\n",
        q(&dir.join("first.sbatch"))
    ));
    if !second.is_empty() {
        files.push((
            "transfers.sbatch".to_string(),
            batch_file("transfers", &second, o),
        ));
        submit.push_str(&format!(
            "second=$(sbatch --parsable --dependency=afterok:\"$first\" {})\n\
             second=${{second%%;*}}\necho \"$second\"\n",
            q(&dir.join("transfers.sbatch"))
        ));
    }
    files.push(("submit.sh".to_string(), submit));
    files
}
