//! Failures a real registry will not produce on demand, from a scripted HTTP server on
//! 127.0.0.1: persistent 500s, a blob whose connection closes halfway, a 500 that clears.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache::Digest;
use common::*;
use registry::Error;

/// Serves each request with `respond(method, path, nth request)` -> raw response bytes, one
/// request per connection. Returns the host and the request counter.
fn serve(respond: impl Fn(&str, &str, usize) -> Vec<u8> + Send + 'static) -> (String, Arc<AtomicUsize>) {
    serve_with_headers(move |m, p, _, n| respond(m, p, n))
}

/// [`serve`], with the request's header lines (lowercased names) passed too.
fn serve_with_headers(
    respond: impl Fn(&str, &str, &[String], usize) -> Vec<u8> + Send + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                headers.push(h.trim_end().to_string());
            }
            let mut parts = line.split_whitespace();
            let (method, path) =
                (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.write_all(&respond(&method, &path, &headers, n));
        }
    });
    (host, count)
}

fn response(status: &str, content_type: &str, body: &[u8], claimed_len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {claimed_len}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A manifest whose config is `config` (a real image config) and no layers.
fn manifest_for(config: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": cache::oci::MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": cache::oci::MEDIA_TYPE_CONFIG, "digest": Digest::of(config), "size": config.len()},
        "layers": []
    }))
    .unwrap()
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;

