//! The volume store: create, ensure, list, remove, prune, and which containers use what, on a
//! store in a temporary directory (real files, a real tmpfs mount for the mounted case).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use runtime::MountRequest;
use runtime::container::{Config, ContainerConfig, ContainerId, Containers, HostConfig};
use runtime::volume::{self, Error, Volumes};

fn store() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("rbuild-volumes-").tempdir().expect("temp store")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn names(volumes: &Volumes) -> Vec<String> {
    volumes.list().expect("list").into_iter().map(|v| v.name).collect()
}

/// A container in the store whose config mounts `mounts`, made through the containers API.
fn container_with(root: &Path, mounts: Vec<MountRequest>) -> String {
    let containers = Containers::open(root).expect("containers");
    let id = ContainerId::random();
    let name = containers.generate_name();
    containers.reserve_name(&name, &id).expect("reserve name");
    let config = ContainerConfig {
        id: id.clone(),
        name,
        created: runtime::container::now_rfc3339(),
        image_id: cache::Digest::of(b"not a real image"),
        config: Config::default(),
        host: HostConfig { mounts, ..HostConfig::default() },
    };
    containers.create(&config).expect("create container");
    id.to_string()
}

fn named(name: &str, target: &str) -> MountRequest {
    MountRequest::Volume {
        name: name.into(),
        target: target.into(),
        readonly: false,
        anonymous: false,
        nocopy: false,
    }
}

#[test]
fn create_lays_out_docker_s_directories_and_is_idempotent() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let v = volumes.create(Some("data"), labels(&[("team", "db")]), false).unwrap();
    assert_eq!(v.name, "data");
    assert_eq!(v.mountpoint, root.path().join("volumes/data/_data"));
    assert!(v.mountpoint.is_dir());
    assert!(root.path().join("volumes/data/volume.json").is_file());
    assert!(runtime::container::parse_rfc3339(&v.created).is_some(), "created {:?}", v.created);
    assert_eq!(v.driver(), "local");
    fs::write(v.mountpoint.join("kept"), "x").unwrap();

    let again = volumes.create(Some("data"), labels(&[("other", "1")]), true).unwrap();
    assert_eq!(again, v, "creating an existing volume returns it unchanged");
    assert_eq!(fs::read_to_string(again.mountpoint.join("kept")).unwrap(), "x");
    assert_eq!(names(&volumes), ["data"]);
}

#[test]
fn volumes_without_a_name_get_a_random_hex_one() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let a = volumes.create(None, BTreeMap::new(), true).unwrap();
    let b = volumes.create(None, BTreeMap::new(), false).unwrap();
    for v in [&a, &b] {
        assert_eq!(v.name.len(), 64);
        assert!(v.name.bytes().all(|c| c.is_ascii_hexdigit()), "{}", v.name);
    }
    assert_ne!(a.name, b.name);
    assert!(a.anonymous && !b.anonymous);
    assert_eq!(a.docker_labels(), labels(&[(volume::ANONYMOUS_LABEL, "")]));
    assert!(b.docker_labels().is_empty());
    let mut expected = vec![a.name.clone(), b.name.clone()];
    expected.sort();
    assert_eq!(names(&volumes), expected);
}

#[test]
fn bad_names_and_missing_volumes_fail_as_docker_does() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    for bad in ["a", "-x", ".hidden", "a/b", "../x", ""] {
        let e = volumes.create(Some(bad), BTreeMap::new(), false).unwrap_err();
        assert!(matches!(e, Error::InvalidName(_)), "{bad:?}: {e}");
        assert!(e.to_string().contains("includes invalid characters for a local volume name"), "{e}");
    }
    assert_eq!(volumes.get("nosuch").unwrap_err().to_string(), "get nosuch: no such volume");
    assert!(names(&volumes).is_empty());
}

#[test]
fn a_volume_may_be_called_lock() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    volumes.create(Some("lock"), BTreeMap::new(), false).unwrap();
    volumes.create(Some("other"), BTreeMap::new(), false).unwrap();
    assert_eq!(names(&volumes), ["lock", "other"]);
    volumes.remove("lock", &[], false).unwrap();
    assert_eq!(names(&volumes), ["other"]);
}

#[test]
fn ensure_creates_a_missing_volume_once() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let v = volumes.ensure("cache").unwrap();
    assert!(!v.anonymous);
    fs::write(v.mountpoint.join("f"), "1").unwrap();
    assert_eq!(volumes.ensure("cache").unwrap(), v);
    assert!(v.mountpoint.join("f").exists());
}

