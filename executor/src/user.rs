//! Resolving a Dockerfile `USER` string against a rootfs's /etc/passwd and /etc/group, with the
//! semantics (and error wording) of runc's `GetExecUser`, which Docker uses.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups; only filled when the group is implicit (`USER name`).
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if line.trim_start().starts_with('#') || f.len() < 7 {
            return None;
        }
        Some(PasswdEntry { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if line.trim_start().starts_with('#') || f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').map(str::trim).filter(|m| !m.is_empty()).collect();
        Some(GroupEntry { name: f[0], gid: f[2].parse().ok()?, members })
    })
}

/// A USER that the image's files do not know, in runc's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    User(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    Group(String),
}

/// `passwd` and `group` are the files' contents, `None` if missing (numeric ids still work).
pub(crate) fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ExecUser, UserError> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // An empty user means root, looked up so that root's home and groups apply.
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };
    let user_num = user_arg.parse::<u32>().ok();

    let found = passwd.and_then(|p| {
        passwd_entries(p).find(|e| e.name == user_arg || Some(e.uid) == user_num).map(|e| {
            (
                e.name.to_string(),
                ExecUser { uid: e.uid, gid: e.gid, groups: Vec::new(), home: e.home.to_string() },
            )
        })
    });
    let (name, mut user) = match (found, user_num) {
        (Some(found), _) => found,
        (None, Some(uid)) => (String::new(), ExecUser { uid, gid: 0, groups: Vec::new(), home: "/".into() }),
        (None, None) => {
            return Err(UserError::User(user_arg.to_string()));
        }
    };

    match group_arg {
        Some(g) if !g.is_empty() => {
            let gid_num = g.parse::<u32>().ok();
            let found =
                group.and_then(|text| group_entries(text).find(|e| e.name == g || Some(e.gid) == gid_num));
            user.gid = match (found, gid_num) {
                (Some(e), _) => e.gid,
                (None, Some(gid)) => gid,
                (None, None) => {
                    return Err(UserError::Group(g.to_string()));
                }
            };
        }
        _ if !name.is_empty() => {
            let groups = group.map(group_entries).into_iter().flatten();
            user.groups = groups.filter(|e| e.members.contains(&name.as_str())).map(|e| e.gid).collect();
        }
        _ => {}
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n# x\nbad line\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nwheel:x:10:root,app\n";

    fn r(spec: &str) -> Result<ExecUser, UserError> {
        resolve(spec, Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            r("app").unwrap(),
            ExecUser { uid: 1000, gid: 1000, groups: vec![50, 10], home: "/home/app".into() }
        );
        assert_eq!(r("1000").unwrap().home, "/home/app");
        assert_eq!(r("").unwrap(), ExecUser { uid: 0, gid: 0, groups: vec![10], home: "/root".into() });
        assert_eq!(
            r("app:staff").unwrap(),
            ExecUser { uid: 1000, gid: 50, groups: vec![], home: "/home/app".into() }
        );
        assert_eq!(
            resolve("1234:5678", None, None).unwrap(),
            ExecUser { uid: 1234, gid: 5678, groups: vec![], home: "/".into() }
        );
        assert_eq!(r("4321").unwrap().gid, 0);
    }

    #[test]
    fn unknown_names_fail_with_dockers_wording() {
        assert_eq!(
            r("nope").unwrap_err().to_string(),
            "unable to find user nope: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("app", None, None).unwrap_err().to_string(),
            "unable to find user app: no matching entries in passwd file"
        );
        assert_eq!(
            r("app:nogrp").unwrap_err().to_string(),
            "unable to find group nogrp: no matching entries in group file"
        );
    }
}
