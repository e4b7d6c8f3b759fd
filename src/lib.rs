//! atprov: provision IoT modules over their AT-command serial port.
//!
//! The crate is a library with a thin binary. `ARCHITECTURE.md` at the top of the repository
//! is the map; in short, data flows from the command line ([`cli`]) through the AT [`at`]
//! engine to a [`port`], and emulated modules live in [`sim`].

pub mod at;
pub mod cli;
pub mod cloud;
pub mod exit;
pub mod factory;
pub mod files;
pub mod flow;
pub mod job;
pub mod pki;
pub mod port;
pub mod profile;
pub mod provision;
pub mod sim;
pub mod store;
pub mod transcript;
pub mod util;
