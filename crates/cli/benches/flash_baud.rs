//! Benchmark (run with `cargo bench --bench flash_baud`): the flash stage (identify, then the
//! credentials written and read back) over a pseudo-terminal against emulators paced at their
//! UART rate, with and without `--flash-baud`.
//!
//! 1. ESP32 (ESP-AT 3.2, realistic latencies), an RSA bundle: at 115,200 baud; with
//!    `--flash-baud 921600`; and on a module and port that ran at 921,600 all along (the
//!    ideal the switch approaches). The switch up and back should cost at most 100 ms over
//!    that ideal.
//! 2. Quectel and Air780EP, whose 500 ms settle time makes a switch a loss for small bundles:
//!    `off`, `auto` and `921600` over CA files of growing size; `auto` must never be slower
//!    than `off`.
//!
//! Every figure is the median of several runs measured in this one run; prints figures,
//! asserts only that every unit passed.

#[path = "common/emulator.rs"]
mod emulator;

use std::path::Path;
use std::time::Duration;

use atprov_at::Engine;
use atprov_core::port::{self, Selector, SerialOptions};
use atprov_core::profile::Profile;
use atprov_core::provision::job::{Job, JobSettings};
use atprov_core::provision::{self, Goal, Plan, Silent, Stage};
use atprov_core::units::FlashBaud;

const RUNS: usize = 5;

/// The median flash stage (ms) over [`RUNS`] `flash` runs, and whether the rate was switched.
fn median_flash(
    rt: &tokio::runtime::Runtime,
    path: &str,
    host_baud: u32,
    profile: &Profile,
    job: &Job,
) -> (f64, bool) {
    let creds = provision::check::credentials(job, profile).unwrap();
    let mut times = Vec::new();
    let mut switched = false;
    for _ in 0..RUNS {
        let report = rt.block_on(async {
            let options = SerialOptions {
                baud: host_baud,
                ..SerialOptions::default()
            };
            let (port, line) = port::open_line(&Selector::Path(path.into()), &options)
                .await
                .unwrap();
            let (engine, task) = Engine::start(port, profile.engine_config(), None);
            let plan = Plan {
                job,
                credentials: Some(&creds),
                goal: Goal::Flash,
                // Every run writes every credential, like a fresh unit.
                force: true,
                port: path.to_string(),
                line,
            };
            let (report, failure) =
                provision::run(engine, profile.clone(), plan, &mut Silent).await;
            assert!(failure.is_none(), "{failure:?}");
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            report
        });
        let flash = report
            .stages
            .iter()
            .find(|s| s.stage == Stage::Flash)
            .unwrap();
        switched |= flash.steps.iter().any(|s| s.name == "line rate back");
        if let Some(w) = flash
            .steps
            .iter()
            .find(|s| s.result == atprov_core::provision::flow::StepResult::Warning)
        {
            println!("  (a run fell back: {:?})", w.detail);
        }
        times.push(flash.ms as f64);
    }
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], switched)
}

fn job(dir: &Path, ca: &Path, profile: &Profile, flash_baud: FlashBaud) -> Job {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    let text = format!(
        "[credentials]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n[mqtt]\nhost = \"broker.bench\"\n",
        ca.display(),
        fixtures.join("dev.pem").display(),
        fixtures.join("dev.key").display()
    );
    let file = dir.join("job.toml");
    std::fs::write(&file, text).unwrap();
    let settings = JobSettings {
        job: Some(file),
        flash_baud: Some(flash_baud),
        ..JobSettings::default()
    };
    Job::build(&settings, &profile.defaults).unwrap()
}

/// A CA file of about `bytes`: the RSA fixture's CA followed by other CA certificates (a
/// bundle, as some brokers need).
fn ca_file(dir: &Path, bytes: usize) -> std::path::PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    let mut text = std::fs::read_to_string(fixtures.join("ca.pem")).unwrap();
    let mut n = 0;
    while text.len() < bytes {
        n += 1;
        let extra = atprov_core::pki::generate::ca(&format!("bench bundle CA {n}"), 10).unwrap();
        text.push_str(&extra.cert_pem);
    }
    let path = dir.join(format!("ca-{bytes}.pem"));
    std::fs::write(&path, text).unwrap();
    path
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    let rsa_ca = fixtures.join("ca.pem");
    let bundle_bytes: usize = ["ca.pem", "dev.pem", "dev.key"]
        .iter()
        .map(|f| std::fs::metadata(fixtures.join(f)).unwrap().len() as usize)
        .sum();

    let measure = |path: &str, baud: u32, profile: &Profile, ca: &Path, rate: FlashBaud| {
        median_flash(
            &rt,
            path,
            baud,
            profile,
            &job(dir.path(), ca, profile, rate),
        )
    };
    println!(
        "== ESP32 (esp32-at, realistic), RSA bundle of {bundle_bytes} bytes; flash stage, median of {RUNS}"
    );
    let esp = Profile::load("esp32-at").unwrap();
    let (slow, _) = emulator::start("esp32-at", 115_200);
    let (at_115k, _) = measure(&slow, 115_200, &esp, &rsa_ca, FlashBaud::Off);
    let (switched, did) = measure(&slow, 115_200, &esp, &rsa_ca, FlashBaud::Rate(921_600));
    assert!(did, "the switch was not made");
    let (fast, _) = emulator::start("esp32-at", 921_600);
    let (ideal, _) = measure(&fast, 921_600, &esp, &rsa_ca, FlashBaud::Off);
    println!("{:<48} {:>8.0} ms  1.00", "115,200 baud", at_115k);
    println!(
        "{:<48} {:>8.0} ms  {:.2}",
        "--flash-baud 921600",
        switched,
        switched / at_115k
    );
    println!(
        "{:<48} {:>8.0} ms  {:.2}",
        "921,600 all along (module and port)",
        ideal,
        ideal / at_115k
    );
    println!(
        "switch up and back over the ideal: {:.0} ms (target ≤ 100 ms); --flash-baud / 115,200: {:.2} (target ≤ 0.4)",
        switched - ideal,
        switched / at_115k
    );

    for family in ["quectel", "air780ep"] {
        println!("\n== {family} (500 ms settle), CA bundle size vs flash stage, median of {RUNS}");
        println!(
            "{:>9}  {:>8}  {:>16}  {:>16}",
            "CA bytes", "off ms", "auto ms", "921600 ms"
        );
        let profile = Profile::load(family).unwrap();
        let (path, _) = emulator::start(family, 115_200);
        for size in [1_000, 8_000, 16_000, 24_000] {
            let ca = ca_file(dir.path(), size);
            let real = std::fs::metadata(&ca).unwrap().len();
            let (off, _) = measure(&path, 115_200, &profile, &ca, FlashBaud::Off);
            let (auto, auto_switched) = measure(&path, 115_200, &profile, &ca, FlashBaud::Auto);
            let (forced, _) = measure(&path, 115_200, &profile, &ca, FlashBaud::Rate(921_600));
            let said = if auto_switched { "switched" } else { "stayed" };
            println!(
                "{real:>9}  {off:>8.0}  {auto:>7.0} {said:>8}  {forced:>9.0} ({:.2})",
                forced / off
            );
        }
    }
}
