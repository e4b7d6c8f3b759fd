#![deny(missing_docs)]
//! The AT layer: framing ([`digest`]), meaning ([`classify`], [`session`]), commands and their
//! expectations ([`command`]), results ([`response`]) and the async [`engine`] that runs them on
//! a port. Everything but the engine is pure and synchronous.

pub mod classify;
pub mod command;
pub mod digest;
pub mod engine;
pub mod family;
pub mod redact;
pub mod response;
pub mod session;
pub mod text;

pub use classify::Grammar;
pub use command::Command;
pub use engine::{BoxPort, Engine, EngineConfig, EngineError, Port, TraceEvent};
pub use response::{Phase, Response, Status, Urc};
