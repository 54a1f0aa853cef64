//! The S3 client against a real S3 server: moto on 127.0.0.1 (test-support's `TestS3`), which
//! checks every request's SigV4 signature. Each test creates its own bucket through the client.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};

use registry::s3::{S3, S3Options};
use sha2::{Digest, Sha256};
use test_support::proxy::CountingProxy;
use test_support::s3::TestS3;

/// A bucket name no other test (or earlier run) uses.
fn bucket_name() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("rbuild-{}-{nanos:x}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Path-style options for `bucket` on `server`, with its credentials.
fn options(server: &TestS3, bucket: &str) -> S3Options {
    S3Options {
        bucket: bucket.to_string(),
        endpoint_url: Some(server.endpoint()),
        use_path_style: true,
        access_key_id: Some(server.access_key_id().to_string()),
        secret_access_key: Some(server.secret_access_key().to_string()),
        ..Default::default()
    }
}

/// A client for a new bucket (created through it) on `server`.
fn with_bucket(server: &TestS3, prefix: &str) -> S3 {
    let s3 = S3::new(S3Options { prefix: prefix.to_string(), ..options(server, &bucket_name()) }).unwrap();
    s3.create_bucket().unwrap_or_else(|e| panic!("create bucket: {e}\n{}", server.log()));
    s3
}

fn read_all(s3: &S3, key: &str) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    s3.get(key).unwrap()?.read_to_end(&mut body).unwrap();
    Some(body)
}

#[test]
fn put_bytes_then_head_and_get_round_trip() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "");
    s3.put_bytes("blobs/sha256/aa", b"hello s3").unwrap();
    assert_eq!(s3.head("blobs/sha256/aa").unwrap(), Some(8));
    assert_eq!(read_all(&s3, "blobs/sha256/aa").as_deref(), Some(&b"hello s3"[..]));
    s3.put_bytes("empty", b"").unwrap();
    assert_eq!(s3.head("empty").unwrap(), Some(0));
    // Creating the bucket again is fine: it is ours.
    s3.create_bucket().unwrap();
}

#[test]
fn missing_keys_are_none() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "");
    assert_eq!(s3.head("no/such/key").unwrap(), None);
    assert!(s3.get("no/such/key").unwrap().is_none());
}

/// Only the characters moto re-encodes as AWS does: it checks the signature against the path as
/// werkzeug re-quotes it, which keeps `+=:@!$&'()*,;` and UTF-8 as they are where AWS (and
/// botocore, which fails there the same way) has `%XX`. The unit tests pin those.
#[test]
fn keys_with_spaces_and_tildes_are_signed_as_sent() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "");
    for key in ["a b/c d", "x~y/z_1.2-3"] {
        s3.put_bytes(key, key.as_bytes()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(read_all(&s3, key).as_deref(), Some(key.as_bytes()), "{key}");
    }
}

#[test]
fn put_file_streams_a_20_mb_file_and_it_comes_back_equal() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "cache/");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..20 {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        f.write_all(&chunk).unwrap();
    }
    drop(f);
    let content = std::fs::read(&path).unwrap();
    let sha = format!("{:x}", Sha256::digest(&content));

    s3.put_file("blobs/computed", &path, None).unwrap();
    s3.put_file("blobs/known", &path, Some(&sha)).unwrap();
    for key in ["blobs/computed", "blobs/known"] {
        assert_eq!(s3.head(key).unwrap(), Some(20 << 20));
        let back = read_all(&s3, key).unwrap();
        assert!(back == content, "{key}: {} bytes came back, not the file's", back.len());
    }
}

#[test]
fn a_wrong_secret_key_gives_signature_does_not_match() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "");
    let bucket = s3.describe().trim_start_matches("s3://").trim_end_matches('/').to_string();
    let wrong =
        S3::new(S3Options { secret_access_key: Some("not-the-secret".into()), ..options(&server, &bucket) })
            .unwrap();
    let err = wrong.put_bytes("k", b"x").unwrap_err().to_string();
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert!(err.starts_with(&format!("s3://{bucket}/k: ")), "{err}");
    let err = wrong.get("k").err().expect("a GET with the wrong secret fails").to_string();
    assert!(err.contains("SignatureDoesNotMatch"), "{err}");
    assert_eq!(s3.head("k").unwrap(), None, "nothing was stored");
}

