//! `/networks`: list, inspect, create, remove, connect, disconnect, prune, through runtime's
//! network store and `runtime::connect` (what `rbuild network` calls).

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use runtime::network::{self, CreateOptions, Network, Networks};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::containers::filter_values;
use crate::{ApiError, Ctx, blocking};

pub(crate) fn routes() -> Router<Ctx> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

/// dockerd's codes: 404 for a network it cannot find, 409 for a name taken, 403 for what
/// may not be done to a network (remove a predefined one or one in use).
impl From<network::Error> for ApiError {
    fn from(e: network::Error) -> ApiError {
        let status = match &e {
            network::Error::NotFound(_) => StatusCode::NOT_FOUND,
            network::Error::NameInUse(_) => StatusCode::CONFLICT,
            network::Error::Predefined(_) | network::Error::InUse { .. } => StatusCode::FORBIDDEN,
            network::Error::Invalid(_) => StatusCode::BAD_REQUEST,
            network::Error::Conflict(_) | network::Error::Exhausted { .. } => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError { status, message: hostutil::errors::one_line(&e) }
    }
}

/// A runtime error whose cause is the network's keeps the network's status.
fn runtime_error(e: runtime::Error) -> ApiError {
    match e {
        runtime::Error::Network(n) => n.into(),
        e => e.into(),
    }
}

/// A JSON body; an empty one is the type's default (docker-py sends none for some calls).
fn body<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))
}

/// `filters` for the list: name and id (substrings, as dockerd matches them), label (`key`
/// or `key=value`), driver, type (`custom`, `builtin`), dangling (no container attached).
struct ListFilter(BTreeMap<String, Vec<String>>);

impl ListFilter {
    fn parse(q: &HashMap<String, String>) -> Result<ListFilter, ApiError> {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for kv in filter_values(q)? {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            if !["name", "id", "label", "driver", "type", "dangling", "scope"].contains(&k) {
                return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
            }
            if k == "type" && !["custom", "builtin"].contains(&v) {
                return Err(ApiError::bad_request(format!("invalid filter: 'type'='{v}'")));
            }
            by_key.entry(k.to_string()).or_default().push(v.to_string());
        }
        Ok(ListFilter(by_key))
    }

    fn matches(&self, n: &Network, containers: usize) -> bool {
        // Label filters must all match, as dockerd's (compose lists by project and network).
        self.0.iter().all(|(key, values)| {
            let one = |v: &String| match key.as_str() {
                "name" => n.name.contains(v.as_str()),
                "id" => n.id.contains(v.as_str()),
                "driver" => n.driver == *v,
                "scope" => v == "local",
                "type" => (v == "builtin") == n.is_predefined(),
                "dangling" => {
                    let dangling = !n.is_predefined() && containers == 0;
                    dangling == matches!(v.as_str(), "1" | "true")
                }
                "label" => match v.split_once('=') {
                    Some((k, want)) => n.labels.get(k).is_some_and(|have| have == want),
                    None => n.labels.contains_key(v.as_str()),
                },
                _ => false,
            };
            match key.as_str() {
                "label" => values.iter().all(one),
                _ => values.iter().any(one),
            }
        })
    }
}

async fn list(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let filter = ListFilter::parse(&q)?;
    blocking(move || {
        let nets = Networks::open(ctx.root.as_path())?;
        let mut rows = Vec::new();
        for n in nets.list()? {
            let v = runtime::inspect::network(&nets, &n)?;
            let attached = v["Containers"].as_object().map_or(0, |m| m.len());
            if filter.matches(&n, attached) {
                rows.push(v);
            }
        }
        Ok(axum::Json(Value::Array(rows)).into_response())
    })
    .await
}

async fn inspect(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        let nets = Networks::open(ctx.root.as_path())?;
        let n = nets.get(&id)?;
        Ok(axum::Json(runtime::inspect::network(&nets, &n)?).into_response())
    })
    .await
}

/// docker-py sends `null` for what it was not given, hence the options.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<IpamBody>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamBody {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
}

/// The create body as `network create`'s options; what rbuild cannot do is a 400 that says so.
fn create_options(b: &CreateBody) -> Result<CreateOptions, ApiError> {
    let driver = b.driver.as_deref().unwrap_or_default();
    if !driver.is_empty() && driver != "bridge" {
        return Err(ApiError::bad_request(format!(
            "network driver {driver:?} is not supported: rbuild makes bridge networks only"
        )));
    }
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request("IPv6 networks are not supported"));
    }
    let mut opts = CreateOptions {
        labels: b.labels.clone().unwrap_or_default(),
        internal: b.internal.unwrap_or(false),
        ..Default::default()
    };
    let Some(ipam) = &b.ipam else { return Ok(opts) };
    let ipam_driver = ipam.driver.as_deref().unwrap_or_default();
    if !ipam_driver.is_empty() && ipam_driver != "default" {
        return Err(ApiError::bad_request(format!("IPAM driver {ipam_driver:?} is not supported")));
    }
    let configs = ipam.config.as_deref().unwrap_or_default();
    if configs.len() > 1 {
        return Err(ApiError::bad_request("only one IPAM config (one IPv4 subnet) is supported"));
    }
    if let Some(c) = configs.first() {
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (subnet, gateway, range) = (text(&c.subnet), text(&c.gateway), text(&c.ip_range));
        if let Some(range) = range.filter(|r| Some(r) != subnet.as_ref()) {
            return Err(ApiError::bad_request(format!(
                "IPRange {range} is not supported: containers take addresses from the whole subnet"
            )));
        }
        if let Some(s) = subnet {
            opts.subnet =
                Some(s.parse().map_err(|e| ApiError::bad_request(format!("invalid subnet {s:?}: {e}")))?);
        }
        if let Some(g) = gateway {
            opts.gateway =
                Some(g.parse().map_err(|_| ApiError::bad_request(format!("invalid gateway {g:?}")))?);
        }
    }
    Ok(opts)
}

