#![deny(missing_docs)]
//! The atprov product library: everything between a command line and the AT engine.
//!
//! Ports ([`port`], [`link`]) open what a selector names and start the engine of
//! [`atprov_at`] on it; profiles ([`profile`]) say what varies between module families; jobs,
//! stages and flows ([`provision`]) run a profile's steps; credential stores ([`store`]) write
//! and verify; [`pki`] and [`cloud`] work on the host only; the [`factory`] runs stations in
//! parallel over a journal; [`transcript`] writes and replays sessions. Failures carry their
//! exit code ([`error`]). This crate knows nothing of clap, terminals or the emulators: the
//! application registers extra port schemes ([`port::register_opener`]) and draws the output.

pub use atprov_at as at;

pub mod cloud;
pub mod error;
pub mod exit;
pub mod factory;
pub mod files;
pub mod link;
pub mod pki;
pub mod port;
pub mod preflight;
pub mod profile;
pub mod provision;
pub mod store;
pub mod transcript;
pub mod units;
