//! Soak through the API: 200 create/start/wait/remove cycles over raw HTTP on the service's
//! socket (busybox `true`, most with `NetworkMode: none`, every fifth on the default bridge).
//! Afterwards nothing is left: no process below the service, no monitor of the store's
//! containers, no mount under the store, no veth on the store's bridge, no cgroup a container
//! had; the service holds the descriptors it held (small noise allowed) and its RSS stayed flat
//! after warm-up.
//! The figures are printed (`cargo test -- --nocapture`) for the closing notes.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use test_support::containers::Env;
use test_support::dockerapi::Service;

const BIN: &str = env!("CARGO_BIN_EXE_rbuild");
const WARM_UP: usize = 50;
const CYCLES: usize = 200;
/// RSS growth allowed over the 150 cycles after warm-up.
const RSS_SLACK_KIB: u64 = 8 * 1024;
/// Descriptors the service may hold beyond its count after warm-up (a pooled connection, the
/// runtime's lazily opened files).
const FD_SLACK: usize = 4;

/// One HTTP/1.0 request on a connection of its own (the answer ends with the connection, so
/// neither chunks nor lengths need reading): (status, body).
fn request(socket: &Path, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("connect to the API socket");
    let body = body.unwrap_or("");
    let head = format!(
        "{method} /v1.41{path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(body.as_bytes())).expect("send the request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, body.to_string())
}

fn ok(socket: &Path, method: &str, path: &str, body: Option<&str>) -> String {
    let (status, answer) = request(socket, method, path, body);
    assert!((200..300).contains(&status), "{method} {path}: {status} {answer}");
    answer
}

/// `VmRSS` of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the service's status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("the service's fds").count()
}

/// The service's live children (zombies are not leaks of ours: the service reaps them).
fn children(pid: u32) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for child in list.split_whitespace() {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            if !stat.is_empty() && !stat.contains(") Z ") {
                out.insert(format!("{child} {}", stat.split(' ').nth(1).unwrap_or_default()));
            }
        }
    }
    out
}

fn mounts_under(store: &Path) -> Vec<String> {
    let store = store.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&store))
        .map(str::to_string)
        .collect()
}