#[test]
fn a_missing_bucket_gives_no_such_bucket() {
    let server = TestS3::start();
    let s3 = S3::new(S3Options { prefix: "p/".into(), ..options(&server, "never-created") }).unwrap();
    let err = s3.put_bytes("blobs/sha256/ab", b"x").unwrap_err().to_string();
    assert_eq!(
        err,
        "s3://never-created/p/blobs/sha256/ab: NoSuchBucket: The specified bucket does not exist"
    );
    let err = s3.get("blobs/sha256/ab").err().expect("a GET from a missing bucket fails").to_string();
    assert!(err.contains("NoSuchBucket"), "{err}");
}

#[test]
fn objects_land_under_the_prefix() {
    let server = TestS3::start();
    let s3 = with_bucket(&server, "team/app/");
    s3.put_bytes("index.json", b"{}").unwrap();
    let bucket = s3.describe().trim_start_matches("s3://").split('/').next().unwrap().to_string();
    let bare = S3::new(options(&server, &bucket)).unwrap();
    assert_eq!(bare.head("team/app/index.json").unwrap(), Some(2));
    assert_eq!(bare.head("index.json").unwrap(), None);
    assert_eq!(s3.describe(), format!("s3://{bucket}/team/app/"));
    let puts: Vec<_> = server.requests().into_iter().filter(|(m, _)| m == "PUT").map(|(_, p)| p).collect();
    assert!(puts.contains(&format!("/{bucket}/team/app/index.json")), "{puts:?}");
}

#[test]
fn credentials_from_the_environment_are_used() {
    let server = TestS3::start();
    let bucket = bucket_name();
    let env: HashMap<&str, String> = [
        ("AWS_ACCESS_KEY_ID", server.access_key_id().to_string()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_access_key().to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
    .into();
    let options = S3Options {
        bucket: bucket.clone(),
        endpoint_url: Some(server.endpoint()),
        use_path_style: true,
        ..Default::default()
    };
    let s3 = S3::with_env(options, &|k| env.get(k).cloned()).unwrap();
    s3.create_bucket().unwrap();
    s3.put_bytes("k", b"from env").unwrap();
    assert_eq!(s3.head("k").unwrap(), Some(8));
}

#[test]
fn an_unreachable_endpoint_says_so() {
    let port = test_support::free_port();
    let s3 = S3::new(S3Options {
        bucket: "b".into(),
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        use_path_style: true,
        access_key_id: Some("K".into()),
        secret_access_key: Some("S".into()),
        ..Default::default()
    })
    .unwrap();
    let err = s3.head("k").unwrap_err().to_string();
    assert_eq!(err, format!("cannot reach http://127.0.0.1:{port}: connection refused"));
}

#[test]
fn a_put_of_1_mib_uploads_it_once() {
    let server = TestS3::start();
    let proxy = CountingProxy::start(server.port());
    let through_proxy = |bucket: &str| S3Options {
        endpoint_url: Some(format!("http://127.0.0.1:{}", proxy.port())),
        ..options(&server, bucket)
    };
    let s3 = S3::new(through_proxy(&bucket_name())).unwrap();
    s3.create_bucket().unwrap();
    proxy.reset();
    s3.put_bytes("blob", &vec![1u8; 1 << 20]).unwrap();
    let up = proxy.uploaded();
    assert!(((1 << 20)..(1 << 20) + (1 << 20) / 10).contains(&up), "uploaded {up} bytes");
    assert!(proxy.downloaded() < 4096, "downloaded {} bytes", proxy.downloaded());
    let puts = server.requests().iter().filter(|(m, _)| m == "PUT").count();
    assert_eq!(puts, 2, "the bucket and the blob: {:?}", server.requests());
}
