//! Benchmarks (run with `cargo bench`): command round trips over a pseudo-terminal against
//! `atprov sim esp32-at --pty` in its own process, side by side with the physical floor (a
//! bare blocking write/read loop on the same PTY against the same emulator, in alternating
//! blocks) and the pyserial baseline (`shared/bench/pyserial_roundtrip.py`); and digester
//! throughput. Prints figures; asserts nothing about speed.

use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use atprov_at::digest::Digester;
use atprov_at::session::Session;
use atprov_at::{Engine, EngineConfig};
use atprov_core::port::{self, Selector, SerialOptions};

const ROUND_TRIPS: usize = 5000;

fn start_sim() -> (std::process::Child, String) {
    let mut child = Process::new(env!("CARGO_BIN_EXE_atprov"))
        .args(["sim", "esp32-at", "--pty"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Blocks of round trips each, engine and bare loop alternating.
const BLOCKS: usize = 5;

fn roundtrips(path: &str, n: usize) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = port::open(&Selector::Path(path.into()), &SerialOptions::default())
            .await
            .unwrap();
        let (engine, task) = Engine::start(port, EngineConfig::default(), None);
        assert!(engine.send("ATE0").await.unwrap().is_ok());
        for _ in 0..200 {
            engine.send("AT").await.unwrap();
        }
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            let r = engine.send("AT").await.unwrap();
            times.push(t.elapsed());
            assert!(r.is_ok());
        }
        drop(engine);
        let _ = task.await;
        times
    })
}

/// The floor: `AT\r\n` written and `\r\nOK\r\n` read with blocking system calls on the
/// raw PTY, nothing else (the emulator has echo off from the engine's `ATE0`).
fn bare_roundtrips(path: &str, n: usize) -> Vec<Duration> {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: termios is plain data; the descriptor is ours.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(f.as_raw_fd(), &mut t), 0);
        libc::cfmakeraw(&mut t);
        libc::cfsetspeed(&mut t, libc::B115200);
        assert_eq!(libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t), 0);
    }
    let mut buf = [0u8; 256];
    let mut once = |f: &mut std::fs::File| {
        f.write_all(b"AT\r\n").unwrap();
        let mut got = 0;
        while !buf[..got].ends_with(b"OK\r\n") {
            got += f.read(&mut buf[got..]).unwrap();
        }
    };
    for _ in 0..200 {
        once(&mut f);
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            once(&mut f);
            t.elapsed()
        })
        .collect()
}

fn describe(name: &str, times: &mut [Duration]) -> Duration {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let median = percentile(times, 0.5);
    println!(
        "{name:<19} median {:>7.1} µs  p99 {:>7.1} µs  mean {:>7.1} µs",
        median.as_secs_f64() * 1e6,
        percentile(times, 0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    );
    median
}

fn pyserial(path: &str) -> Option<Duration> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/bench/pyserial_roundtrip.py"
    );
    let t = Instant::now();
    let out = Process::new("python3")
        .args([script, path, &ROUND_TRIPS.to_string()])
        .output()
        .ok()?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        eprintln!(
            "pyserial baseline did not run ({}); install it with `pip install pyserial==3.5`",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("?")
        );
        return None;
    }
    Some(elapsed / ROUND_TRIPS as u32)
}

/// A realistic mix: echoes, info lines, finals, URCs and counted payloads.
fn corpus() -> Vec<u8> {
    let mut unit = Vec::new();
    unit.extend_from_slice(b"AT+GMR\r\r\nAT version:3.2.0.0(s-ec2dec2 - ESP32 - Jul 28 2023 07:05:28)\r\nSDK version:v5.0.2-376-g24b9d38a24-dirty\r\n\r\nOK\r\n");
    unit.extend_from_slice(b"\r\n+MQTTSUBRECV:0,\"dt/thing-0001/up\",64,");
    unit.extend_from_slice(&[b'x'; 64]);
    unit.extend_from_slice(b"\r\nWIFI GOT IP\r\n+CSQ: 20,99\r\n\r\nOK\r\n+SYSFLASH:256,");
    unit.extend_from_slice(&[0xA5; 256]);
    unit.extend_from_slice(b"\r\nOK\r\n\r\nOK\r\n\r\n>");
    let mut all = Vec::new();
    while all.len() < 16 << 20 {
        all.extend_from_slice(&unit);
    }
    all
}

fn throughput(name: &str, data: &[u8], mut feed: impl FnMut(&[u8])) {
    let t = Instant::now();
    for chunk in data.chunks(4096) {
        feed(chunk);
    }
    let s = t.elapsed().as_secs_f64();
    println!("{name:<34} {:>8.0} MB/s", data.len() as f64 / s / 1e6);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    println!("== AT round trips over a PTY (AT -> OK, echo off), {ROUND_TRIPS} each");
    let (mut sim, path) = start_sim();
    let (mut engine, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        engine.extend(roundtrips(&path, ROUND_TRIPS / BLOCKS));
        bare.extend(bare_roundtrips(&path, ROUND_TRIPS / BLOCKS));
    }
    let median = describe("atprov engine", &mut engine);
    let floor = describe("bare loop (floor)", &mut bare);
    let mean = engine.iter().sum::<Duration>() / engine.len() as u32;
    println!(
        "engine / floor (median): {:.2}",
        median.as_secs_f64() / floor.as_secs_f64()
    );
    if let Some(py) = pyserial(&path) {
        println!(
            "pyserial baseline   mean   {:>7.1} µs (whole script incl. start-up, per command)",
            py.as_secs_f64() * 1e6
        );
        println!(
            "ratio atprov/pyserial (mean): {:.2}",
            mean.as_secs_f64() / py.as_secs_f64()
        );
    }
    let _ = sim.kill();
    let _ = sim.wait();

    println!("== digester and session throughput (16 MiB mixed traffic, 4 KiB reads)");
    let data = corpus();
    let mut d = Digester::new();
    let mut events = Vec::new();
    throughput("digester (framing)", &data, |c| {
        d.feed(c, &mut events);
        events.clear();
    });
    let mut s = Session::new();
    let mut out = Vec::new();
    throughput("session (framing + classification)", &data, |c| {
        s.feed(c, &mut out);
        out.clear();
    });
}
