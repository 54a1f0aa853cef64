//! Docker's JSON views of containers, networks and volumes: what `docker inspect` prints and
//! what the Engine API's `/containers/{id}/json`, `/networks/{id}` and `/volumes/{name}` return,
//! field for field, so every front end shows the same thing.

use std::path::Path;

use serde_json::{Value, json};

use crate::Result;
use crate::container::{Container, Status};
use crate::network::{Network, Networks};
use crate::spec::{MountRequest, NetworkRequest};
use crate::volume::{Volume, Volumes};

/// `docker inspect`'s view of a container.
pub fn container(root: &Path, c: &Container) -> Value {
    let cfg = &c.config.config;
    let host = &c.config.host;
    let s = &c.state;
    let zero = "0001-01-01T00:00:00Z";
    let args: Vec<String> = cfg.entrypoint.iter().chain(&cfg.cmd).cloned().collect();
    let volumes = Volumes::open(root).ok();
    let mounts: Vec<Value> = host
        .mounts
        .iter()
        .map(|m| match m {
            MountRequest::Volume { name, target, readonly, .. } => json!({
                "Type": "volume", "Name": name,
                "Source": volumes.as_ref().and_then(|v| v.get(name).ok()).map(|v| v.mountpoint.display().to_string()).unwrap_or_default(),
                "Destination": target, "Driver": "local", "Mode": if *readonly { "ro" } else { "" },
                "RW": !readonly, "Propagation": ""
            }),
            MountRequest::Bind { source, target, readonly } => json!({
                "Type": "bind", "Source": source, "Destination": target,
                "Mode": if *readonly { "ro" } else { "" }, "RW": !readonly, "Propagation": "rprivate"
            }),
            MountRequest::Tmpfs { target, .. } => json!({
                "Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": true, "Propagation": ""
            }),
        })
        .collect();
    let mut networks = serde_json::Map::new();
    match &host.network {
        NetworkRequest::Bridge(names) => {
            for n in names {
                let ep = s.endpoints.iter().find(|e| &e.network == n);
                let mut aliases = host.network_aliases.clone();
                aliases.extend(host.aliases_by_network.get(n).into_iter().flatten().cloned());
                networks.insert(
                    n.clone(),
                    json!({
                        "Aliases": aliases,
                        "NetworkID": ep.map(|e| e.network_id.clone()).unwrap_or_default(),
                        "EndpointID": ep.map(|e| e.id()).unwrap_or_default(),
                        "Gateway": ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
                        "IPAddress": ep.map(|e| e.ip.to_string()).unwrap_or_default(),
                        "IPPrefixLen": ep.map(|e| e.prefix_len).unwrap_or(0),
                        "MacAddress": ep.map(|e| e.mac.clone()).unwrap_or_default(),
                    }),
                );
            }
        }
        NetworkRequest::None => {
            networks.insert("none".into(), json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}));
        }
        NetworkRequest::Host => {
            networks.insert("host".into(), json!({"IPAddress": "", "Gateway": "", "MacAddress": ""}));
        }
        NetworkRequest::Container(_) => {}
    }
    let mut ports = serde_json::Map::new();
    for e in &cfg.exposed_ports {
        ports.insert(e.clone(), Value::Null);
    }
    for p in &s.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.as_str());
        let binding = json!({"HostIp": p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string()), "HostPort": p.host_port.to_string()});
        match ports.get_mut(&key) {
            Some(Value::Array(a)) => a.push(binding),
            _ => {
                ports.insert(key, json!([binding]));
            }
        }
    }
    let limit = |v: u64| if v == u64::MAX { -1 } else { v as i64 };
    let ulimits: Vec<Value> = host
        .limits
        .ulimits
        .iter()
        .map(|u| json!({"Name": u.name, "Soft": limit(u.soft), "Hard": limit(u.hard)}))
        .collect();
    let first = s.endpoints.first();
    let default_ep = s.endpoints.iter().find(|e| e.network == "bridge");
    let mut out = json!({
        "Id": c.id().as_str(),
        "Created": c.config.created,
        "Path": args.first().cloned().unwrap_or_default(),
        "Args": args.get(1..).unwrap_or_default(),
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at.as_deref().unwrap_or(zero),
            "FinishedAt": s.finished_at.as_deref().unwrap_or(zero),
            "Health": s.health,
        },
        "Image": c.config.image_id.to_string(),
        "ResolvConfPath": c.resolv_path(),
        "HostnamePath": c.hostname_path(),
        "HostsPath": c.hosts_path(),
        "LogPath": c.log_path(),
        "Name": format!("/{}", c.name()),
        "RestartCount": s.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "LogConfig": host.log,
            "NetworkMode": match &host.network {
                NetworkRequest::Bridge(n) => n.first().cloned().unwrap_or_default(),
                NetworkRequest::None => "none".into(),
                NetworkRequest::Host => "host".into(),
                NetworkRequest::Container(id) => format!("container:{id}"),
            },
            "PortBindings": host.ports.iter().map(|p| (format!("{}/{}", p.container_port, p.protocol.as_str()),
                json!([{"HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_default(), "HostPort": if p.host_port == 0 { String::new() } else { p.host_port.to_string() }}])))
                .collect::<serde_json::Map<String, Value>>(),
            "RestartPolicy": {"Name": host.restart.name(), "MaximumRetryCount": host.restart.max_retries()},
            "AutoRemove": host.auto_remove,
            "CapAdd": host.cap_add,
            "CapDrop": host.cap_drop,
            "Privileged": host.privileged,
            "PublishAllPorts": host.publish_all,
            "ReadonlyRootfs": host.read_only,
            "Init": host.init,
            "Dns": host.dns,
            "DnsSearch": host.dns_search,
            "ExtraHosts": host.extra_hosts.iter().map(|(h, ip)| format!("{h}:{ip}")).collect::<Vec<_>>(),
            "Memory": host.resources.memory.unwrap_or(0),
            "NanoCpus": host.resources.nano_cpus(),
            "CpuShares": host.resources.cpu_shares.unwrap_or(0),
            "PidsLimit": host.resources.pids,
            "CpuQuota": host.resources.cpu_quota.unwrap_or(0),
            "CpuPeriod": host.resources.cpu_period.unwrap_or(0),
            "MemorySwap": host.resources.memory.unwrap_or(0),
            "ShmSize": host.limits.shm_size.unwrap_or(64 * 1024 * 1024),
            "Ulimits": ulimits,
            "Tmpfs": host.mounts.iter().filter_map(|m| match m {
                MountRequest::Tmpfs { target, .. } => Some((target.clone(), Value::String(String::new()))),
                _ => None,
            }).collect::<serde_json::Map<String, Value>>(),
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "Domainname": cfg.domainname,
            "User": cfg.user,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "StdinOnce": cfg.stdin_once,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Image": cfg.image,
            "WorkingDir": cfg.working_dir,
            "Labels": cfg.labels,
            "ExposedPorts": cfg.exposed_ports.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<String, Value>>(),
            "Volumes": cfg.volumes.iter().map(|p| (p.clone(), json!({}))).collect::<serde_json::Map<String, Value>>(),
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
            "Healthcheck": cfg.healthcheck,
        },
        "NetworkSettings": {
            "IPAddress": default_ep.map(|e| e.ip.to_string()).unwrap_or_default(),
            "Gateway": default_ep.map(|e| e.gateway.to_string()).unwrap_or_default(),
            "MacAddress": default_ep.or(first).map(|e| e.mac.clone()).unwrap_or_default(),
            "SandboxKey": if s.pid > 0 { c.netns_path().display().to_string() } else { String::new() },
            "Ports": ports,
            "Networks": networks,
        },
    });
    // As docker: no `Health` (nor `Healthcheck`) without a healthcheck, rather than null.
    for (section, key) in [("State", "Health"), ("Config", "Healthcheck")] {
        if let Some(map) = out.get_mut(section).and_then(Value::as_object_mut)
            && map.get(key).is_some_and(Value::is_null)
        {
            map.remove(key);
        }
    }
    out
}

/// A network as `docker network inspect` shows it.
pub fn network(nets: &Networks, n: &Network) -> Result<Value> {
    let mut containers = serde_json::Map::new();
    let mut config = Vec::new();
    let mut options = serde_json::Map::new();
    if let Some(b) = &n.bridge {
        config.push(json!({"Subnet": b.subnet.to_string(), "Gateway": b.gateway.to_string()}));
        // As dockerd: the default bridge names its interface; a user network shows only the
        // options it was created with (compose compares them and would see a change).
        if n.is_predefined() {
            options.insert("com.docker.network.bridge.name".into(), json!(b.interface));
        }
        for e in nets.endpoints(&n.id)? {
            containers.insert(
                e.container_id.clone(),
                json!({
                    "Name": e.container_name,
                    "EndpointID": e.id(),
                    "MacAddress": e.mac,
                    "IPv4Address": format!("{}/{}", e.ip, e.prefix_len),
                    "IPv6Address": "",
                }),
            );
        }
    }
    Ok(json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
    }))
}

/// Docker's `volume inspect` object (Go's field order, which is alphabetical).
pub fn volume(v: &Volume) -> Value {
    // The local driver prints RFC 3339 to the second.
    let created = match crate::container::parse_rfc3339(&v.created) {
        Some((secs, _)) => cache::time::format_unix(secs, 0),
        None => v.created.clone(),
    };
    json!({
        "CreatedAt": created,
        "Driver": v.driver(),
        "Labels": v.docker_labels(),
        "Mountpoint": v.mountpoint,
        "Name": v.name,
        "Options": {},
        "Scope": "local",
    })
}
