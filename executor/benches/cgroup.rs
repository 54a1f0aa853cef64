//! What a sandbox's cgroup costs: create + remove of an empty cgroup with every limit rbuild
//! sets, and remove of one that still has a process to kill. Prints figures; needs root.
//!
//! `cargo bench -p executor --bench cgroup [-- N]` (N create+remove rounds, default 50).

use std::process::Command;
use std::time::{Duration, Instant};

use executor::Resources;
use executor::cgroup::{self, Cgroup, Controller};

fn main() {
    let rounds: u32 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(50);
    if !nix::unistd::Uid::effective().is_root() {
        println!("skipped: needs root");
        return;
    }
    let layout = match cgroup::layout() {
        Ok(layout) => layout,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    let has = |c: Controller| layout.location(c).is_some();
    let limits = Resources {
        memory: has(Controller::Memory).then_some(256 << 20),
        pids: has(Controller::Pids).then_some(1000),
        cpu_quota: has(Controller::Cpu).then_some(100_000),
        cpu_period: has(Controller::Cpu).then_some(100_000),
        cpu_shares: None,
        cgroup_parent: None,
    };
    let mut n = 0;
    let mut name = || {
        n += 1;
        format!("bench-{}-{n}", std::process::id())
    };

    let start = Instant::now();
    for _ in 0..rounds {
        Cgroup::create(layout, &name(), &limits).expect("create").remove().expect("remove");
    }
    let empty = start.elapsed() / rounds;

    let with_process = rounds.div_ceil(5);
    let mut kill_remove = Duration::ZERO;
    for _ in 0..with_process {
        let cg = Cgroup::create(layout, &name(), &limits).expect("create");
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        for procs in cg.procs_files() {
            std::fs::write(procs, sleeper.id().to_string()).expect("move sleep into the cgroup");
        }
        let start = Instant::now();
        cg.remove().expect("remove (kills the process)");
        kill_remove += start.elapsed();
        sleeper.wait().expect("reap sleep");
    }
    println!(
        "cgroup create+remove ({} hierarchies, {rounds} rounds): {empty:?} each; \
         remove with a process to kill ({with_process} rounds): {:?} each",
        layout.roots().len(),
        kill_remove / with_process,
    );
}