/// The interfaces on the store's default bridge: a container's veth while it has one.
fn bridge_ports(e: &Env) -> Vec<String> {
    let format = "{{index .Options \"com.docker.network.bridge.name\"}}";
    let bridge = e.ok(&["network", "inspect", "--format", format, "bridge"]);
    std::fs::read_dir(format!("/sys/class/net/{}/brif", bridge.trim()))
        .map(|d| d.flatten().map(|p| p.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

/// What a container had that must go with it, read from its state while it exists.
#[derive(Default)]
struct Traces {
    cgroups: Vec<String>,
    monitors: Vec<(u32, u64)>,
}

impl Traces {
    fn record(&mut self, store: &Path, id: &str) {
        let path = store.join("containers").join(id).join("state.json");
        let text = std::fs::read_to_string(&path).expect("the container's state");
        let state: serde_json::Value = serde_json::from_str(&text).expect("state.json is JSON");
        if let Some(cg) = state["cgroup"].as_str().filter(|c| !c.is_empty()) {
            self.cgroups.push(cg.to_string());
        }
        if let (Some(pid), Some(start)) = (state["monitor_pid"].as_u64(), state["monitor_start"].as_u64()) {
            self.monitors.push((pid as u32, start));
        }
    }

    /// What is still there: cgroup directories in any hierarchy, monitors alive (same
    /// PID and start time: a recycled PID is not ours).
    fn left(&self) -> Vec<String> {
        let mut left = Vec::new();
        let hierarchies: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for cg in &self.cgroups {
            for h in hierarchies.iter().chain([&Path::new("/sys/fs/cgroup").to_path_buf()]) {
                let dir = h.join("rbuild").join(cg);
                if dir.exists() {
                    left.push(format!("cgroup {}", dir.display()));
                }
            }
        }
        for (pid, start) in &self.monitors {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> =
                stat.rsplit_once(") ").map(|(_, r)| r.split(' ').collect()).unwrap_or_default();
            // Field 22 (starttime) is the 20th after the command's closing parenthesis.
            let alive = fields.first().is_some_and(|s| *s != "Z")
                && fields.get(19) == Some(&start.to_string().as_str());
            if alive {
                left.push(format!("monitor {pid}"));
            }
        }
        left
    }
}

fn cycle(socket: &Path, store: &Path, i: usize, traces: &mut Traces) {
    let network = if i.is_multiple_of(5) { "bridge" } else { "none" };
    let body = format!(r#"{{"Image":"busybox","Cmd":["true"],"HostConfig":{{"NetworkMode":"{network}"}}}}"#);
    let created = ok(socket, "POST", &format!("/containers/create?name=soak{i}"), Some(&body));
    let created: serde_json::Value = serde_json::from_str(&created).expect("create answers JSON");
    let id = created["Id"].as_str().expect("an Id").to_string();
    ok(socket, "POST", &format!("/containers/{id}/start"), None);
    let waited = ok(socket, "POST", &format!("/containers/{id}/wait"), None);
    let waited: serde_json::Value = serde_json::from_str(waited.trim()).expect("wait answers JSON");
    assert_eq!(waited["StatusCode"], 0, "cycle {i}: {waited}");
    traces.record(store, &id);
    let (status, answer) = request(socket, "DELETE", &format!("/containers/{id}"), None);
    assert_eq!(status, 204, "cycle {i}: {answer}");
}

#[test]
fn two_hundred_create_start_wait_remove_cycles_through_the_api_leave_nothing_behind() {
    let e = Env::new(BIN);
    let api = Service::start(&e);
    let (socket, store, pid) = (api.socket.clone(), e.s.path().to_path_buf(), api.pid());
    let mounts_before = mounts_under(&store);
    let children_before = children(pid);
    let started = std::time::Instant::now();
    let mut traces = Traces::default();
    let (fds_start, rss_start) = (fds(pid), rss_kib(pid));
    for i in 0..WARM_UP {
        cycle(&socket, &store, i, &mut traces);
    }
    let (fds_warm, rss_warm) = (fds(pid), rss_kib(pid));
    for i in WARM_UP..CYCLES {
        cycle(&socket, &store, i, &mut traces);
    }
    let elapsed = started.elapsed();
    // Monitors exit just after the exit code was heard; the kernel deletes a dead namespace's
    // veth in the background: let both settle (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline
        && !(traces.left().is_empty() && children(pid) == children_before)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (fds_end, rss_end) = (fds(pid), rss_kib(pid));
    println!(
        "api soak: {CYCLES} cycles in {:.1} s ({:.0} ms each); service fds {fds_start} at start, {fds_warm} after \
         {WARM_UP} warm-up cycles, {fds_end} at the end; RSS {rss_start} KiB at start, {rss_warm} KiB after warm-up, \
         {rss_end} KiB at the end ({:+} KiB over {} cycles)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / CYCLES as f64,
        rss_end as i64 - rss_warm as i64,
        CYCLES - WARM_UP
    );
    assert_eq!(ok(&socket, "GET", "/containers/json?all=1", None).trim(), "[]");
    assert_eq!(e.ok(&["ps", "-a", "-q"]), "", "rbuild ps agrees");
    assert_eq!(traces.left(), Vec::<String>::new(), "cgroups and monitors of the containers");
    assert_eq!(traces.monitors.len(), CYCLES, "every container had its monitor");
    assert_eq!(bridge_ports(&e), Vec::<String>::new(), "veths on the store's bridge");
    assert_eq!(children(pid), children_before, "processes below the service");
    assert_eq!(mounts_under(&store), mounts_before, "mounts under the store");
    assert!(
        fds_end <= fds_warm + FD_SLACK,
        "the service's fds: {fds_warm} after warm-up, {fds_end} at the end"
    );
    assert!(
        rss_end <= rss_warm + RSS_SLACK_KIB,
        "the service's RSS grew from {rss_warm} KiB to {rss_end} KiB"
    );
}
