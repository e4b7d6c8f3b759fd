//! Credentials: the AtPKI vectors byte for byte, the Quectel checksum vectors through
//! `pki inspect --json`, every `pki check` failure in one line with exit code 10, generation,
//! and property tests on the codec.

use std::path::{Path, PathBuf};

use crate::common::atprov;
use atprov_core::pki::atpki::{self, ItemType};
use atprov_core::pki::check::{Target, check};
use proptest::prelude::*;

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn pem(name: &str) -> PathBuf {
    vectors().join("esp-at-pki/pem").join(name)
}

#[test]
fn every_atpki_vector_is_reproduced_and_decodes_back() {
    let dir = vectors().join("esp-at-pki");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let mut n = 0;
    for line in readme.lines().filter(|l| l.starts_with("| bin/")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let out = cells[0];
        let args: Vec<&str> = cells[1].trim_matches('`').split_whitespace().collect();
        let inputs: Vec<(ItemType, String, Vec<u8>)> = args
            .chunks(2)
            .map(|p| {
                (
                    ItemType::parse(p[0]).unwrap(),
                    p[1].to_string(),
                    std::fs::read(dir.join(p[1])).unwrap(),
                )
            })
            .collect();
        let expected = std::fs::read(dir.join(out)).unwrap();
        let ours = atpki::encode(&inputs).unwrap();
        assert_eq!(ours, expected, "{out}");
        let items = atpki::decode(&expected).unwrap();
        let back: Vec<Vec<u8>> = items.iter().map(|i| i.content.clone()).collect();
        let given: Vec<Vec<u8>> = inputs.iter().map(|i| i.2.clone()).collect();
        assert_eq!(back, given, "{out} decodes to its inputs");
        n += 1;
    }
    assert!(n >= 8, "found {n} vectors");
    // And through the command line.
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("two.bin");
    let (code, _, err) = atprov(&[
        "pki",
        "encode",
        "-o",
        out.to_str().unwrap(),
        "ca",
        pem("rsa_ca.crt.pem").to_str().unwrap(),
        "ca",
        pem("ec_ca.crt.pem").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(dir.join("bin/ca_two.bin")).unwrap()
    );
    let (code, _, err) = atprov(&[
        "pki",
        "decode",
        out.to_str().unwrap(),
        "-o",
        tmp.path().join("d").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(tmp.path().join("d/ca1.pem")).unwrap(),
        std::fs::read(pem("ec_ca.crt.pem")).unwrap()
    );
}

#[test]
fn every_qfupl_checksum_vector_is_reproduced_by_inspect() {
    let v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("cloud/quectel_qfupl_checksum.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let candidates: Vec<Vec<u8>> = vec![
        std::fs::read(vectors().join("cloud/AmazonRootCA1.pem")).unwrap(),
        b"A".to_vec(),
        b"AB".to_vec(),
        b"ABC".to_vec(),
        Vec::new(),
    ];
    for vector in v["vectors"].as_array().unwrap() {
        let sha = vector["sha256"].as_str().unwrap();
        let bytes = candidates
            .iter()
            .find(|c| atprov_core::pki::load::sha256_hex(c) == sha)
            .unwrap_or_else(|| panic!("no input for vector {}", vector["label"]));
        let f = tmp.path().join("input");
        std::fs::write(&f, bytes).unwrap();
        let (code, out, err) = atprov(&["pki", "inspect", "--json", f.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(got["size"], vector["size"], "{}", vector["label"]);
        assert_eq!(got["sha256"], vector["sha256"]);
        let ours = u32::from_str_radix(got["qfupl_checksum"].as_str().unwrap(), 16).unwrap();
        assert_eq!(
            u64::from(ours),
            vector["checksum_int"].as_u64().unwrap(),
            "{}",
            vector["label"]
        );
    }
}

fn cli_check(ca: &Path, cert: &Path, key: &Path) -> (i32, String) {
    cli_check_with(ca, cert, key, &[])
}

fn cli_check_with(ca: &Path, cert: &Path, key: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "pki",
        "check",
        "--ca",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (code, _, err) = atprov(&args);
    (code, err)
}

fn one_problem(ca: &Path, cert: &Path, key: &Path, needle: &str) {
    one_problem_with(ca, cert, key, &[], needle)
}

fn one_problem_with(ca: &Path, cert: &Path, key: &Path, extra: &[&str], needle: &str) {
    let (code, err) = cli_check_with(ca, cert, key, extra);
    assert_eq!(code, 10, "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one problem, one line: {err}");
    assert!(lines[0].contains(needle), "`{needle}` in: {err}");
}

#[test]
fn a_good_bundle_passes_and_each_fault_is_one_clear_line() {
    let (ca, cert, key) = (
        pem("rsa_ca.crt.pem"),
        pem("rsa_dev.crt.pem"),
        pem("rsa_dev.key.pkcs1.pem"),
    );
    let (code, err) = cli_check(&ca, &cert, &key);
    assert_eq!(code, 0, "{err}");
    assert_eq!(cli_check(&ca, &cert, &pem("rsa_dev.key.pkcs8.pem")).0, 0);
    assert_eq!(
        cli_check(
            &pem("ec_ca.crt.pem"),
            &pem("ec_dev.crt.pem"),
            &pem("ec_dev.key.sec1.pem")
        )
        .0,
        0
    );

    one_problem(
        &ca,
        &cert,
        &pem("ec_dev.key.pkcs8.pem"),
        "does not belong to the certificate",
    );
    // The server CA says nothing about the device certificate's issuer; a device CA does.
    assert_eq!(cli_check(&pem("ec_ca.crt.pem"), &cert, &key).0, 0);
    one_problem_with(
        &ca,
        &cert,
        &key,
        &["--device-ca", pem("ec_ca.crt.pem").to_str().unwrap()],
        "not issued by the device CA",
    );
    assert_eq!(
        cli_check_with(&ca, &cert, &key, &["--device-ca", ca.to_str().unwrap()]).0,
        0
    );
    // A device certificate given as the server CA is not a CA.
    one_problem(&cert, &cert, &key, "is not a CA");
    one_problem(
        &ca,
        &key,
        &key,
        "holds a private key where a certificate is expected",
    );
    one_problem(
        &ca,
        &cert,
        &cert,
        "holds a certificate where a private key is expected",
    );
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, b"").unwrap();
    one_problem(&ca, &cert, &empty, "empty.pem: the file is empty");
    let random = tmp.path().join("random.bin");
    std::fs::write(
        &random,
        (0..500u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    one_problem(&ca, &random, &key, "neither a PEM file");
    one_problem(
        &ca,
        &cert,
        &tmp.path().join("missing.pem"),
        "missing.pem: no such file",
    );
    let enc = tmp.path().join("enc.pem");
    std::fs::write(
        &enc,
        b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
    )
    .unwrap();
    one_problem(&ca, &cert, &enc, "encrypted");
}

#[test]
fn expiry_and_not_yet_valid_are_caught_with_a_clock_hint() {
    let (ca, cert, key) = (
        pem("rsa_ca.crt.pem"),
        pem("rsa_dev.crt.pem"),
        pem("rsa_dev.key.pkcs1.pem"),
    );
    let year_2040 = 2_208_988_800;
    let p = check(&ca, &cert, &key, None, None, year_2040)
        .unwrap_err()
        .0;
    assert!(
        p.iter()
            .any(|l| l.contains("the device certificate expired on 2036-11-19")),
        "{p:?}"
    );
    let year_2020 = 1_577_836_800;
    let p = check(&ca, &cert, &key, None, None, year_2020)
        .unwrap_err()
        .0;
    assert!(
        p.iter()
            .any(|l| l.contains("not valid before") && l.contains("clock")),
        "{p:?}"
    );
}

#[test]
fn module_limits_are_checked_for_a_profile() {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let p = check(
        &pem("ec_ca.crt.pem"),
        &pem("ec_dev.crt.pem"),
        &pem("ec_dev.key.sec1.pem"),
        None,
        Some(Target::Luat),
        now,
    )
    .unwrap_err()
    .0;
    assert!(p[0].contains("RSA keys only"), "{p:?}");
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("bundle.pem");
    let one = std::fs::read(pem("rsa_ca.crt.pem")).unwrap();
    std::fs::write(&big, one.repeat(7)).unwrap();
    let p = check(
        &big,
        &pem("rsa_dev.crt.pem"),
        &pem("rsa_dev.key.pkcs1.pem"),
        None,
        Some(Target::EspAtLegacy),
        now,
    )
    .unwrap_err()
    .0;
    assert!(
        p[0].contains("over the 8192 of a legacy ESP-AT partition"),
        "{p:?}"
    );
}

#[test]
fn generated_credentials_check_out_and_keys_are_private() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let (code, _, err) = atprov(&[
        "pki", "generate", "--ca", "--cn", "Line CA", "--days", "30", "-o", d,
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = atprov(&[
        "pki",
        "generate",
        "--ca-cert",
        &format!("{d}/ca.crt.pem"),
        "--ca-key",
        &format!("{d}/ca.key.pem"),
        "--cn",
        "thing-0001",
        "--days",
        "10",
        "-o",
        d,
    ]);
    assert_eq!(code, 0, "{err}");
    let p = |n: &str| tmp.path().join(n);
    let (code, err) = cli_check(
        &p("ca.crt.pem"),
        &p("thing-0001.crt.pem"),
        &p("thing-0001.key.pem"),
    );
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p("thing-0001.key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let (_, out, _) = atprov(&[
        "pki",
        "inspect",
        "--json",
        p("thing-0001.crt.pem").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["certificates"][0]["subject"], "CN=thing-0001");
    assert_eq!(v["certificates"][0]["key"]["algorithm"], "EC");
    let (code, _, err) = atprov(&[
        "pki", "generate", "--ca", "--key", "rsa2048", "--force", "-o", d,
    ]);
    assert_eq!(code, 0, "a CA is always P-256: {err}");
}

#[test]
fn the_debug_form_of_credentials_hides_the_key() {
    let c = atprov_core::pki::Credentials::new(
        b"ca".to_vec(),
        b"cert".to_vec(),
        b"SECRET-KEY".to_vec(),
    );
    let shown = format!("{c:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn decode_and_recognise_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        let mut data = data;
        if magic && data.len() >= 2 {
            data[0] = 0xF1;
            data[1] = 0xF1;
        }
        let _ = atpki::decode(&data);
        let _ = atprov_core::pki::load::recognise("x", data);
    }

    #[test]
    fn encode_then_decode_returns_the_inputs(
        items in proptest::collection::vec((0u8..3, proptest::collection::vec(any::<u8>(), 1..300)), 1..8)
    ) {
        let kinds = [ItemType::Ca, ItemType::Cert, ItemType::Key];
        let inputs: Vec<_> = items.iter().enumerate().map(|(i, (k, c))| (kinds[*k as usize], format!("f{i}"), c.clone())).collect();
        let bin = atpki::encode(&inputs).unwrap();
        let decoded = atpki::decode(&bin).unwrap();
        // Decoded items come grouped by type in order of first appearance.
        let mut order = Vec::new();
        for (k, _, _) in &inputs { if !order.contains(k) { order.push(*k); } }
        let expected: Vec<_> = order.iter().flat_map(|k| inputs.iter().filter(move |i| i.0 == *k).map(|i| (i.0, i.2.clone()))).collect();
        let got: Vec<_> = decoded.iter().map(|i| (i.kind, i.content.clone())).collect();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn a_partition_read_back_whole_decodes_and_broken_pem_is_explained_in_words() {
    let dir = tempfile::tempdir().unwrap();
    // What `esptool read_flash` gives for the 8 KiB partition holding the vector bin.
    let bin = std::fs::read(vectors().join("esp-at-pki/bin/ca_ec.bin")).unwrap();
    let mut image = bin.clone();
    image.resize(8192, 0xFF);
    let image_path = dir.path().join("partition.bin");
    std::fs::write(&image_path, &image).unwrap();
    let out = dir.path().join("items");
    let (code, _, err) = atprov(&[
        "pki",
        "decode",
        image_path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let decoded = std::fs::read(out.join("ca0.pem")).unwrap();
    assert_eq!(decoded, std::fs::read(pem("ec_ca.crt.pem")).unwrap());

    let cut = dir.path().join("cut.pem");
    let whole = std::fs::read_to_string(pem("ec_ca.crt.pem")).unwrap();
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let (code, _, err) = atprov(&["pki", "inspect", cut.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no `-----END CERTIFICATE-----` line"), "{err}");
    assert!(!err.contains('{') && !err.contains('['), "{err}");
}

#[test]
fn missing_files_bad_inputs_unsupported_options_and_unusable_credentials_have_their_own_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(d("notes.txt"), "not a PKI bin").unwrap();
    let out = d("out");
    let (ca, cert, rsa_key) = (
        pem("ec_ca.crt.pem").display().to_string(),
        pem("ec_dev.crt.pem").display().to_string(),
        pem("rsa_dev.key.pkcs8.pem").display().to_string(),
    );
    // An openssl-made CA whose key (PKCS#8) the generator takes.
    crate::common::openssl::aws_shaped(dir.path(), crate::common::openssl::Keys::P256);
    let (dev_ca, ca_key) = (d("dev-ca.pem"), d("dev-ca.key"));
    let cases: [(&[&str], i32); 5] = [
        (&["pki", "inspect", &d("missing.pem")], 16),
        (&["pki", "decode", &d("notes.txt"), "-o", &out], 2),
        (&["pki", "decode", &d("missing.bin"), "-o", &out], 16),
        (
            &[
                "pki",
                "generate",
                "--ca-cert",
                &dev_ca,
                "--ca-key",
                &ca_key,
                "--cn",
                "thing-1",
                "--key",
                "rsa2048",
                "-o",
                &out,
            ],
            2,
        ),
        (
            &[
                "pki", "check", "--ca", &ca, "--cert", &cert, "--key", &rsa_key,
            ],
            10,
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = atprov(args);
        assert_eq!(code, want, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A job whose certificate file is missing: 16, before the module is touched.
    let job = d("job.toml");
    std::fs::write(
        &job,
        format!(
            "[credentials]\nca = \"{}\"\ncert = \"missing.pem\"\nkey = \"{}\"\n[mqtt]\nhost = \"broker.test\"\n",
            pem("ec_ca.crt.pem").display(),
            pem("ec_dev.key.pkcs8.pem").display()
        ),
    )
    .unwrap();
    let (code, _, err) = atprov(&[
        "flash",
        "--profile",
        "esp32-at",
        "--port",
        "/dev/atprov-none",
        "--job",
        &job,
    ]);
    assert_eq!(code, 16, "{err}");
    assert!(
        err.contains("missing.pem: no such file (the job's credentials.cert"),
        "{err}"
    );
}
