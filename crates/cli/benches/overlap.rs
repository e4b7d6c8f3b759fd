//! Benchmark (run with `cargo bench --bench overlap`): a whole Quectel provision whose network
//! comes up while the host works, against the strictly sequential flow (the network waited
//! for before anything is uploaded, as the reference's smoke sequence orders it), on the same
//! realistic emulator: a module that powers up with its radio off, registers 3 s after
//! `AT+CFUN=1`, activates PDP in 0.8 s, syncs NTP in 1 s, opens TLS in 1.5 s, at 115,200 baud.
//! The built-in `quectel` profile switches the radio on in init and polls registration only in
//! connect, after the upload; the sequential variant polls it in init. Each run starts from a
//! power-on. Prints figures and the overlapped run's stage timeline; asserts that units passed.

#[path = "common/emulator.rs"]
#[allow(dead_code)]
mod emulator;

use std::path::Path;
use std::time::Duration;

use atprov_at::{Command, Engine};
use atprov_core::port::{self, Selector, SerialOptions};
use atprov_core::profile::Profile;
use atprov_core::provision::job::{Job, JobSettings};
use atprov_core::provision::{self, Goal, Plan, Report, Silent};

const RUNS: usize = 3;

/// Restarts the module (a power-on: radio off again) and runs a provision; returns its report.
fn once(rt: &tokio::runtime::Runtime, path: &str, profile: &Profile, job: &Job) -> Report {
    let creds = provision::check::credentials(job, profile).unwrap();
    rt.block_on(async {
        let open = || async {
            port::open_line(&Selector::Path(path.into()), &SerialOptions::default())
                .await
                .unwrap()
        };
        let (port, _) = open().await;
        let (engine, task) = Engine::start(port, profile.engine_config(), None);
        let r = engine.run(Command::new("AT+CFUN=1,1")).await.unwrap();
        assert!(r.is_ok(), "{r:?}");
        drop(engine);
        let _ = task.await;
        let (port, line) = open().await;
        let (engine, task) = Engine::start(port, profile.engine_config(), None);
        let plan = Plan {
            job,
            credentials: Some(&creds),
            goal: Goal::Provision,
            force: true,
            port: path.to_string(),
            line,
        };
        let (report, failure) = provision::run(engine, profile.clone(), plan, &mut Silent).await;
        assert!(failure.is_none(), "{failure:?}");
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        report
    })
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/profiles/quectel.toml");
    let text = std::fs::read_to_string(&src).unwrap();
    // The sequential variant: registration polled right after the radio is on, before the
    // upload (the same step as connect's).
    let start = text.find("[[connect]]\nname = \"registration\"").unwrap();
    let end = start + text[start..].find("\n\n[[connect]]").unwrap();
    // (Init runs before the job's values are applied: the wait is written out.)
    let registration = text[start..end]
        .replacen("[[connect]]", "[[init]]", 1)
        .replace("{net.within}", "120s");
    let anchor = "hint = \"the radio could not be switched on (AT+CFUN=1)\"\n";
    let sequential = text.replacen(anchor, &format!("{anchor}\n{registration}\n"), 1);
    let sequential = sequential.replacen("name = \"quectel\"", "name = \"quectel-sequential\"", 1);
    let seq_path = dir.path().join("quectel-sequential.toml");
    std::fs::write(&seq_path, sequential).unwrap();
    let overlapped = Profile::load("quectel").unwrap();
    let sequential = Profile::load(seq_path.to_str().unwrap()).unwrap();

    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsa");
    // The RSA fixture's CA alone, and a 24 KB bundle of CAs (the fixture's first).
    let mut bundle = std::fs::read_to_string(fixtures.join("ca.pem")).unwrap();
    let mut n = 0;
    while bundle.len() < 24_000 {
        n += 1;
        let extra = atprov_core::pki::generate::ca(&format!("bench bundle CA {n}"), 10).unwrap();
        bundle.push_str(&extra.cert_pem);
    }
    let big = dir.path().join("ca-bundle.pem");
    std::fs::write(&big, &bundle).unwrap();

    let (path, _) = emulator::start_with("quectel", 115_200, &["radio-off"]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "Quectel provision, radio off at power-on, realistic network, 115,200 baud, median of {RUNS}"
    );
    let mut timeline = None;
    for ca in [fixtures.join("ca.pem"), big] {
        let job_text = format!(
            "[credentials]\nca = \"{}\"\ncert = \"{1}/dev.pem\"\nkey = \"{1}/dev.key\"\n\
             [mqtt]\nhost = \"abc-ats.iot.eu-west-1.amazonaws.com\"\n[smoke]\ntimeout = \"5s\"\n",
            ca.display(),
            fixtures.display()
        );
        let job_path = dir.path().join("job.toml");
        std::fs::write(&job_path, job_text).unwrap();
        let settings = JobSettings {
            job: Some(job_path),
            ..JobSettings::default()
        };
        let job = Job::build(&settings, &overlapped.defaults).unwrap();
        let (mut seq, mut ovl) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            seq.push(once(&rt, &path, &sequential, &job).ms);
            let r = once(&rt, &path, &overlapped, &job);
            ovl.push(r.ms);
            timeline = Some(r);
        }
        seq.sort();
        ovl.sort();
        let (s, o) = (seq[RUNS / 2], ovl[RUNS / 2]);
        let bytes = std::fs::metadata(&ca).unwrap().len() + 2839;
        println!("credentials of {bytes} bytes:");
        println!("  strictly sequential (network first)     {s:>6} ms");
        println!(
            "  overlapped (network during the upload)  {o:>6} ms   {:.2}x",
            o as f64 / s as f64
        );
    }
    println!("\nthe last overlapped run's stages (start, length):");
    for st in &timeline.unwrap().stages {
        let reg = st
            .steps
            .iter()
            .find(|x| x.name == "registration")
            .map(|x| format!("  (registration step {} ms)", x.ms))
            .unwrap_or_default();
        println!(
            "  {:<9} {:>6} ms  {:>6} ms{reg}",
            st.stage.name(),
            st.started_ms,
            st.ms
        );
    }
}
