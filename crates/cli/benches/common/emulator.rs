//! An emulator on a pseudo-terminal in a thread and runtime of its own, for benchmarks that
//! read its device clock.

use std::time::Duration;

use atprov_sim::{self as sim, RunnerOptions, SimControl, SimOptions};

/// Starts `name` (realistic latencies, 2 ms per command) paced at `baud` in both directions,
/// judging the host's rate on the PTY; returns the path the host opens and the control.
pub fn start(name: &str, baud: u32) -> (String, SimControl) {
    start_with(name, baud, &[])
}

/// [`start`] with `--module` settings.
pub fn start_with(name: &str, baud: u32, module: &[&str]) -> (String, SimControl) {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = name.to_string();
    let module: Vec<String> = module.iter().map(|m| m.to_string()).collect();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let options = SimOptions {
                realistic: true,
                baud: Some(baud),
                module,
                ..SimOptions::default()
            };
            let model = sim::model_with(&name, &options).unwrap();
            let pty = sim::pty::open().unwrap();
            let control = SimControl::default();
            let runner = RunnerOptions {
                baud: Some(baud),
                latency: Duration::from_millis(2),
                host_rate: Some(pty.master.host_rate().unwrap()),
                ..RunnerOptions::default()
            };
            let task = model.into_run(Box::new(pty.master), runner, control.clone());
            tx.send((pty.path.clone(), control)).unwrap();
            let _ = task.await;
        });
    });
    rx.recv().unwrap()
}
