//! `stats`: what a container uses, sampled from its cgroup and its network namespace. A front
//! end takes two samples and shows the difference (CPU) and the latest values (the rest), as
//! docker's CLI does with its API's `precpu_stats` and `cpu_stats`.

use std::time::Instant;

use crate::container::Container;

/// One reading of a container's usage.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// CPU time of every process of the container since it started, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory in use as docker counts it (usage less inactive page cache).
    pub memory: u64,
    /// The memory limit, or the host's memory when unlimited (as docker shows it).
    pub memory_limit: u64,
    pub pids: u64,
    /// Bytes received and sent on the container's interfaces but `lo`.
    pub net_rx: u64,
    pub net_tx: u64,
}

impl Sample {
    /// CPU use between `before` and this sample, in percent of one CPU (200% is two busy CPUs).
    pub fn cpu_percent(&self, before: &Sample) -> f64 {
        let wall = self.at.saturating_duration_since(before.at).as_nanos().max(1) as f64;
        self.cpu_ns.saturating_sub(before.cpu_ns) as f64 / wall * 100.0
    }

    /// Memory in use, in percent of the limit.
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 { 0.0 } else { self.memory as f64 / self.memory_limit as f64 * 100.0 }
    }
}

/// A sample of `c` now; zeros (and the host's memory as the limit) for a container that does
/// not run or has no cgroup.
pub fn sample(c: &Container) -> Sample {
    let host_memory = host_memory();
    let cgroup = c.state.cgroup.as_deref().and_then(|n| executor::cgroup::Cgroup::open(n).ok()?.stats().ok());
    let (net_rx, net_tx) = if c.state.pid > 0 { net_io(c.state.pid) } else { (0, 0) };
    let mut s = Sample {
        at: Instant::now(),
        cpu_ns: 0,
        memory: 0,
        memory_limit: host_memory,
        pids: 0,
        net_rx,
        net_tx,
    };
    if let Some(st) = cgroup {
        s.cpu_ns = st.cpu_usage_ns;
        s.memory = st.memory_usage;
        s.memory_limit = st.memory_limit.unwrap_or(host_memory).min(host_memory.max(1));
        s.pids = st.pids_current;
    }
    s
}

/// Received and sent bytes of every interface but `lo` in `pid`'s network namespace.
fn net_io(pid: i32) -> (u64, u64) {
    let Ok(dev) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) else { return (0, 0) };
    let mut rx = 0;
    let mut tx = 0;
    // Two header lines, then `name: rx_bytes packets ... tx_bytes ...`.
    for line in dev.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        rx += f.first().copied().unwrap_or(0);
        tx += f.get(8).copied().unwrap_or(0);
    }
    (rx, tx)
}

/// CPU time of the whole host since boot, in nanoseconds (the `cpu` line of `/proc/stat`):
/// docker's `system_cpu_usage`, against which a client weighs a container's CPU time.
pub fn system_cpu_ns() -> u64 {
    // SAFETY: sysconf with a valid name reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("cpu "))?;
            Some(line.split_whitespace().skip(1).filter_map(|v| v.parse::<u64>().ok()).sum::<u64>())
        })
        .map_or(0, |ticks| ticks.saturating_mul(1_000_000_000 / hz))
}

/// The CPUs this process may run on (docker's `online_cpus`).
pub fn online_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

/// The host's memory in bytes (`MemTotal`), 0 if unknown.
pub fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn percentages() {
        let at = Instant::now();
        let before = Sample { at, cpu_ns: 0, memory: 0, memory_limit: 100, pids: 1, net_rx: 0, net_tx: 0 };
        let after = Sample { at: at + Duration::from_secs(1), cpu_ns: 1_500_000_000, memory: 25, ..before };
        assert!((after.cpu_percent(&before) - 150.0).abs() < 1e-9);
        assert!((after.memory_percent() - 25.0).abs() < 1e-9);
        assert_eq!(Sample { memory_limit: 0, ..after }.memory_percent(), 0.0);
        assert!(host_memory() > 0);
        assert!(system_cpu_ns() > 0 && online_cpus() > 0);
    }
}
