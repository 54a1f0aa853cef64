//! The instructions that change only the image config (ENV, LABEL, CMD, ENTRYPOINT, USER,
//! EXPOSE, VOLUME, STOPSIGNAL, SHELL, HEALTHCHECK, ONBUILD): they add history, no layer.

use cache::oci::ContainerConfig;
use frontend::{ConfigOp, Healthcheck};

/// Applies one config instruction to an image config as a build does (`cmd_set`: a CMD came
/// earlier in the stage, so an ENTRYPOINT keeps it). Also `commit -c`'s.
pub fn apply_config(c: &mut ContainerConfig, op: &ConfigOp, cmd_set: bool) {
    match op {
        ConfigOp::Env(pairs) => {
            for (k, v) in pairs {
                c.env_set(k, v);
            }
        }
        ConfigOp::User(u) => c.user = Some(u.clone()),
        ConfigOp::Cmd(v) => c.cmd = Some(v.clone()),
        ConfigOp::Entrypoint(v) => {
            c.entrypoint = Some(v.clone());
            if !cmd_set {
                c.cmd = None;
            }
        }
        ConfigOp::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        ConfigOp::Expose(ports) => {
            let map = c.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                map.insert(p.clone(), serde_json::json!({}));
            }
        }
        ConfigOp::Volume(vols) => {
            let map = c.volumes.get_or_insert_with(Default::default);
            for v in vols {
                map.insert(v.clone(), serde_json::json!({}));
            }
        }
        ConfigOp::StopSignal(s) => c.stop_signal = Some(s.clone()),
        ConfigOp::Shell(s) => c.shell = Some(s.clone()),
        ConfigOp::Healthcheck(h) => c.healthcheck = Some(healthcheck_json(h)),
        ConfigOp::Onbuild(t) => c.on_build.get_or_insert_with(Vec::new).push(t.clone()),
        ConfigOp::Arg(_) | ConfigOp::Maintainer(_) => {}
    }
}

/// `HEALTHCHECK` as Docker writes it in the image config: durations in nanoseconds, absent
/// fields omitted.
fn healthcheck_json(h: &Healthcheck) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("Test".into(), serde_json::json!(h.test));
    for (name, v) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if let Some(v) = v {
            m.insert(name.into(), serde_json::json!(v));
        }
    }
    if let Some(r) = h.retries {
        m.insert("Retries".into(), serde_json::json!(r));
    }
    serde_json::Value::Object(m)
}
