//! The bottom of rbuild's workspace: small host facts and Go-compatible rules that several
//! crates need and none of them owns.
//!
//! It depends on no other rbuild crate and knows nothing of Dockerfiles, images or containers.
//! Each module is one helper that used to exist in several copies:
//! - [`mountinfo`]: `/proc/self/mountinfo`, parsed and unescaped;
//! - [`idmap`]: user-namespace id maps (`/proc/self/uid_map`), and whether we are in one;
//! - [`inroot`]: resolving and opening a path inside a root directory, as if chrooted there;
//! - [`tty`]: a terminal's window size;
//! - [`gopath`]: Go's `path.Clean` and `path.Base`, which Docker's path rules are written in;
//! - [`goparse`]: Go's `strconv.ParseBool`/`ParseUint`, `time.ParseDuration` and one
//!   `encoding/csv` record (`--mount`);
//! - [`units`]: go-units' `RAMInBytes`, the size syntax of `--memory`, `--mount size=`, `--tmpfs`;
//! - [`platform`]: the host's OCI platform (`linux/amd64`, `linux/arm/v7`);
//! - [`errors`]: an error and its causes as one line.

pub mod errors;
pub mod goparse;
pub mod gopath;
pub mod idmap;
pub mod inroot;
pub mod mountinfo;
pub mod platform;
pub mod tty;
pub mod units;
