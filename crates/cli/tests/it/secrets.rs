//! Secrets stay inside: no Wi-Fi password, device secret or private-key body in any file a
//! command writes (transcripts, JSON, logs), whichever command wrote it; secret files are
//! written through fresh private temporary files, never through a planted symlink, and a key
//! is never replaced silently.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{SimProcess, atprov};

const WIFI_PASSWORD: &str = "correct horse battery";

/// Lines of a PEM private key's body (what must never be shown).
fn key_body(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .map(str::to_string)
        .collect()
}

/// Every file under `dir` except `inputs`, with its text.
fn written_files(dir: &Path, inputs: &[&str]) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if inputs.contains(&name.as_str()) {
            continue;
        }
        if p.is_dir() {
            out.extend(written_files(&p, inputs));
        } else {
            out.push((
                p.clone(),
                String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
            ));
        }
    }
    out
}

fn assert_no_secret(files: &[(PathBuf, String)], secrets: &[String]) {
    for (path, text) in files {
        for s in secrets {
            assert!(
                !text.contains(s.as_str()),
                "{} shows a secret ({}...):\n{text}",
                path.display(),
                &s[..8.min(s.len())]
            );
        }
    }
}

#[test]
fn send_console_and_provision_output_show_no_password_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crate::common::write_credentials(d);
    let job = d.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"ca.pem\"\ncert = \"dev.pem\"\nkey = \"dev.key\"\n\
             [wifi]\nssid = \"atprov-lab\"\npassword = \"{WIFI_PASSWORD}\"\n\
             [mqtt]\nhost = \"broker.test\"\n"
        ),
    )
    .unwrap();
    let out = d.join("out");
    std::fs::create_dir(&out).unwrap();
    let o = |n: &str| out.join(n).display().to_string();
    let sim = SimProcess::start("esp32-at", &[]);

    let (code, json, err) = atprov(&[
        "provision",
        "--port",
        &sim.path,
        "--job",
        job.to_str().unwrap(),
        "--json",
        "--transcript",
        &o("provision.txt"),
        "--log-file",
        &o("provision.log"),
        "-vv",
    ]);
    assert_eq!(code, 0, "{err}");
    // The log carries the traffic (so the secret check below means something).
    let log = std::fs::read_to_string(out.join("provision.log")).unwrap();
    assert!(log.contains(">> AT+CWJAP=\"atprov-lab\",\"***\""), "{log}");
    assert!(err.contains(">> AT+CWJAP="), "{err}");
    std::fs::write(out.join("provision.json"), json).unwrap();
    std::fs::write(out.join("provision.stderr"), err).unwrap();

    // The password typed by hand, and the key read back from the module.
    let join = format!(r#"AT+CWJAP="atprov-lab","{WIFI_PASSWORD}""#);
    let read_key = r#"AT+SYSMFG=1,"mqtt_key","mqtt_key""#;
    for (name, json) in [("send", false), ("send-json", true)] {
        let mut args = vec!["send", "--port", &sim.path];
        let t = o(&format!("{name}.txt"));
        args.extend(["--transcript", &t]);
        if json {
            args.push("--json");
        }
        args.extend([join.as_str(), read_key]);
        let (code, stdout, err) = atprov(&args);
        assert_eq!(code, 0, "{err}");
        assert!(
            stdout.contains("-----BEGIN"),
            "the key was read back: {stdout}"
        );
        std::fs::write(out.join(format!("{name}.stdout")), stdout).unwrap();
        std::fs::write(out.join(format!("{name}.stderr")), err).unwrap();
    }
    let mut console = Command::new(env!("CARGO_BIN_EXE_atprov"))
        .args([
            "console",
            "--port",
            &sim.path,
            "--transcript",
            &o("console.txt"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(console.stdin.as_mut().unwrap(), "{join}\n{read_key}\n~.").unwrap();
    let c = console.wait_with_output().unwrap();
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stderr));
    let shown = String::from_utf8_lossy(&c.stdout);
    assert!(shown.contains("-----BEGIN PRIVATE KEY-----"), "{shown}");
    std::fs::write(out.join("console.stdout"), &c.stdout).unwrap();

    let files = written_files(&out, &[]);
    assert!(files.len() >= 10, "{files:?}");
    let mut secrets = key_body(&d.join("dev.key"));
    secrets.push(WIFI_PASSWORD.to_string());
    assert_no_secret(&files, &secrets);
    for t in ["provision.txt", "send.txt", "console.txt"] {
        let mode = std::fs::metadata(out.join(t)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{t}");
    }
}

#[test]
fn a_ca_key_is_never_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = atprov(&["pki", "generate", "--ca", "-o", d]);
    assert_eq!(code, 0, "{err}");
    let key = dir.path().join("ca.key.pem");
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = atprov(&["pki", "generate", "--ca", "-o", d]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("ca.key.pem: already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
    let (code, _, err) = atprov(&["pki", "generate", "--ca", "--force", "-o", d]);
    assert_eq!(code, 0, "{err}");
    assert_ne!(std::fs::read(&key).unwrap(), before);
}

/// Plants a symlink to a victim file at `path`; returns the victim.
fn plant(path: &Path) -> PathBuf {
    let victim = path.with_file_name(format!(
        "victim-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, path).unwrap();
    victim
}

#[test]
fn planted_symlinks_are_never_followed_and_secret_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = |p: &Path| p.display().to_string();

    // Where atprov used to stage writes (`NAME.tmp`), and the final names.
    let ca_dir = d.join("ca");
    std::fs::create_dir(&ca_dir).unwrap();
    let mut victims = vec![
        plant(&ca_dir.join("ca.key.tmp")),
        plant(&ca_dir.join("ca.crt.tmp")),
    ];
    let (code, _, err) = atprov(&["pki", "generate", "--ca", "-o", &s(&ca_dir)]);
    assert_eq!(code, 0, "{err}");

    // A device key over a planted link: refused without --force, replaced (not followed)
    // with it.
    let dev_key = ca_dir.join("thing.key.pem");
    victims.push(plant(&dev_key));
    let device = |force: bool| {
        let mut a = vec![
            "pki".to_string(),
            "generate".into(),
            "--ca-cert".into(),
            s(&ca_dir.join("ca.crt.pem")),
            "--ca-key".into(),
            s(&ca_dir.join("ca.key.pem")),
            "--cn".into(),
            "thing".into(),
            "-o".into(),
            s(&ca_dir),
        ];
        if force {
            a.push("--force".into());
        }
        atprov(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, _, err) = device(false);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = device(true);
    assert_eq!(code, 0, "{err}");
    assert!(!dev_key.symlink_metadata().unwrap().file_type().is_symlink());

    // Decoding a bin that holds a key, and encoding one.
    let bin = d.join("key.bin");
    victims.push(plant(&d.join("key.tmp")));
    let (code, _, err) = atprov(&[
        "pki",
        "encode",
        "-o",
        &s(&bin),
        "key",
        &s(&ca_dir.join("thing.key.pem")),
    ]);
    assert_eq!(code, 0, "{err}");
    let out = d.join("decoded");
    std::fs::create_dir(&out).unwrap();
    victims.push(plant(&out.join("key0.pem")));
    victims.push(plant(&out.join("key0.tmp")));
    let (code, _, err) = atprov(&["pki", "decode", &s(&bin), "-o", &s(&out), "--force"]);
    assert_eq!(code, 0, "{err}");

    // A transcript.
    let t = d.join("session.txt");
    victims.push(plant(&t));
    let (code, _, err) = atprov(&[
        "send",
        "--port",
        "sim:esp32-at",
        "--transcript",
        &s(&t),
        "AT",
    ]);
    assert_eq!(code, 0, "{err}");

    // The demo's kept files: refused over a planted link, never written through it.
    let keep = d.join("demo");
    std::fs::create_dir(&keep).unwrap();
    victims.push(plant(&keep.join("device.key")));
    let (code, _, err) = atprov(&["demo", "--keep", &s(&keep)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("device.key: already exists"), "{err}");

    for v in &victims {
        assert_eq!(
            std::fs::read_to_string(v).unwrap(),
            "untouched",
            "{} was written through",
            v.display()
        );
    }
    for secret in [
        ca_dir.join("ca.key.pem"),
        dev_key,
        bin,
        out.join("key0.pem"),
        t,
    ] {
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", secret.display());
    }
}
