//! `top`: the processes of a running container, read from its cgroup and `/proc`, in the
//! columns docker's `top` (and its API's `/containers/{id}/top`) give.

use std::path::Path;

use crate::container::Containers;
use crate::{Error, Result, lifecycle};

/// docker's `ContainerTopOKBody`: column titles and one row of cells per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// The titles `ps -ef` prints, which docker's `top` uses by default.
const TITLES: [&str; 8] = ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"];

/// The processes of the running container `what`, by host PID.
pub fn top(root: &Path, what: &str) -> Result<Top> {
    let containers = Containers::open(root)?;
    let c = lifecycle::refresh(&containers, containers.find(what)?)?;
    if !c.is_alive() {
        return Err(Error::Conflict(format!("container {} is not running", c.name())));
    }
    let name = c
        .state
        .cgroup
        .as_deref()
        .ok_or_else(|| Error::Conflict(format!("container {} has no cgroup: top needs one", c.name())))?;
    let mut pids = executor::cgroup::Cgroup::open(name)?.pids();
    pids.sort_unstable();
    // SAFETY: sysconf with a valid name reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let processes = pids.into_iter().filter_map(|pid| process_row(pid, hz)).collect();
    Ok(Top { titles: TITLES.map(String::from).to_vec(), processes })
}

/// One `ps -ef` row; `None` for a process that ended while we read it.
fn process_row(pid: i32, hz: u64) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields start after the last ')'.
    let close = stat.rfind(')')?;
    let f: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let ppid = f.get(1).copied().unwrap_or("0");
    let ticks: u64 = f.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let secs = ticks / hz;
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:").and_then(|r| r.split_whitespace().next().map(str::to_string))
            })
        })
        .unwrap_or_default();
    let user = uid
        .parse::<u32>()
        .ok()
        .and_then(|u| nix::unistd::User::from_uid(u.into()).ok().flatten())
        .map_or(uid, |u| u.name);
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let mut cmd: String = cmdline
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    if cmd.is_empty() {
        // A kernel thread or a zombie: ps shows its name in brackets.
        cmd = format!("[{}]", stat.get(stat.find('(').map_or(0, |i| i + 1)..close).unwrap_or_default());
    }
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    Some(vec![user, pid.to_string(), ppid.to_string(), "0".into(), "-".into(), "?".into(), time, cmd])
}
