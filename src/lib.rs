//! podcap-merge: capture traffic from many sources (Kubernetes pods, local commands, files)
//! and merge it by timestamp into one pcapng stream in which every source interface is its own
//! named interface.
//!
//! Data flows one way, one module per stage:
//! [`source`] (bytes → records) → [`merge`] (k-way by timestamp) → [`output`] (interface
//! mapping, pcapng encoding via [`format::encode`]) → a sink (stdout or file).
//! [`offline`] drives the stages for `podcap-merge merge FILE…`.

pub mod format;
pub mod merge;
pub mod offline;
pub mod output;
pub mod source;
