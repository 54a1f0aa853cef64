//! `--filter KEY=VALUE` of `ps` and `volume ls` (and the Engine API's `filters` parameter), with
//! docker's semantics: values of one key are alternatives (any may match), except `label`'s,
//! which must all match (compose asks for project, service and oneoff at once); different keys
//! must all match.

use std::collections::BTreeMap;

use crate::container::{Container, Status};
use crate::volume::Volume;
use crate::{Error, Result};

/// Filter values grouped by key, checked against the keys (and values) the list knows.
#[derive(Debug, Clone, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

const CONTAINER_KEYS: [&str; 7] = ["status", "name", "id", "label", "ancestor", "exited", "health"];
/// Docker's `health` filter values (`none`: no healthcheck).
const HEALTH: [&str; 4] = ["starting", "healthy", "unhealthy", "none"];
const STATUSES: [&str; 7] = ["created", "restarting", "running", "removing", "paused", "exited", "dead"];
const VOLUME_KEYS: [&str; 4] = ["dangling", "name", "label", "driver"];

impl Filters {
    fn parse(values: &[String], keys: &[&str]) -> Result<Filters> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in values {
            let Some((key, value)) = f.split_once('=') else {
                return Err(Error::Invalid(format!("bad format of filter (expected name=value): {f}")));
            };
            let key = key.trim().to_ascii_lowercase();
            if !keys.contains(&key.as_str()) {
                return Err(Error::Invalid(format!(
                    "invalid filter '{key}' (the filters are {})",
                    keys.join(", ")
                )));
            }
            map.entry(key).or_default().push(value.to_string());
        }
        Ok(Filters(map))
    }

    /// `ps --filter`: status, name (a regular expression, as docker's), id (a prefix), label
    /// (`KEY` or `KEY=VALUE`), ancestor (the image as named, or part of its id), exited (code),
    /// health (`starting`, `healthy`, `unhealthy`, `none`).
    pub fn for_containers(values: &[String]) -> Result<Filters> {
        let f = Filters::parse(values, &CONTAINER_KEYS)?;
        for v in f.0.get("status").into_iter().flatten() {
            if !STATUSES.contains(&v.as_str()) {
                return Err(Error::Invalid(format!(
                    "invalid filter 'status={v}' (use one of {})",
                    STATUSES.join(", ")
                )));
            }
        }
        for v in f.0.get("name").into_iter().flatten() {
            regex_lite::Regex::new(v)
                .map_err(|e| Error::Invalid(format!("invalid filter 'name={v}': {e}")))?;
        }
        for v in f.0.get("exited").into_iter().flatten() {
            v.parse::<i32>().map_err(|_| Error::Invalid(format!("invalid filter 'exited={v}'")))?;
        }
        for v in f.0.get("health").into_iter().flatten() {
            if !HEALTH.contains(&v.as_str()) {
                return Err(Error::Invalid(format!(
                    "invalid filter 'health={v}' (use one of {})",
                    HEALTH.join(", ")
                )));
            }
        }
        Ok(f)
    }

    /// `volume ls --filter`: dangling (`true`: used by no container), name (a substring),
    /// label, driver.
    pub fn for_volumes(values: &[String]) -> Result<Filters> {
        let f = Filters::parse(values, &VOLUME_KEYS)?;
        for v in f.0.get("dangling").into_iter().flatten() {
            if !matches!(v.as_str(), "true" | "1" | "false" | "0") {
                return Err(Error::Invalid(format!("invalid filter 'dangling={v}'")));
            }
        }
        Ok(f)
    }

    /// Whether a filter was given at all (`ps` then lists stopped containers too).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn all(&self, one: impl Fn(&str, &str) -> bool) -> bool {
        self.0.iter().all(|(key, values)| match key.as_str() {
            "label" => values.iter().all(|v| one(key, v)),
            _ => values.iter().any(|v| one(key, v)),
        })
    }

    pub fn matches_container(&self, c: &Container) -> bool {
        let labels = &c.config.config.labels;
        self.all(|key, v| match key {
            "status" => c.state.status.as_str() == v,
            // Docker's names carry a leading `/`, so `^/web$` matches too.
            "name" => regex_lite::Regex::new(v)
                .is_ok_and(|re| re.is_match(c.name()) || re.is_match(&format!("/{}", c.name()))),
            "id" => c.id().as_str().starts_with(v),
            "label" => label_matches(labels, v),
            "ancestor" => c.config.config.image == v || c.config.image_id.to_string().contains(v),
            "exited" => c.state.status == Status::Exited && c.state.exit_code.to_string() == v,
            "health" => c.state.health.as_ref().map_or("none", |h| h.status.as_str()) == v,
            _ => false,
        })
    }

    /// `used`: whether a container uses the volume.
    pub fn matches_volume(&self, v: &Volume, used: bool) -> bool {
        let labels = v.docker_labels();
        self.all(|key, value| match key {
            "dangling" => matches!(value, "true" | "1") != used,
            "name" => v.name.contains(value),
            "driver" => v.driver() == value,
            "label" => label_matches(&labels, value),
            _ => false,
        })
    }
}

/// `KEY` (present) or `KEY=VALUE`.
fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
        None => labels.contains_key(filter),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn bad_filters_say_why() {
        let e = |r: Result<Filters>| r.unwrap_err().to_string();
        assert!(
            Filters::for_volumes(&strings(&["dangling=true", "name=x", "label=a=b", "driver=local"])).is_ok()
        );
        assert_eq!(e(Filters::for_volumes(&strings(&["dangling=maybe"]))), "invalid filter 'dangling=maybe'");
        assert!(e(Filters::for_volumes(&strings(&["colour=red"]))).starts_with("invalid filter 'colour'"));
        assert_eq!(
            e(Filters::for_volumes(&strings(&["dangling"]))),
            "bad format of filter (expected name=value): dangling"
        );
        assert!(
            e(Filters::for_containers(&strings(&["status=sleeping"]))).starts_with("invalid filter 'status")
        );
        assert!(e(Filters::for_containers(&strings(&["name=("]))).starts_with("invalid filter 'name=("));
        assert!(Filters::for_containers(&strings(&["status=running", "status=exited", "label=a"])).is_ok());
    }

    #[test]
    fn values_of_one_key_are_alternatives() {
        let f = Filters::for_containers(&strings(&["status=running", "status=exited"])).unwrap();
        assert!(f.all(|_, v| v == "exited"));
        assert!(!f.all(|_, v| v == "paused"));
        let labels: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        assert!(
            label_matches(&labels, "a") && label_matches(&labels, "a=1") && !label_matches(&labels, "a=2")
        );
    }

    #[test]
    fn every_label_filter_must_match() {
        let f = Filters::for_containers(&strings(&["label=project=p", "label=service=web"])).unwrap();
        let labels: BTreeMap<String, String> =
            [("project".to_string(), "p".to_string()), ("service".to_string(), "db".to_string())].into();
        assert!(!f.all(|_, v| label_matches(&labels, v)));
        let labels: BTreeMap<String, String> =
            [("project".to_string(), "p".to_string()), ("service".to_string(), "web".to_string())].into();
        assert!(f.all(|_, v| label_matches(&labels, v)));
    }
}
