//! Containers, networks and volumes: their state in the store and their lifecycle on top of
//! the executor's sandbox.
//!
//! Empty in this first slice: `rbuild run --rm` drives the executor directly in the
//! foreground. The crate exists so that lifecycle work has its place (see README.md).
