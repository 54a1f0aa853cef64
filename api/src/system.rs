//! `/_ping`, `/version`, `/info`: what a client asks first (version negotiation).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};

use crate::{API_VERSION, ApiError, Ctx, MIN_API_VERSION, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        // `Builder-Version: 1`: the classic builder, which `POST /build` serves (BuildKit's
        // session is not).
        .route(
            "/_ping",
            get(|| async { ([("Builder-Version", "1")], "OK") })
                .head(|| async { ([("Builder-Version", "1")], "") }),
        )
        .route("/version", get(version))
        .route("/info", get(info))
}

fn proc_text(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn kernel() -> String {
    proc_text("/proc/sys/kernel/osrelease")
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

async fn version() -> axum::Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    axum::Json(json!({
        "Platform": { "Name": "rbuild" },
        "Components": [{ "Name": "Engine", "Version": v, "Details": { "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux", "Arch": arch(), "KernelVersion": kernel() } }],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch(),
        "KernelVersion": kernel(),
        "BuildTime": "",
    }))
}

async fn info(State(ctx): State<Ctx>) -> Result<axum::Json<Value>, ApiError> {
    blocking(move || {
        let store = ctx.store()?;
        let containers = runtime::container::Containers::open(store.root())?.list()?;
        let count = |s: runtime::container::Status| containers.iter().filter(|c| c.state.status == s).count();
        let running = count(runtime::container::Status::Running);
        let paused = count(runtime::container::Status::Paused);
        let images = store.list_images()?.len();
        let mem = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").map(str::to_string)))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let host = proc_text("/proc/sys/kernel/hostname");
        Ok(axum::Json(json!({
            "ID": "rbuild",
            "Containers": containers.len(),
            "ContainersRunning": running,
            "ContainersPaused": paused,
            "ContainersStopped": containers.len() - running - paused,
            "Images": images,
            "Driver": "overlay",
            "DriverStatus": [],
            "Plugins": { "Volume": ["local"], "Network": ["bridge", "host", "none"], "Authorization": null, "Log": ["json-file", "none"] },
            "MemoryLimit": true,
            "SwapLimit": false,
            "CpuCfsPeriod": true,
            "CpuCfsQuota": true,
            "IPv4Forwarding": true,
            "Debug": false,
            "NFd": 0,
            "NGoroutines": 0,
            "SystemTime": runtime::container::now_rfc3339(),
            "LoggingDriver": "json-file",
            "CgroupDriver": "cgroupfs",
            "NEventsListener": 0,
            "KernelVersion": kernel(),
            "OperatingSystem": "rbuild",
            "OSType": "linux",
            "Architecture": std::env::consts::ARCH,
            "IndexServerAddress": "https://index.docker.io/v1/",
            "RegistryConfig": { "IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": [] },
            "NCPU": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "MemTotal": mem,
            "DockerRootDir": store.root(),
            "Name": host,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": env!("CARGO_PKG_VERSION"),
            "Runtimes": { "rbuild": { "path": "rbuild" } },
            "DefaultRuntime": "rbuild",
            "Swarm": { "LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null },
            "LiveRestoreEnabled": false,
            "Isolation": "",
            "InitBinary": "",
            "SecurityOptions": ["name=seccomp,profile=builtin"],
            "Warnings": [],
        })))
    })
    .await
}
