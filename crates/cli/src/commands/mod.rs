//! One module per subcommand: its clap arguments and its handler.

pub mod console;
pub mod creds;
pub mod dashboard;
#[cfg(feature = "sim")]
pub mod demo;
pub mod factory;
pub mod pki;
pub mod ports;
pub mod preflight;
pub mod profiles;
pub mod provision;
pub mod replay;
pub mod send;
pub mod sign;
#[cfg(feature = "sim")]
pub mod sim;
