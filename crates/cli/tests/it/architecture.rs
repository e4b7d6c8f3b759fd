//! The house rules of ARCHITECTURE.md, checked where a check is cheap: which crate may depend
//! on which (from `cargo metadata`, so a new edge cannot slip in), and that no module of a
//! library crate reaches into a crate above it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every workspace crate and the workspace crates it depends on (normal dependencies).
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeSet<String> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

#[test]
fn the_crates_depend_on_each_other_only_downwards() {
    let e = edges();
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        e.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["atprov", "atprov-at", "atprov-core", "atprov-sim"])
    );
    // The AT layer knows nothing of the product; the emulators nothing of the host's code.
    assert_eq!(e["atprov-at"], set(&[]));
    assert_eq!(
        e["atprov-sim"],
        set(&[]),
        "the emulators must judge independently"
    );
    assert_eq!(e["atprov-core"], set(&["atprov-at"]));
    assert_eq!(
        e["atprov"],
        set(&["atprov-at", "atprov-core", "atprov-sim"])
    );
}

/// The `.rs` files under `dir`.
fn sources(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

#[test]
fn library_crates_have_no_terminal_no_exit_and_no_clap() {
    for krate in ["at", "core", "sim"] {
        for file in sources(&workspace().join("crates").join(krate).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for banned in [
                "clap::",
                "process::exit",
                "indicatif",
                "eprintln!",
                "println!",
            ] {
                assert!(
                    !text.contains(banned),
                    "{} uses `{banned}`: the library crates leave output and exits to the application",
                    file.display()
                );
            }
        }
    }
}

#[test]
fn the_emulators_name_nothing_of_the_host() {
    for file in sources(&workspace().join("crates/sim/src")) {
        let text = std::fs::read_to_string(&file).unwrap();
        for host in ["atprov_core", "atprov_at"] {
            assert!(!text.contains(host), "{} names {host}", file.display());
        }
    }
}

/// atprov-core's modules from the bottom up, as ARCHITECTURE.md orders them: a module may use
/// modules of its own layer or below, never above.
const CORE_LAYERS: &[&[&str]] = &[
    &["error", "units", "files"],
    &["port", "pki", "cloud", "profile", "transcript"],
    &["link", "store", "preflight"],
    &["provision"],
    &["factory"],
    &["exit"],
];

fn layer_of(module: &str) -> usize {
    CORE_LAYERS
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("core module `{module}` is in no layer of ARCHITECTURE.md"))
}

#[test]
fn no_module_of_core_uses_a_module_above_it() {
    let src = workspace().join("crates/core/src");
    let mut checked = 0;
    for file in sources(&src) {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" {
            continue;
        }
        let own = layer_of(&top);
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            let used: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if used.is_empty() || used == "at" {
                continue;
            }
            assert!(
                layer_of(&used) <= own,
                "{} (layer {own}) uses crate::{used} (layer {})",
                rel.display(),
                layer_of(&used)
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} uses seen");
}
