//! What the machine is doing while a benchmark runs: CPU used by other
//! processes (from `/proc/stat`, minus the measured process's own time) and the
//! peak resident memory of a run (`VmHWM`, reset through `/proc/self/clear_refs`).
//!
//! Linux only; elsewhere every figure is `None`.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Jiffies of the whole machine: (busy, total), from the first line of `/proc/stat`.
pub fn machine_jiffies() -> Option<(u64, u64)> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// (busy, total) from `/proc/stat` text: busy = total − idle − iowait.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    Some((total - v[3] - v[4], total))
}

/// CPU jiffies (user + system, all threads) a process has used, from
/// `/proc/<pid>/stat`.
pub fn process_jiffies(pid: u32) -> Option<u64> {
    parse_pid_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// utime + stime from `/proc/<pid>/stat` text (the command name may hold spaces
/// and parentheses: fields are counted after the last `)`).
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) … utime(11) stime(12).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Logical CPUs the kernel reports.
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Cores' worth of CPU other processes used during `window`, measured while
/// this process sleeps (so all of it is someone else's).
pub fn idle_check(window: Duration) -> Option<f64> {
    let a = machine_jiffies()?;
    std::thread::sleep(window);
    let b = machine_jiffies()?;
    let total = (b.1 - a.1) as f64;
    (total > 0.0).then(|| (b.0 - a.0) as f64 / total * cpu_count() as f64)
}

/// A CPU window over a run: other processes' CPU = machine busy − `pid`'s own.
#[derive(Debug, Clone, Copy)]
pub struct CpuWindow {
    pid: u32,
    machine: Option<(u64, u64)>,
    own: Option<u64>,
    started: Instant,
}

impl CpuWindow {
    /// Starts a window for process `pid` (this process: `std::process::id()`).
    pub fn start(pid: u32) -> Self {
        Self {
            pid,
            machine: machine_jiffies(),
            own: process_jiffies(pid),
            started: Instant::now(),
        }
    }

    /// Cores' worth of CPU used by other processes since [`CpuWindow::start`],
    /// and by `pid` itself.
    pub fn finish(&self) -> (Option<f64>, Option<f64>) {
        let (Some(a), Some(own_a)) = (self.machine, self.own) else {
            return (None, None);
        };
        let (Some(b), Some(own_b)) = (machine_jiffies(), process_jiffies(self.pid)) else {
            return (None, None);
        };
        let total = (b.1 - a.1) as f64;
        if total <= 0.0 || self.started.elapsed().as_secs_f64() <= 0.0 {
            return (None, None);
        }
        let cores = cpu_count() as f64;
        let busy = (b.0 - a.0) as f64 / total * cores;
        let own = ((own_b - own_a) as f64 / total * cores).min(cores);
        (Some((busy - own).max(0.0)), Some(own))
    }
}

/// Resets this process's peak-RSS mark; false when the kernel refused.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// This process's peak resident memory in MiB since the last reset (`VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmHWM:").map(|k| k as f64 / 1024.0)
}

/// Current resident memory in MiB (`VmRSS`).
pub fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmRSS:").map(|k| k as f64 / 1024.0)
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The machine, as a benchmark report records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical CPUs.
    pub logical_cpus: usize,
    /// Whether the CPU reports AVX-512F and AMX (bf16 tiles).
    pub avx512: bool,
    /// AMX tiles present.
    pub amx: bool,
}

impl MachineInfo {
    /// Reads `/proc/cpuinfo`.
    pub fn detect() -> Self {
        let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |key: &str| {
            info.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let flags = field("flags");
        let has = |f: &str| flags.split_whitespace().any(|x| x == f);
        Self {
            cpu: field("model name"),
            logical_cpus: cpu_count(),
            avx512: has("avx512f"),
            amx: has("amx_tile"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 800 20 3 2 10 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        // total = 100+5+50+800+20+3+2+10 = 990; busy = 990 - 800 - 20.
        assert_eq!(parse_proc_stat(text), Some((170, 990)));
        assert_eq!(parse_proc_stat("intr 1 2 3"), None);
    }

    #[test]
    fn pid_stat_fields_count_after_the_name() {
        let text = "4242 (a (weird) name) R 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0";
        assert_eq!(parse_pid_stat(text), Some(150));
    }

    #[test]
    fn own_process_is_measured() {
        let w = CpuWindow::start(std::process::id());
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (others, own) = w.finish();
        if let (Some(o), Some(own)) = (others, own) {
            assert!(o >= 0.0);
            assert!(own > 0.0, "a busy loop used no CPU: {own}");
        }
    }
}
