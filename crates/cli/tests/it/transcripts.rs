//! Every real-device transcript, in `../shared/transcripts/` and in the project's own corpus
//! `tests/transcripts/` (each with its source URL), replays through the engine with the
//! classification of its answer key (`EXPECT.md` beside it): finals, prompts, info lines, URCs
//! in the window, echo, and the unsolicited lines before the first command and after each
//! final. The keys are parsed from the markdown itself, so a new transcript and its table are
//! picked up without code changes. Keys and captures were written from the modules' output and
//! the vendors' manuals, never from atprov's output.

use std::path::{Path, PathBuf};
use std::time::Duration;

use atprov_core::transcript::Transcript;
use atprov_core::transcript::replay::{Row, replay};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/transcripts")
}

fn own() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/transcripts")
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
            // The command is the first quoted item; a key may add the data sent after a prompt
            // as a second one (`AT+X` (data after prompt: `{}`)).
            let command = items(cells[1]).into_iter().next().unwrap_or_default();
            let command = command
                .strip_prefix("(data after prompt) ")
                .unwrap_or(&command)
                .to_string();
            let mut e = Expected {
                command,
                echo: cells[2] == "yes",
                ..Default::default()
            };
            // `none`: no final in the log (the engine times out, or the module restarted).
            let fin = items(cells[3]).concat();
            match fin.strip_prefix("prompt ") {
                Some(p) => e.prompt = Some(p.trim_matches('"').to_string()),
                None if fin.is_empty() => {}
                None => e.final_line = Some(fin),
            }
            for (n, i) in items(cells[4]).into_iter().enumerate() {
                if let Some(p) = i.strip_suffix(" (data prompt; file bytes follow, not in log)") {
                    e.prompt = Some(p.to_string());
                } else if n == 0 && matches!(i.trim_end(), ">" | "@") {
                    // A raw prompt, listed first among the command's lines.
                    e.prompt = Some(i.trim_end().to_string());
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
                ..
            } => {
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

/// Every transcript file of a corpus directory (`family/NNN-*.txt`) has a table in its key.
fn check_corpus(dir: &Path, min_sections: usize) -> Vec<(PathBuf, Section)> {
    let expect = std::fs::read_to_string(dir.join("EXPECT.md"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join("EXPECT.md").display()));
    let sections = parse_expect(&expect);
    assert!(
        sections.len() >= min_sections,
        "{}: EXPECT.md has {} sections",
        dir.display(),
        sections.len()
    );
    let mut files_on_disk = Vec::new();
    for family in std::fs::read_dir(dir).unwrap().flatten() {
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
            "{}: {f} has no table in EXPECT.md",
            dir.display()
        );
    }
    sections
        .into_iter()
        .map(|s| (dir.to_path_buf(), s))
        .collect()
}

/// Lines compared as a multiset: for a command without a final (a reboot, a poll nobody
/// answered) the key may list a line in the window or after it, which is the same thing.
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transcript_matches_the_answer_key() {
    let mut all = check_corpus(&shared(), 10);
    all.extend(check_corpus(&own(), 40));
    let mut failures = Vec::new();
    let total = all.len();
    for (dir, s) in all {
        let t = Transcript::load(&dir.join(&s.file)).unwrap();
        let rows = replay(&t, Duration::from_secs(5)).await.unwrap();
        let (before, got) = actual(rows);
        if before != s.before {
            failures.push(format!(
                "{}: lines before the first command: {before:?}, key {:?}",
                s.file, s.before
            ));
        }
        if got.len() != s.rows.len() {
            failures.push(format!(
                "{}: {} commands replayed, the key has {}",
                s.file,
                got.len(),
                s.rows.len()
            ));
            continue;
        }
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
            let mut g = g.clone();
            // Trailing spaces carry no meaning in AT responses (a key may keep a capture's).
            for l in g
                .info
                .iter_mut()
                .chain(g.urcs.iter_mut())
                .chain(g.after.iter_mut())
                .chain(e.info.iter_mut())
                .chain(e.urcs.iter_mut())
                .chain(e.after.iter_mut())
                .chain(g.final_line.iter_mut())
                .chain(e.final_line.iter_mut())
            {
                *l = l.trim_end().to_string();
            }
            if e.final_line.is_none() && g.final_line.is_none() {
                let mut a = std::mem::take(&mut g.urcs);
                a.append(&mut g.after);
                g.after = sorted(a);
                let mut b = std::mem::take(&mut e.urcs);
                b.append(&mut e.after);
                e.after = sorted(b);
            }
            if g != e {
                failures.push(format!(
                    "{} command {}:\n  got {g:?}\n  key {e:?}",
                    s.file,
                    i + 1
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} transcripts differ from their keys:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn replaying_a_reboot_capture_gives_one_record_per_command() {
    // BG96: AT+CFUN=1,1, POWERED DOWN, ten polls nobody answers, RDY, then answers again.
    let file = own().join("quectel/101-bg96-cfun-reset-powered-down-rdy-poll.txt");
    let text = std::fs::read_to_string(&file).unwrap();
    let commands = text.lines().filter(|l| l.starts_with(">> ")).count();
    let (code, out, err) = crate::common::atprov(&["replay", "--json", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v.get("command").is_some())
        .collect();
    assert_eq!(rows.len(), commands, "{out}");
    let unanswered = rows.iter().filter(|r| r["timeout"] == true).count();
    assert!(
        unanswered >= 9,
        "the polls during the restart time out: {out}"
    );
}
