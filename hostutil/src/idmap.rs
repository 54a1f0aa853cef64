//! User-namespace id maps (`/proc/<pid>/uid_map`, `gid_map`): which ids a process's namespace
//! maps, and whether it is in the initial namespace at all.
//!
//! Whether rbuild runs in a user namespace is always read from the map, never remembered from
//! "did we unshare": the sandbox's init (a re-exec) and root inside somebody else's namespace
//! must decide the same way.

/// Which map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    /// `uid` or `gid`.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        }
    }

    /// This process's map file.
    pub fn self_map_file(self) -> &'static str {
        match self {
            IdKind::Uid => "/proc/self/uid_map",
            IdKind::Gid => "/proc/self/gid_map",
        }
    }
}

/// One line of a map: ids `inside..inside+count` in the namespace are `outside..` in its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A whole map, as the kernel lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap(pub Vec<Range>);

impl IdMap {
    /// Parses `inside outside count` lines; malformed lines are skipped.
    pub fn parse(text: &str) -> IdMap {
        IdMap(
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().map(|n| n.parse::<u32>().ok());
                    Some(Range { inside: f.next()??, outside: f.next()??, count: f.next()?? })
                })
                .collect(),
        )
    }

    /// This process's map, or `None` when it cannot be read (no /proc).
    pub fn of_self(kind: IdKind) -> Option<IdMap> {
        std::fs::read_to_string(kind.self_map_file()).ok().map(|t| IdMap::parse(&t))
    }

    /// The initial namespace's map: every id is itself.
    pub fn is_identity(&self) -> bool {
        self.0 == [Range { inside: 0, outside: 0, count: u32::MAX }]
    }

    /// Whether `id` (inside) has a mapping.
    pub fn maps(&self, id: u32) -> bool {
        self.0.iter().any(|r| {
            u64::from(id) >= u64::from(r.inside) && u64::from(id) < u64::from(r.inside) + u64::from(r.count)
        })
    }

    /// How many ids are mapped in all.
    pub fn count(&self) -> u64 {
        self.0.iter().map(|r| u64::from(r.count)).sum()
    }

    /// The highest id mapped (rbuild maps from 0 up without gaps), or 0 for an empty map.
    pub fn top(&self) -> u64 {
        self.0.iter().map(|r| u64::from(r.inside) + u64::from(r.count)).max().unwrap_or(1) - 1
    }

    /// The id outside that `inside` is, if mapped.
    pub fn outside(&self, inside: u32) -> Option<u32> {
        self.0.iter().find_map(|r| {
            let offset = inside.checked_sub(r.inside)?;
            (offset < r.count).then(|| r.outside + offset)
        })
    }
}

/// True when this process sees the full identity map, i.e. it is in the initial user namespace.
/// Without a readable `/proc/self/uid_map` (no /proc) that is assumed.
pub fn in_initial_userns() -> bool {
    IdMap::of_self(IdKind::Uid).is_none_or(|m| m.is_identity())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_parse_and_answer() {
        let identity = IdMap::parse("         0          0 4294967295\n");
        assert!(identity.is_identity());
        let sub = IdMap::parse("0 1001 1\n1 100000 65536\nbad line\n");
        assert_eq!(sub.0.len(), 2);
        assert!(!sub.is_identity());
        assert!(sub.maps(0) && sub.maps(65536) && !sub.maps(65537));
        assert_eq!((sub.count(), sub.top()), (65537, 65536));
        assert_eq!((sub.outside(0), sub.outside(2), sub.outside(70000)), (Some(1001), Some(100001), None));
        let single = IdMap::parse("0 1001 1\n");
        assert_eq!((single.count(), single.top()), (1, 0));
    }

    #[test]
    fn the_test_runs_in_some_namespace() {
        // As root on a CI machine: the initial one; either way the map is readable.
        assert!(IdMap::of_self(IdKind::Uid).is_some());
        assert_eq!(in_initial_userns(), IdMap::of_self(IdKind::Uid).is_some_and(|m| m.is_identity()));
    }
}
