//! OCI distribution client: pull, push, auth, and registry-backed build cache.
//!
//! Empty in this first slice: images come from `import` and `load`. The crate exists so that
//! registry work has its place (see README.md).
