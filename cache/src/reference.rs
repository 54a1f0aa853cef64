//! Image references (`[host[:port]/]path[:tag][@digest]`), parsed and normalized.

use std::fmt;
use std::str::FromStr;

use crate::{Digest, Error};

/// A parsed image reference such as `busybox`, `localhost:5000/team/app:v1` or
/// `app@sha256:...`.
///
/// References are kept in Docker's *familiar* form: `docker.io/library/busybox` and `busybox`
/// are the same reference and display as `busybox`. A reference without tag or digest means
/// `:latest`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Repository name in familiar form, e.g. `busybox` or `127.0.0.1:5000/x/y`.
    name: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tag, `latest` when the reference named neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(t), _) => Some(t),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The key under which the store's tag table keeps this reference: `name:tag`, or
    /// `name@digest` for a digest-only reference.
    pub fn key(&self) -> String {
        match (self.tag(), &self.digest) {
            (Some(t), _) => format!("{}:{t}", self.name),
            (None, Some(d)) => format!("{}@{d}", self.name),
            (None, None) => unreachable!("tag() is Some when there is no digest"),
        }
    }
}

fn is_valid_component(c: &str) -> bool {
    // Distribution's grammar: [a-z0-9]+ separated by one of '.', '_', '__' or runs of '-'.
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_lowercase() && !b[0].is_ascii_digit() {
        return false;
    }
    if !b[b.len() - 1].is_ascii_lowercase() && !b[b.len() - 1].is_ascii_digit() {
        return false;
    }
    let mut prev_sep = 0usize;
    for &ch in b {
        match ch {
            b'a'..=b'z' | b'0'..=b'9' => prev_sep = 0,
            b'.' | b'_' | b'-' => {
                prev_sep += 1;
                if ch == b'.' && prev_sep > 1 {
                    return false;
                }
                if ch == b'_' && prev_sep > 2 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

fn is_valid_domain(d: &str) -> bool {
    let host = match d.rsplit_once(':') {
        Some((h, port)) if !h.ends_with(']') || d.starts_with('[') => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            h
        }
        _ => d,
    };
    !host.is_empty()
        && host.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
}

fn is_valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<ImageRef, Error> {
        let bad = |why: &str| Error::InvalidReference { reference: s.to_string(), reason: why.to_string() };
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                (r, Some(d.parse::<Digest>().map_err(|_| bad("the digest is not sha256:<64 hex>"))?))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a host:port.
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !is_valid_tag(t)
        {
            return Err(bad("the tag may hold only letters, digits, '_', '.' and '-' (at most 128)"));
        }
        if name.is_empty() {
            return Err(bad("the name is empty"));
        }
        let mut parts: Vec<&str> = name.split('/').collect();
        let domain = if parts.len() > 1 {
            let first = parts[0];
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase())
            {
                if !is_valid_domain(first) {
                    return Err(bad("the registry host is not valid"));
                }
                Some(parts.remove(0))
            } else {
                None
            }
        } else {
            None
        };
        if let Some(c) = parts.iter().find(|c| !is_valid_component(c)) {
            let why = if c.chars().any(|ch| ch.is_ascii_uppercase()) {
                "repository names must be lowercase".to_string()
            } else {
                format!("'{c}' is not a valid name component")
            };
            return Err(bad(&why));
        }
        let mut path = parts.join("/");
        let domain = match domain {
            Some("docker.io" | "index.docker.io") => {
                if let Some(p) = path.strip_prefix("library/")
                    && !p.contains('/')
                {
                    path = p.to_string();
                }
                None
            }
            d => d,
        };
        let name = match domain {
            Some(d) => format!("{d}/{path}"),
            None => path,
        };
        if name.len() > 255 {
            return Err(bad("the name is longer than 255 characters"));
        }
        Ok(ImageRef { name, tag: tag.map(str::to_string), digest })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        } else if self.digest.is_none() {
            f.write_str(":latest")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> ImageRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn familiar_names_normalize_like_docker() {
        assert_eq!(r("busybox").to_string(), "busybox:latest");
        assert_eq!(r("docker.io/library/busybox:1").to_string(), "busybox:1");
        assert_eq!(r("localhost:5000/a/b:v1").name(), "localhost:5000/a/b");
        assert_eq!(r("localhost:5000/a/b").tag(), Some("latest"));
        assert_eq!(r("127.0.0.1:5000/x").name(), "127.0.0.1:5000/x");
        assert_eq!(r("demo:v1").key(), "demo:v1");
    }

    #[test]
    fn invalid_references_are_rejected() {
        for bad in ["", "UPPER", "a::b", "a:", "a/:b", "-a", "a@sha256:12", "a b"] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad:?} accepted");
        }
    }
}
