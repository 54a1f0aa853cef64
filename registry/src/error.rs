use std::path::PathBuf;

use cache::Digest;

/// Everything a registry operation can fail with. Each message is one line that names the
/// registry, image or blob involved and, where there is one, what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection to the registry (refused, DNS, TLS, timeout, reset), after retries.
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },
    /// 401/403 that our credentials (or their absence) could not get past.
    #[error("unauthorized: {action}: {reason} (rbuild login {host})")]
    Unauthorized { host: String, action: String, reason: String },
    /// The registry has no such manifest (tag or digest).
    #[error("manifest unknown: {reference}")]
    ManifestUnknown { reference: String },
    /// The registry has no such blob, though a manifest names it.
    #[error("blob unknown: {digest} in {repository}")]
    BlobUnknown { repository: String, digest: Digest },
    /// A 5xx (or 429) that persisted through every try.
    #[error("{host}: {action}: HTTP {status}{detail} (after {tries} tries)")]
    Server { host: String, action: String, status: u16, detail: String, tries: u32 },
    /// Any other status the protocol does not expect at that point.
    #[error("{host}: {action}: unexpected HTTP {status}{detail}")]
    Status { host: String, action: String, status: u16, detail: String },
    /// A downloaded blob or manifest (`what`) does not hash to the digest it was asked for by.
    #[error("{what} {digest} from {repository} failed verification: its content hashes to {actual}")]
    DigestMismatch { what: &'static str, repository: String, digest: Digest, actual: Digest },
    /// A blob ended before the size its descriptor gives.
    #[error("blob {digest} from {repository} is truncated: got {got} of {size} bytes{cause}")]
    Truncated { repository: String, digest: Digest, got: u64, size: u64, cause: String },
    /// A blob went on past the size its descriptor gives.
    #[error("blob {digest} from {repository} is larger than the {size} bytes its descriptor gives")]
    Oversized { repository: String, digest: Digest, size: u64 },
    /// A manifest or index we cannot use (bad JSON, unsupported media type, not an image).
    #[error("{reference}: {reason}")]
    BadManifest { reference: String, reason: String },
    /// An index without a manifest for the platform asked for.
    #[error("{reference}: no image for platform {wanted} (the index has: {available})")]
    NoMatchingPlatform { reference: String, wanted: String, available: String },
    /// The credentials file cannot be read, parsed or written.
    #[error("credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    /// The HTTP client could not be set up (TLS roots, ...).
    #[error("HTTP client: {0}")]
    Client(String),
    /// The config file blocks the registry and it has no mirror (`[registries."HOST"]`).
    #[error("{host} is blocked in {config} and has no mirror to pull {reference} from")]
    Blocked { host: String, reference: String, config: String },
    /// The registry is blocked in the config file (a push, which never goes to mirrors).
    #[error("{host} is blocked in {config}")]
    PushBlocked { host: String, config: String },
    /// Every mirror (and the registry) failed: what each said, in the order tried.
    #[error("pulling {reference}: {}", .tried.iter().map(|(h, e)| format!("{h}: {e}")).collect::<Vec<_>>().join("; "))]
    AllSourcesFailed { reference: String, tried: Vec<(String, Error)> },
    /// S3 answered with an error: `location` is `s3://BUCKET[/KEY]`, `code` and `message`
    /// come from its XML error body (`NoSuchBucket`, `SignatureDoesNotMatch`, ...), else they are
    /// the HTTP status and its reason.
    #[error("{location}: {code}: {message}")]
    S3 { location: String, status: u16, code: String, message: String },
    /// Neither the S3 options, the environment nor the shared credentials file give a key.
    #[error(
        "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or write ~/.aws/credentials"
    )]
    NoAwsCredentials,
    /// S3 options that cannot work (bucket name, endpoint URL, half a key pair).
    #[error("S3: {0}")]
    S3Config(String),
    #[error(transparent)]
    Store(#[from] cache::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