async fn create(State(ctx): State<Ctx>, bytes: axum::body::Bytes) -> Result<Response, ApiError> {
    let b: CreateBody = body(&bytes)?;
    if b.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    let opts = create_options(&b)?;
    blocking(move || {
        let n = Networks::open(ctx.root.as_path())?.create(&b.name, &opts)?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "Id": n.id, "Warning": "" }))).into_response())
    })
    .await
}

async fn remove(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Response, ApiError> {
    blocking(move || {
        Networks::open(ctx.root.as_path())?.remove(&id)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct EndpointConfig {
    aliases: Option<Vec<String>>,
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

async fn connect(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: ConnectBody = body(&bytes)?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request("Container is required"));
    }
    let endpoint = b.endpoint_config.unwrap_or_default();
    if endpoint.ipam_config.and_then(|i| i.ipv4_address).is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::bad_request(
            "a fixed IPv4Address is not supported: containers take the next free address",
        ));
    }
    let aliases = endpoint.aliases.unwrap_or_default();
    blocking(move || {
        runtime::connect::connect(ctx.root.as_path(), &id, &b.container, &aliases).map_err(runtime_error)?;
        Ok(StatusCode::OK.into_response())
    })
    .await
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct DisconnectBody {
    container: String,
    force: bool,
}

async fn disconnect(
    State(ctx): State<Ctx>,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: DisconnectBody = body(&bytes)?;
    if b.container.is_empty() {
        return Err(ApiError::bad_request("Container is required"));
    }
    blocking(move || {
        runtime::connect::disconnect(ctx.root.as_path(), &id, &b.container, b.force)
            .map_err(runtime_error)?;
        Ok(StatusCode::OK.into_response())
    })
    .await
}

/// `POST /networks/prune` (`filters`: label, label!): `{"NetworksDeleted": [names]}`.
async fn prune(
    State(ctx): State<Ctx>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let mut wanted: Vec<(bool, String)> = Vec::new();
    for kv in filter_values(&q)? {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        match k {
            "label" => wanted.push((true, v.to_string())),
            "label!" => wanted.push((false, v.to_string())),
            _ => return Err(ApiError::bad_request(format!("invalid filter '{k}'"))),
        }
    }
    blocking(move || {
        let has = |n: &Network, label: &str| match label.split_once('=') {
            Some((k, want)) => n.labels.get(k).is_some_and(|have| have == want),
            None => n.labels.contains_key(label),
        };
        let removed = Networks::open(ctx.root.as_path())?
            .prune_where(|n| wanted.iter().all(|(yes, label)| has(n, label) == *yes))?;
        let names: Vec<String> = removed.into_iter().map(|n| n.name).collect();
        Ok(axum::Json(json!({ "NetworksDeleted": names })).into_response())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_py_bodies_with_nulls_parse_and_what_rbuild_cannot_do_is_a_400() {
        let b: CreateBody = body(
            br#"{"Name": "p_default", "Driver": null, "Options": null, "CheckDuplicate": true,
                "IPAM": {"Driver": "default", "Config": [{"Subnet": "10.240.0.0/24", "IPRange": null,
                "Gateway": null, "AuxiliaryAddresses": null}], "Options": null},
                "Labels": {"com.docker.compose.network": "default", "com.docker.compose.project": "p"},
                "Internal": null, "EnableIPv6": null, "Attachable": null}"#,
        )
        .unwrap();
        let opts = create_options(&b).unwrap();
        assert_eq!(opts.subnet.unwrap().to_string(), "10.240.0.0/24");
        assert_eq!(opts.labels.len(), 2);
        let status = |json: &[u8]| match body::<CreateBody>(json).and_then(|b| create_options(&b)) {
            Ok(_) => StatusCode::OK,
            Err(e) => e.status,
        };
        assert_eq!(status(br#"{"Name": "x", "Driver": "overlay"}"#), StatusCode::BAD_REQUEST);
        assert_eq!(
            status(br#"{"Name": "x", "IPAM": {"Config": [{"Subnet": "nope"}]}}"#),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status(br#"{"Name": 3"#), StatusCode::BAD_REQUEST);
        assert_eq!(status(b""), StatusCode::OK);
    }
}
