//! Emulated modules, used by tests, benchmarks and anyone without hardware
//! (`--port sim:esp32-at`), and the transcript replayer (`--port replay:FILE`).
//!
//! An emulator is a [`runner::Model`] (what the firmware does) played by the [`runner`] (echo,
//! busy, prompts, faults, timing) on a byte stream: an in-process pipe ([`open_in_process`]) or
//! a pseudo-terminal ([`pty`]) so that tests exercise the real serial path.

pub mod esp32;
pub mod pty;
pub mod replay;
pub mod runner;

use std::time::Duration;

use crate::port::BoxPort;
pub use runner::{Faults, Model, RunnerOptions, SimControl};

/// The built-in emulators: name and what it is.
pub const EMULATORS: &[(&str, &str)] = &[
    (
        "esp32-at",
        "ESP32 with ESP-AT 3.2 (certificates in mfg_nvs, AT+SYSMFG)",
    ),
    (
        "esp32-at-v2",
        "ESP32 with ESP-AT 2.2 (legacy PKI partitions, AT+SYSFLASH)",
    ),
];

/// How to run an emulator.
#[derive(Debug, Clone, Default)]
pub struct SimOptions {
    /// Pace output at this baud rate.
    pub baud: Option<u32>,
    /// Firmware time per command.
    pub latency: Duration,
}

/// Makes the model a built-in emulator name stands for.
pub fn model(name: &str) -> Result<Box<dyn ModelBox>, String> {
    match name {
        "esp32-at" => Ok(Box::new(esp32::Esp32::new(esp32::Generation::V3))),
        "esp32-at-v2" => Ok(Box::new(esp32::Esp32::new(esp32::Generation::V2))),
        _ => Err(format!(
            "unknown emulator `{name}`: built-in emulators are {}",
            EMULATORS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A boxed model that can be played.
pub trait ModelBox: Send {
    fn into_run(
        self: Box<Self>,
        io: Box<dyn crate::port::PortIo>,
        options: RunnerOptions,
        control: SimControl,
    ) -> tokio::task::JoinHandle<std::io::Result<()>>;
}

impl<M: Model> ModelBox for M {
    fn into_run(
        self: Box<Self>,
        io: Box<dyn crate::port::PortIo>,
        options: RunnerOptions,
        control: SimControl,
    ) -> tokio::task::JoinHandle<std::io::Result<()>> {
        tokio::spawn(runner::run(*self, io, options, control))
    }
}

/// Starts a built-in emulator in this process and returns the host end of its pipe.
pub fn open_in_process(name: &str, options: &SimOptions) -> Result<BoxPort, String> {
    let (port, _control) = open_in_process_with_control(name, options)?;
    Ok(port)
}

/// Like [`open_in_process`], with a handle to inject faults and URCs.
pub fn open_in_process_with_control(
    name: &str,
    options: &SimOptions,
) -> Result<(BoxPort, SimControl), String> {
    let model = model(name)?;
    let (host, device) = tokio::io::duplex(64 * 1024);
    let control = SimControl::default();
    let runner_options = RunnerOptions {
        baud: options.baud,
        latency: options.latency,
        boot_banner: false,
    };
    model.into_run(Box::new(device), runner_options, control.clone());
    Ok((Box::new(host), control))
}
