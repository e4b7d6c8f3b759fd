//! Every real-device transcript in `../shared/transcripts/` replays through the engine with the
//! classification of `EXPECT.md`: finals, prompts, info lines, URCs in the window, echo, and the
//! unsolicited lines before the first command and after each final. The answer key is parsed
//! from EXPECT.md itself, so a new transcript and its table are picked up without code changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atprov_core::transcript::Transcript;
use atprov_core::transcript::replay::{Row, replay};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/transcripts")
}

#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    command: String,
    echo: bool,
    final_line: Option<String>,
    prompt: Option<String>,
    info: Vec<String>,
    urcs: Vec<String>,
    after: Vec<String>,
}

/// Backtick-quoted items of a table cell; `-` is none.
fn items(cell: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = cell;
    while let Some(start) = rest.find('`') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('`') else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

struct Section {
    file: String,
    before: Vec<String>,
    rows: Vec<Expected>,
}

fn parse_expect(text: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    for block in text.split("\n### ").skip(1) {
        let file = block.lines().next().unwrap().trim().to_string();
        let mut before = Vec::new();
        let mut rows = Vec::new();
        for line in block.lines() {
            if let Some(rest) = line.strip_prefix("- before first command (unsolicited):") {
                before = items(rest);
            }
            if !line.starts_with("| ") || line.starts_with("| #") || line.starts_with("|---") {
                continue;
            }
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 7, "EXPECT.md row in {file}: {line}");
            let command = items(cells[1]).concat();
            let command = command
                .strip_prefix("(data after prompt) ")
                .unwrap_or(&command)
                .to_string();
            let mut e = Expected {
                command,
                echo: cells[2] == "yes",
                ..Default::default()
            };
            let fin = items(cells[3]).concat();
            match fin.strip_prefix("prompt ") {
                Some(p) => e.prompt = Some(p.trim_matches('"').to_string()),
                None => e.final_line = Some(fin),
            }
            for i in items(cells[4]) {
                if let Some(p) = i.strip_suffix(" (data prompt; file bytes follow, not in log)") {
                    e.prompt = Some(p.to_string());
                } else {
                    e.info.push(i);
                }
            }
            e.urcs = items(cells[5]);
            e.after = items(cells[6]);
            rows.push(e);
        }
        sections.push(Section { file, before, rows });
    }
    sections
}

fn actual(rows: Vec<Row>) -> (Vec<String>, Vec<Expected>) {
    let mut before = Vec::new();
    let mut out: Vec<Expected> = Vec::new();
    for r in rows {
        match r {
            Row::Command {
                command,
                echo,
                final_line,
                prompt,
                info,
                urcs,
                timeout,
            } => {
                assert!(!timeout, "{command} timed out");
                out.push(Expected {
                    command,
                    echo,
                    final_line,
                    prompt,
                    info,
                    urcs,
                    after: Vec::new(),
                });
            }
            Row::Unsolicited(l) => match out.last_mut() {
                Some(last) => last.after.push(l),
                None => before.push(l),
            },
        }
    }
    (before, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_matches_the_answer_key() {
    let dir = shared();
    let expect =
        std::fs::read_to_string(dir.join("EXPECT.md")).expect("shared/transcripts/EXPECT.md");
    let sections = parse_expect(&expect);
    assert!(
        sections.len() >= 10,
        "EXPECT.md has {} sections",
        sections.len()
    );
    let mut files_on_disk = Vec::new();
    for family in std::fs::read_dir(&dir).unwrap().flatten() {
        if family.path().is_dir() {
            for f in std::fs::read_dir(family.path()).unwrap().flatten() {
                let name = format!(
                    "{}/{}",
                    family.file_name().to_string_lossy(),
                    f.file_name().to_string_lossy()
                );
                files_on_disk.push(name);
            }
        }
    }
    for f in &files_on_disk {
        assert!(
            sections.iter().any(|s| &s.file == f),
            "{f} has no table in EXPECT.md"
        );
    }
    for s in sections {
        let t = Transcript::load(&dir.join(&s.file)).unwrap();
        let rows = replay(&t, Duration::from_secs(2)).await.unwrap();
        let (before, got) = actual(rows);
        assert_eq!(
            before, s.before,
            "{}: lines before the first command",
            s.file
        );
        assert_eq!(got.len(), s.rows.len(), "{}: number of commands", s.file);
        for (i, (g, e)) in got.iter().zip(&s.rows).enumerate() {
            // atprov never shows a secret parameter (a password the capture has in clear).
            let mut e = e.clone();
            if let Some(shown) = atprov_at::redact::command_line(&e.command) {
                e.command = shown;
            }
            let mut scrubber = atprov_at::redact::Scrubber::new();
            for line in e.info.iter_mut().chain(e.urcs.iter_mut()) {
                *line = scrubber.scrub(line);
            }
            assert_eq!(g, &e, "{} command {}", s.file, i + 1);
        }
    }
}
