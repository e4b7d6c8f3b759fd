//! Benchmark (run with `cargo bench --bench factory [-- N...]`): the factory line's
//! throughput with 1 station, 8 stations and any N given, each unit an `atprov sim esp32-at`
//! process on its own PTY at 115,200 baud with realistic latencies (Wi-Fi join, SNTP, TLS,
//! flash, 2 ms per command), swapped by a simulated operator as soon as the factory reports a
//! verdict. Prints units per minute, the speed-up over 1 station, and host CPU time per unit
//! (the factory alone, and the factory with the emulators). Asserts nothing about speed.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::line::{Conveyor, Factory, make_pool, react, write_config};

/// Units each station provisions per run.
const UNITS_EACH: usize = 3;

struct Run {
    units: usize,
    wall: Duration,
    factory_cpu: Duration,
    all_cpu: Duration,
}

fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    cpu(&u)
}

fn cpu(u: &libc::rusage) -> Duration {
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn run(stations: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let units = stations * UNITS_EACH;
    make_pool(dir.path(), units);
    let mut conveyor = Conveyor::new(
        dir.path(),
        stations,
        UNITS_EACH,
        &["--realistic", "--baud", "115200", "--latency", "2ms"],
    );
    let config = write_config(dir.path(), &conveyor, "");
    let cpu_before = children_cpu();
    conveyor.fill();
    let started = Instant::now();
    let mut factory = Factory::start(&config, &["--batch", &units.to_string()]);
    while let Some(ev) = factory.next(Duration::from_secs(120)) {
        assert_ne!(ev["event"], "unit_failed", "{ev}");
        react(&mut conveyor, &ev, false);
    }
    let wall = started.elapsed();
    // wait4 gives the factory's own CPU time.
    let pid = factory.child.id() as i32;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child; the structs are ours.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    drop(conveyor);
    std::mem::forget(factory);
    Run {
        units,
        wall,
        factory_cpu: cpu(&usage),
        all_cpu: children_cpu() - cpu_before,
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // `cargo bench --bench factory -- 32` adds a run of 32 stations.
    let more: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let mut runs = vec![(1, run(1)), (8, run(8))];
    for n in more {
        runs.push((n, run(n)));
    }
    let rate = |r: &Run| r.units as f64 / r.wall.as_secs_f64() * 60.0;
    let one = rate(&runs[0].1);
    for (n, r) in &runs {
        let name = format!("{n} station{}", if *n == 1 { "" } else { "s" });
        println!(
            "{name:>10}: {:2} units in {:5.1} s = {:5.1} units/min; CPU per unit: factory {:4.0} ms, factory + emulators {:4.0} ms",
            r.units,
            r.wall.as_secs_f64(),
            rate(r),
            r.factory_cpu.as_secs_f64() * 1000.0 / r.units as f64,
            r.all_cpu.as_secs_f64() * 1000.0 / r.units as f64,
        );
        if *n > 1 {
            println!(
                "throughput of {n} stations / 1 station: {:.2}x (on {} CPUs)",
                rate(r) / one,
                std::thread::available_parallelism().map_or(0, |n| n.get())
            );
        }
    }
}
