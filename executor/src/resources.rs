//! Resource limits as docker takes them: `--memory`, `--cpus`, `--cpu-shares`, `--pids-limit`
//! (and the Engine API's `Memory`, `NanoCpus`, `CpuShares`, `PidsLimit`), checked once with
//! docker's rules for every front end and every command (`build`, `run`, `create`).

use serde::{Deserialize, Serialize};

use crate::Resources;

/// A resource flag docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("--memory {0:?}: not a size (e.g. 512m, 2g)")]
    BadMemory(String),
    /// Docker's floor: below it a container cannot even start its init.
    #[error("--memory {0:?}: the minimum memory limit is 6MiB")]
    MemoryTooSmall(String),
    #[error("--cpus {0:?}: not a number")]
    BadCpus(String),
    #[error("--cpus {value:?}: the range of CPUs is from 0.01 to {cpus}, as there are only {cpus} CPUs")]
    CpusOutOfRange { value: String, cpus: usize },
}

/// The smallest memory limit docker accepts (its `linuxMinMemory`).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// The cpu-shares range of the kernel (docker's `linuxMinCPUShares`/`linuxMaxCPUShares`): a value
/// outside is moved to the nearest bound, as docker does.
const CPU_SHARES: (u64, u64) = (2, 262_144);

/// The CFS period rbuild gives a `--cpus` limit (docker's default, 100 ms).
const CPU_PERIOD_US: u64 = 100_000;

impl Resources {
    /// Limits from docker's flags as the user typed them: `memory` in go-units' syntax (`64m`,
    /// `1g`; 0 means none), `cpus` a decimal (`1.5`; 0 means none), `cpu_shares` (0 means the
    /// default), `pids_limit` (0 or negative means none).
    pub fn from_flags(
        memory: Option<&str>,
        cpus: Option<&str>,
        cpu_shares: Option<i64>,
        pids_limit: Option<i64>,
    ) -> Result<Resources, ResourceError> {
        let memory = match memory {
            None => 0,
            Some(m) => {
                let bytes = hostutil::units::ram_in_bytes(m.trim())
                    .ok_or_else(|| ResourceError::BadMemory(m.into()))?;
                if bytes != 0 && bytes < MIN_MEMORY {
                    // Said in the user's words.
                    return Err(ResourceError::MemoryTooSmall(m.into()));
                }
                bytes
            }
        };
        let nano_cpus = match cpus {
            None => 0,
            Some(c) => {
                let n: f64 = c.trim().parse().map_err(|_| ResourceError::BadCpus(c.into()))?;
                if !n.is_finite() || n < 0.0 {
                    return Err(ResourceError::BadCpus(c.into()));
                }
                (n * 1e9).round() as u64
            }
        };
        Resources::from_docker(memory, nano_cpus, cpu_shares.unwrap_or(0), pids_limit.unwrap_or(0))
    }

    /// Limits from the numbers docker's API carries (`HostConfig.Memory`, `NanoCpus`,
    /// `CpuShares`, `PidsLimit`), with docker's rules: 0 means no limit (and no shares set),
    /// a memory limit is at least [`MIN_MEMORY`], CPUs are from 0.01 to this machine's count,
    /// shares are moved into the kernel's range, a pids limit of 0 or less is none.
    pub fn from_docker(
        memory: u64,
        nano_cpus: u64,
        cpu_shares: i64,
        pids_limit: i64,
    ) -> Result<Resources, ResourceError> {
        let mut r = Resources::default();
        if memory != 0 {
            if memory < MIN_MEMORY {
                return Err(ResourceError::MemoryTooSmall(memory.to_string()));
            }
            r.memory = Some(memory);
        }
        if nano_cpus != 0 {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if nano_cpus < 10_000_000 || nano_cpus > cpus as u64 * 1_000_000_000 {
                return Err(ResourceError::CpusOutOfRange {
                    value: format!("{}", nano_cpus as f64 / 1e9),
                    cpus,
                });
            }
            r.cpu_period = Some(CPU_PERIOD_US);
            r.cpu_quota = Some(nano_cpus * CPU_PERIOD_US / 1_000_000_000);
        }
        if cpu_shares > 0 {
            r.cpu_shares = Some((cpu_shares as u64).clamp(CPU_SHARES.0, CPU_SHARES.1));
        }
        if pids_limit > 0 {
            r.pids = Some(pids_limit as u64);
        }
        Ok(r)
    }

