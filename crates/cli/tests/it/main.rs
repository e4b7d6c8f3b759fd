//! The atprov binary end to end, one test binary for the crate: the `atprov` executable over
//! real pseudo-terminals against `atprov sim` in other processes, credentials made by openssl,
//! expectations from `shared/vectors` and real captures.

mod common;

mod architecture;
mod broker;
mod cellular;
mod cli_errors;
mod dashboard;
mod engine_pty;
mod factory;
mod flash_baud;
mod journal_pg;
mod pki;
mod provision;
mod secrets;
mod sign;
mod transcript_roundtrip;
mod transcripts;