#[test]
fn remove_refuses_a_volume_in_use_even_forced() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    volumes.create(Some("data"), BTreeMap::new(), false).unwrap();
    let users = vec!["c1".to_string(), "c2".to_string()];
    for force in [false, true] {
        let e = volumes.remove("data", &users, force).unwrap_err();
        assert_eq!(e.to_string(), "remove data: volume is in use - [c1, c2]");
    }
    assert_eq!(names(&volumes), ["data"]);
    volumes.remove("data", &[], false).unwrap();
    assert!(names(&volumes).is_empty());
    assert!(!root.path().join("volumes/data").exists());
    assert_eq!(volumes.remove("data", &[], false).unwrap_err().to_string(), "get data: no such volume");
    volumes.remove("data", &[], true).expect("-f: a missing volume is no error");
}

/// Unmounts the tmpfs the test mounted, by its exact path, also when the test fails.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn remove_refuses_a_volume_with_a_mount_inside() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let v = volumes.create(Some("held"), BTreeMap::new(), false).unwrap();
    let at = v.mountpoint.join("sub");
    fs::create_dir(&at).unwrap();
    nix::mount::mount(Some("tmpfs"), &at, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
        .expect("mount a tmpfs (tests run as root)");
    let guard = Unmount(at.clone());
    fs::write(at.join("precious"), "x").unwrap();
    let e = volumes.remove("held", &[], true).unwrap_err();
    assert!(matches!(e, Error::Mounted { .. }), "{e}");
    assert!(e.to_string().contains(&at.display().to_string()), "{e}");
    assert!(at.join("precious").exists(), "nothing under the mount was touched");
    drop(guard);
    volumes.remove("held", &[], false).unwrap();
    assert!(names(&volumes).is_empty());
}

#[test]
fn prune_removes_unused_anonymous_volumes_or_with_all_every_unused_one() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let anon_unused = volumes.create(None, BTreeMap::new(), true).unwrap();
    let anon_used = volumes.create(None, BTreeMap::new(), true).unwrap();
    volumes.create(Some("named-unused"), BTreeMap::new(), false).unwrap();
    volumes.create(Some("named-used"), BTreeMap::new(), false).unwrap();
    // 1000 bytes, and a hard link to them that must not count twice.
    let file = anon_unused.mountpoint.join("blob");
    fs::write(&file, vec![7u8; 1000]).unwrap();
    fs::hard_link(&file, anon_unused.mountpoint.join("link")).unwrap();
    fs::create_dir(anon_unused.mountpoint.join("dir")).unwrap();
    fs::write(anon_unused.mountpoint.join("dir/small"), "abc").unwrap();
    let in_use: BTreeSet<String> = [anon_used.name.clone(), "named-used".to_string()].into();

    let removed = volumes.prune(&in_use, false).unwrap();
    assert_eq!(removed, [(anon_unused.name.clone(), 1003)]);
    let mut left = vec![anon_used.name.clone(), "named-unused".into(), "named-used".into()];
    left.sort();
    assert_eq!(names(&volumes), left);

    let removed = volumes.prune(&in_use, true).unwrap();
    assert_eq!(removed, [("named-unused".to_string(), 0)]);
    let mut left = vec![anon_used.name.clone(), "named-used".into()];
    left.sort();
    assert_eq!(names(&volumes), left);
}

#[test]
fn volume_users_reads_every_container_s_mounts() {
    let root = store();
    let a = container_with(
        root.path(),
        vec![
            named("shared", "/a"),
            named("shared", "/b"),
            MountRequest::Bind { source: "/tmp".into(), target: "/t".into(), readonly: true },
        ],
    );
    let b = container_with(root.path(), vec![named("shared", "/data"), named("own", "/own")]);
    container_with(root.path(), vec![MountRequest::Tmpfs { target: "/run".into(), size: None, mode: None }]);
    let users = volume::volume_users(root.path()).unwrap();
    assert_eq!(users.len(), 2, "{users:?}");
    let mut shared = users["shared"].clone();
    shared.sort();
    let mut expected = vec![a.clone(), b.clone()];
    expected.sort();
    assert_eq!(shared, expected, "each container once");
    assert_eq!(users["own"], [b]);
}

#[test]
fn volume_users_of_an_empty_store_is_empty() {
    let root = store();
    assert!(volume::volume_users(root.path()).unwrap().is_empty());
}

#[test]
fn a_change_cut_short_is_cleared_by_the_next_one() {
    let root = store();
    let volumes = Volumes::open(root.path()).unwrap();
    let leftover = root.path().join("volumes/.creating-half");
    fs::create_dir_all(leftover.join("_data")).unwrap();
    let trash = root.path().join("volumes/.removing-gone");
    fs::create_dir_all(trash.join("_data/x")).unwrap();
    assert!(names(&volumes).is_empty(), "half-made volumes never list");
    volumes.create(Some("next"), BTreeMap::new(), false).unwrap();
    assert!(!leftover.exists() && !trash.exists());
    assert_eq!(names(&volumes), ["next"]);
}