#[test]
fn persistent_500_fails_after_three_tries() {
    let (host, count) = serve(|_, _, _| {
        response(
            "500 Internal Server Error",
            "application/json",
            br#"{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}"#,
            56,
        )
    });
    let (client, _) = client();
    let t = empty_store();
    let err = client.pull(&t.store, &format!("{host}/x:1").parse().unwrap(), None).expect_err("500");
    eprintln!("{err}");
    assert!(matches!(err, Error::Server { status: 500, tries: 3, .. }), "{err:?}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert!(err.to_string().contains("disk on fire"), "{err}");
}

#[test]
fn a_transient_500_is_retried() {
    let manifest = manifest_for(CONFIG);
    let (host, _) = serve(move |_, path, n| {
        if n == 0 {
            response("503 Service Unavailable", "text/plain", b"busy", 4)
        } else if path.contains("/manifests/") {
            response("200 OK", cache::oci::MEDIA_TYPE_MANIFEST, &manifest, manifest.len())
        } else {
            response("200 OK", "application/octet-stream", CONFIG, CONFIG.len())
        }
    });
    let (client, _) = client();
    let t = empty_store();
    let image =
        client.pull(&t.store, &format!("{host}/x:1").parse().unwrap(), None).expect("pull after a 503");
    assert_eq!(image.config_digest, Digest::of(CONFIG));
}

#[test]
fn a_blob_cut_off_mid_transfer_is_truncated_and_not_stored() {
    let manifest = manifest_for(CONFIG);
    let (host, count) = serve(move |_, path, _| {
        if path.contains("/manifests/") {
            response("200 OK", cache::oci::MEDIA_TYPE_MANIFEST, &manifest, manifest.len())
        } else {
            // Claims the whole config, sends half, closes.
            response("200 OK", "application/octet-stream", &CONFIG[..CONFIG.len() / 2], CONFIG.len())
        }
    });
    let (client, _) = client();
    let t = empty_store();
    let err = client.pull(&t.store, &format!("{host}/x:1").parse().unwrap(), None).expect_err("truncated");
    eprintln!("{err}");
    assert!(matches!(&err, Error::Truncated { got, .. } if *got == (CONFIG.len() / 2) as u64), "{err:?}");
    assert!(err.to_string().contains(Digest::of(CONFIG).as_str()));
    // One manifest GET, then three tries at the blob.
    assert_eq!(count.load(Ordering::SeqCst), 4);
    assert!(blob_names(&t.store).is_empty());
    assert!(t.store.tags().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(t.store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_layer_whose_download_breaks_off_is_fetched_again_and_ends_unpacked() {
    // Layers are unpacked while they download: the first, cut-off download's unpack must
    // leave nothing, and the retried one must still end with the layer unpacked.
    let (source, image) = random_image_store(300_000);
    let manifest = source.store.read_blob(&image.digest).unwrap();
    let config = source.store.read_blob(&image.config_digest).unwrap();
    let layer = image.layers()[0].clone();
    let blob = source.store.read_blob(&layer.digest).unwrap();
    let layer_path = format!("/blobs/{}", layer.digest);
    let layer_gets = Arc::new(AtomicUsize::new(0));
    let gets = layer_gets.clone();
    let (host, _) = serve(move |_, path, _| {
        if path.contains("/manifests/") {
            response("200 OK", cache::oci::MEDIA_TYPE_MANIFEST, &manifest, manifest.len())
        } else if path.ends_with(&layer_path) {
            let half = &blob[..blob.len() / 2];
            let body = if gets.fetch_add(1, Ordering::SeqCst) == 0 { half } else { &blob[..] };
            response("200 OK", "application/octet-stream", body, blob.len())
        } else {
            response("200 OK", "application/octet-stream", &config, config.len())
        }
    });
    let (client, _) = client();
    let t = empty_store();
    let pulled =
        client.pull(&t.store, &format!("{host}/x:1").parse().unwrap(), None).expect("pull after a retry");
    assert_eq!(pulled.digest, image.digest);
    assert_eq!(layer_gets.load(Ordering::SeqCst), 2, "the layer was fetched again");
    let unpacked = t.store.root().join("layers").join(layer.diff_id.hex());
    assert_eq!(std::fs::metadata(unpacked.join("random.bin")).expect("the layer is unpacked").len(), 300_000);
    assert_eq!(std::fs::read_dir(t.store.root().join("tmp")).unwrap().count(), 0, "nothing left behind");
}

#[test]
fn a_manifest_that_does_not_match_its_digest_is_rejected() {
    let manifest = manifest_for(CONFIG);
    let (host, _) =
        serve(move |_, _, _| response("200 OK", cache::oci::MEDIA_TYPE_MANIFEST, &manifest, manifest.len()));
    let (client, _) = client();
    let t = empty_store();
    let wanted = Digest::of(b"something else");
    let err = client
        .pull(&t.store, &format!("{host}/x@{wanted}").parse().unwrap(), None)
        .expect_err("manifest digest mismatch");
    eprintln!("{err}");
    assert!(matches!(&err, Error::DigestMismatch { digest, .. } if *digest == wanted), "{err:?}");
    assert!(blob_names(&t.store).is_empty());
}

#[test]
fn bearer_tokens_come_from_the_realm_with_the_stored_login() {
    let manifest = manifest_for(CONFIG);
    let (host, _) = serve_with_headers(move |_, path, headers, _| {
        let auth = headers
            .iter()
            .find_map(|h| h.strip_prefix("authorization: ").or_else(|| h.strip_prefix("Authorization: ")))
            .unwrap_or("");
        if path.starts_with("/token") {
            // basic base64("bob:pw")
            if auth == "Basic Ym9iOnB3" && path.contains("scope=repository%3Ax%3Apull") {
                let body = br#"{"token":"t0k3n"}"#;
                response("200 OK", "application/json", body, body.len())
            } else {
                response("401 Unauthorized", "application/json", b"{}", 2)
            }
        } else if auth != "Bearer t0k3n" {
            let port = headers
                .iter()
                .find_map(|h| h.to_ascii_lowercase().strip_prefix("host: ").map(str::to_string))
                .unwrap_or_default();
            format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{port}/token\",service=\"test\",scope=\"repository:x:pull\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes()
        } else if path.contains("/manifests/") {
            response("200 OK", cache::oci::MEDIA_TYPE_MANIFEST, &manifest, manifest.len())
        } else {
            response("200 OK", "application/octet-stream", CONFIG, CONFIG.len())
        }
    });
    let t = empty_store();
    let reference: cache::ImageRef = format!("{host}/x:1").parse().unwrap();

    let (anonymous, _) = client();
    let err = anonymous.pull(&t.store, &reference, None).expect_err("no login");
    eprintln!("{err}");
    assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");

    let auth = t.dir.path().join("auth.json");
    registry::Credentials::file(&auth)
        .save(&host, &registry::Login { username: "bob".into(), password: "pw".into() })
        .unwrap();
    let (client, _) = client_with(&auth);
    let image = client.pull(&t.store, &reference, None).expect("pull with a bearer token");
    assert_eq!(image.config_digest, Digest::of(CONFIG));
}