    /// `--cpus` as docker's API gives it back (`HostConfig.NanoCpus`): CPUs times 10^9.
    pub fn nano_cpus(&self) -> u64 {
        match (self.cpu_quota, self.cpu_period) {
            (Some(q), Some(p)) if p > 0 => q * 1_000_000_000 / p,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(
        m: Option<&str>,
        c: Option<&str>,
        s: Option<i64>,
        p: Option<i64>,
    ) -> Result<Resources, ResourceError> {
        Resources::from_flags(m, c, s, p)
    }

    #[test]
    fn docker_rules() {
        let r = flags(Some("64m"), Some("0.5"), Some(512), Some(100)).unwrap();
        assert_eq!(r.memory, Some(64 << 20));
        assert_eq!((r.cpu_quota, r.cpu_period), (Some(50_000), Some(100_000)));
        assert_eq!((r.cpu_shares, r.pids), (Some(512), Some(100)));
        assert_eq!(r.nano_cpus(), 500_000_000);
        // Zero (and a negative pids limit) mean no limit, as docker.
        assert_eq!(flags(Some("0"), Some("0"), Some(0), Some(-1)).unwrap(), Resources::default());
        // Shares outside the kernel's range are moved into it.
        assert_eq!(flags(None, None, Some(1), None).unwrap().cpu_shares, Some(2));
        assert_eq!(flags(None, None, Some(1 << 30), None).unwrap().cpu_shares, Some(262_144));
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            flags(Some("4m"), None, None, None).unwrap_err(),
            ResourceError::MemoryTooSmall("4m".into())
        );
        assert!(matches!(flags(Some("lots"), None, None, None), Err(ResourceError::BadMemory(_))));
        assert!(matches!(flags(None, Some("x"), None, None), Err(ResourceError::BadCpus(_))));
        assert!(matches!(flags(None, Some("-1"), None, None), Err(ResourceError::BadCpus(_))));
        assert!(matches!(flags(None, Some("0.001"), None, None), Err(ResourceError::CpusOutOfRange { .. })));
        assert!(matches!(flags(None, Some("100000"), None, None), Err(ResourceError::CpusOutOfRange { .. })));
        assert_eq!(
            flags(Some("1k"), None, None, None).unwrap_err().to_string(),
            "--memory \"1k\": the minimum memory limit is 6MiB"
        );
    }
}

/// A process limit as docker's `--ulimit NAME=SOFT[:HARD]` gives it (`nofile=1024:2048`;
/// `-1` is unlimited). Set with setrlimit in the sandbox before the process runs; a limit above
/// rbuild's own hard limit fails there (raising one needs CAP_SYS_RESOURCE).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// docker's name: `nofile`, `nproc`, `core`, `stack`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The names docker's `--ulimit` takes (go-units' `ulimitNameMapping`).
pub const ULIMIT_NAMES: [&str; 16] = [
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// A `--ulimit` docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlimitError {
    #[error("invalid ulimit argument: {0}")]
    Syntax(String),
    #[error("invalid ulimit type: {0}")]
    Name(String),
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    SoftAboveHard { soft: i64, hard: i64 },
}

impl std::str::FromStr for Ulimit {
    type Err = UlimitError;

    fn from_str(s: &str) -> Result<Ulimit, UlimitError> {
        let (name, values) = s.split_once('=').ok_or_else(|| UlimitError::Syntax(s.to_string()))?;
        if !ULIMIT_NAMES.contains(&name) {
            return Err(UlimitError::Name(name.to_string()));
        }
        let number = |v: &str| v.parse::<i64>().map_err(|_| UlimitError::Syntax(s.to_string()));
        let (soft, hard) = match values.split_once(':') {
            Some((soft, hard)) => (number(soft)?, number(hard)?),
            None => (number(values)?, number(values)?),
        };
        // -1 is unlimited, as in docker; other negative numbers are not limits.
        let limit = |v: i64| match v {
            -1 => Ok(u64::MAX),
            v if v < 0 => Err(UlimitError::Syntax(s.to_string())),
            v => Ok(v as u64),
        };
        // docker compares the numbers as they are (so `0:-1` is refused, `-1:-1` is not).
        if soft > hard {
            return Err(UlimitError::SoftAboveHard { soft, hard });
        }
        Ok(Ulimit { name: name.to_string(), soft: limit(soft)?, hard: limit(hard)? })
    }
}

/// What the sandbox's processes get besides cgroup limits: `--shm-size`, `--ulimit`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessLimits {
    /// Bytes of /dev/shm (default 64 MiB, as docker).
    pub shm_size: Option<u64>,
    pub ulimits: Vec<Ulimit>,
}

#[cfg(test)]
mod ulimit_tests {
    use super::*;

    #[test]
    fn ulimits_read_as_docker_reads_them() {
        let u = |s: &str| s.parse::<Ulimit>();
        assert_eq!(u("nofile=1024:2048").unwrap(), Ulimit { name: "nofile".into(), soft: 1024, hard: 2048 });
        assert_eq!(u("nproc=100").unwrap(), Ulimit { name: "nproc".into(), soft: 100, hard: 100 });
        assert_eq!(u("core=-1").unwrap(), Ulimit { name: "core".into(), soft: u64::MAX, hard: u64::MAX });
        assert!(u("core=0:-1").is_err(), "docker compares -1 as a number");
        assert_eq!(u("files=1").unwrap_err().to_string(), "invalid ulimit type: files");
        assert_eq!(u("nofile").unwrap_err().to_string(), "invalid ulimit argument: nofile");
        assert_eq!(u("nofile=a").unwrap_err().to_string(), "invalid ulimit argument: nofile=a");
        assert_eq!(
            u("nofile=2048:1024").unwrap_err().to_string(),
            "ulimit soft limit must be less than or equal to hard limit: 2048 > 1024"
        );
        assert!(u("nofile=-2").is_err());
    }
}
