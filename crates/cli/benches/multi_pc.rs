//! Benchmark (run with `cargo bench --bench multi_pc`): a line of several PCs on one
//! PostgreSQL journal. One PC of 8 stations, then two PCs of 8 stations each (two factory
//! processes) sharing one pool, each run on a fresh database of a PostgreSQL 15 server
//! started for the benchmark; every unit an `atprov sim esp32-at` process on its own PTY at
//! 115,200 baud with realistic latencies. Prints units per minute, the two PCs' throughput
//! over one PC's, and how long stations waited for the journal's allocation (p50, p99, max:
//! the `allocate_us` of every `credential_allocated` event). Asserts nothing about speed.

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::line::{Pc, make_pool, pump_all};
use common::postgres::Postgres;

/// Units each station provisions per run.
const UNITS_EACH: usize = 3;
/// Stations per PC.
const STATIONS: usize = 8;

struct Run {
    units: usize,
    wall: Duration,
    /// Every allocation's wait, in microseconds, sorted.
    waits: Vec<u64>,
}

fn run(pg: &Postgres, pcs: usize) -> Run {
    let url = pg.database(&format!("bench_{pcs}_pc"));
    let dir = tempfile::tempdir().unwrap();
    let units = pcs * STATIONS * UNITS_EACH;
    let pool = make_pool(dir.path(), units);
    let sim = ["--realistic", "--baud", "115200", "--latency", "2ms"];
    let mut line: Vec<Pc> = (1..=pcs)
        .map(|n| Pc::new(dir.path(), n, &pool, &url, STATIONS, UNITS_EACH, &sim))
        .collect();
    let started = Instant::now();
    for pc in &mut line {
        pc.start();
    }
    while pump_all(&mut line) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the line hung"
        );
    }
    let wall = started.elapsed();
    let mut waits = Vec::new();
    for pc in &line {
        for ev in &pc.events {
            assert_ne!(ev["event"], "unit_failed", "{ev}");
            if ev["event"] == "credential_allocated" {
                waits.push(ev["allocate_us"].as_u64().unwrap());
            }
        }
    }
    waits.sort_unstable();
    assert_eq!(waits.len(), units);
    Run { units, wall, waits }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pg = Postgres::start();
    let runs = [(1, run(&pg, 1)), (2, run(&pg, 2))];
    let rate = |r: &Run| r.units as f64 / r.wall.as_secs_f64() * 60.0;
    for (pcs, r) in &runs {
        println!(
            "{pcs} PC x {STATIONS} stations: {:2} units in {:5.1} s = {:5.1} units/min; allocation wait p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            r.units,
            r.wall.as_secs_f64(),
            rate(r),
            percentile(&r.waits, 0.5),
            percentile(&r.waits, 0.99),
            percentile(&r.waits, 1.0),
        );
    }
    println!(
        "throughput of 2 PCs / 1 PC: {:.2}x (on {} CPUs)",
        rate(&runs[1].1) / rate(&runs[0].1),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
