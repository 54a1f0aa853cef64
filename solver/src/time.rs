//! `SOURCE_DATE_EPOCH` for image configs; the RFC 3339 helpers are `cache::time`'s.

pub use cache::time::{format_unix, now_rfc3339, parse_rfc3339};

/// `SOURCE_DATE_EPOCH` applied to an image config (BuildKit's semantics): `created` becomes
/// the epoch, and so does every history entry's `created` that is missing, unreadable or later
/// than the epoch (earlier ones, e.g. a base image's, are kept).
pub fn clamp_created(config: &mut cache::oci::ImageConfig, epoch: i64) {
    let stamp = format_unix(epoch, 0);
    for h in &mut config.history {
        let keep = h.created.as_deref().and_then(parse_rfc3339).is_some_and(|t| t <= epoch);
        if !keep {
            h.created = Some(stamp.clone());
        }
    }
    config.created = Some(stamp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_config_and_history() {
        use cache::oci::{History, ImageConfig};
        let mut config = ImageConfig {
            created: Some("2030-01-01T00:00:00Z".into()),
            history: vec![
                History { created: Some("1990-01-01T00:00:00Z".into()), ..Default::default() },
                History { created: Some("2030-01-01T00:00:00.5Z".into()), ..Default::default() },
                History { created: None, ..Default::default() },
            ],
            ..Default::default()
        };
        clamp_created(&mut config, 946_684_800);
        let e = "2000-01-01T00:00:00Z";
        assert_eq!(config.created.as_deref(), Some(e));
        let got: Vec<_> = config.history.iter().map(|h| h.created.as_deref().unwrap()).collect();
        assert_eq!(got, ["1990-01-01T00:00:00Z", e, e]);
    }
}
