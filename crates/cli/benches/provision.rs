//! Benchmark (run with `cargo bench --bench provision`): a whole `provision` (identify, flash,
//! connect, smoke, cleanup) over a pseudo-terminal against the emulated ESP32 paced at 115,200
//! baud in both directions, with realistic device latencies (Wi-Fi join, SNTP, TLS, flash,
//! 2 ms per command). The emulator accounts for every moment it spends on the wire or in a
//! latency (overlaps counted once): no host could finish faster than that bound. atprov's own
//! overhead is the wall time above it. Prints figures; asserts nothing about speed.

#[path = "common/emulator.rs"]
mod emulator;

use std::time::{Duration, Instant};

use atprov_at::Engine;
use atprov_core::pki::generate::{self, KeyKind};
use atprov_core::port::{self, Selector, SerialOptions};
use atprov_core::profile::Profile;
use atprov_core::provision::job::{Job, JobSettings};
use atprov_core::provision::{self, Goal, Plan, Silent};

const RUNS: usize = 3;
const BAUD: u32 = 115_200;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ca = generate::ca("bench CA", 10).unwrap();
    let dev =
        generate::device(&ca.cert_pem, &ca.key_pem, "bench", 10, KeyKind::P256, None).unwrap();
    let w = |n: &str, t: &str| std::fs::write(dir.path().join(n), t).unwrap();
    w("ca.pem", &ca.cert_pem);
    w("dev.pem", &dev.cert_pem);
    w("dev.key", &dev.key_pem);
    w(
        "job.toml",
        &format!(
            "[credentials]\nca = \"{0}/ca.pem\"\ncert = \"{0}/dev.pem\"\nkey = \"{0}/dev.key\"\n\
             [wifi]\nssid = \"atprov-lab\"\npassword = \"correct horse battery\"\n\
             [mqtt]\nhost = \"broker.bench\"\n",
            dir.path().display()
        ),
    );
    let profile = Profile::load("esp32-at").unwrap();
    let args = JobSettings {
        job: Some(dir.path().join("job.toml")),
        ..JobSettings::default()
    };
    let job = Job::build(&args, &profile.defaults).unwrap();
    let creds = provision::check::credentials(&job, &profile).unwrap();

    println!("provision against the emulated ESP32 (esp32-at, 115200 baud, realistic latencies)");
    println!("bound: wire time + latencies as configured; slept: as the emulator's timers slept");
    println!("run  wall ms  bound ms  overhead %  slept ms  overhead vs slept %");
    let (path, control) = emulator::start("esp32-at", BAUD);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut worst: f64 = 0.0;
    let cpu_start = cpu_time();
    for run in 0..RUNS {
        let before = control.device_time();
        let slept_before = control.device_time_slept();
        let t = Instant::now();
        let report = rt.block_on(async {
            let options = SerialOptions {
                baud: BAUD,
                ..SerialOptions::default()
            };
            let port = port::open(&Selector::Path(path.clone().into()), &options)
                .await
                .unwrap();
            let config = profile.engine_config();
            let (engine, task) = Engine::start(port, config, None);
            let plan = Plan {
                job: &job,
                credentials: Some(&creds),
                goal: Goal::Provision,
                // Every run writes all three credentials, like a fresh unit.
                force: true,
                port: path.clone(),
                line: port::LineRate::Fixed("not measured here".into()),
            };
            let (report, failure) =
                provision::run(engine, profile.clone(), plan, &mut Silent).await;
            assert!(failure.is_none(), "{failure:?}");
            // The engine stops once its last handle is gone; wait so the port is free.
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            report
        });
        let wall = t.elapsed();
        let bound = control.device_time() - before;
        let slept = control.device_time_slept() - slept_before;
        let pct = |b: Duration| wall.saturating_sub(b).as_secs_f64() / b.as_secs_f64() * 100.0;
        worst = worst.max(pct(bound));
        assert_eq!(report.result, atprov_core::provision::Outcome::Pass);
        println!(
            "{run:>3}  {:>7.1}  {:>8.1}  {:>10.2}  {:>8.1}  {:>19.2}",
            ms(wall),
            ms(bound),
            pct(bound),
            ms(slept),
            pct(slept)
        );
    }
    let cpu = cpu_time() - cpu_start;
    println!("worst overhead: {worst:.2}% of the bound (target < 5%)");
    println!(
        "host CPU time (atprov and the emulator together): {:.1} ms per provision",
        ms(cpu) / RUNS as f64
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time of this process (user + system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct on success.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
