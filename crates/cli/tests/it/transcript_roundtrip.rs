//! A session written with `--transcript` is a valid transcript that replays to the same
//! classification, and secrets never reach it.

use std::time::Duration;

use crate::common::atprov;
use atprov_at::{Command, Engine, EngineConfig, TraceEvent};
use atprov_core::transcript::replay::{Row, replay};
use atprov_core::transcript::{Transcript, TranscriptWriter};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_written_transcript_replays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.txt");
    let p = path.to_str().unwrap().to_string();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        atprov(&[
            "send",
            "--port",
            "sim:esp32-at",
            "--transcript",
            &p,
            r#"AT+SIMFAULT="urc","WIFI GOT IP""#,
            "AT+GMR",
            "AT+NOPE",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 7, "{err}");
    let t = Transcript::load(&path).unwrap();
    let rows = replay(&t, Duration::from_secs(2)).await.unwrap();
    let commands: Vec<_> = rows
        .iter()
        .filter_map(|r| match r {
            Row::Command {
                command,
                final_line,
                info,
                echo,
                ..
            } => Some((command.clone(), final_line.clone(), info.len(), *echo)),
            _ => None,
        })
        .collect();
    assert_eq!(
        commands,
        vec![
            (
                r#"AT+SIMFAULT="urc","WIFI GOT IP""#.to_string(),
                Some("OK".to_string()),
                0,
                true
            ),
            ("AT+GMR".to_string(), Some("OK".to_string()), 4, true),
            ("AT+NOPE".to_string(), Some("ERROR".to_string()), 0, true),
        ]
    );
    assert!(rows.contains(&Row::Unsolicited("WIFI GOT IP".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_in_transcripts() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let port = Box::new(atprov_sim::open_in_process("esp32-at", &Default::default()).unwrap());
    let (engine, task) = Engine::start(port, EngineConfig::default(), Some(tx));
    let key = b"-----BEGIN PRIVATE KEY-----\nSECRETKEYBYTES\n-----END PRIVATE KEY-----\n".to_vec();
    let write = Command::new(format!(
        r#"AT+SYSMFG=2,"mqtt_key","mqtt_key",8,{}"#,
        key.len()
    ))
    .payload(key.clone())
    .secret_payload();
    assert!(engine.run(write).await.unwrap().is_ok());
    let read = Command::new(r#"AT+SYSMFG=1,"mqtt_key","mqtt_key""#).secret_response();
    let r = engine.run(read).await.unwrap();
    assert_eq!(r.payloads[0].data, key, "the caller still gets the bytes");
    let wifi = Command::new(r#"AT+CWMODE?"#).shown_as("AT+CWMODE? (as shown)");
    engine.run(wifi).await.unwrap();
    drop(engine);
    task.await.unwrap();
    let mut out = Vec::new();
    {
        let mut w = TranscriptWriter::new(&mut out, &[]).unwrap();
        while let Ok(ev) = rx.try_recv() {
            if let TraceEvent::Tx { text, .. } | TraceEvent::Rx { text, .. } = &ev {
                assert!(
                    !text.contains("SECRETKEYBYTES")
                        || matches!(ev, TraceEvent::Rx { secret: true, .. })
                );
            }
            w.write(&ev).unwrap();
        }
    }
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("SECRETKEYBYTES"), "{text}");
    assert!(
        text.contains(&format!(">> <{} bytes, secret, not shown>", key.len())),
        "{text}"
    );
    assert!(text.contains("secret, not shown>"), "{text}");
    assert!(text.contains(">> AT+CWMODE? (as shown)"), "{text}");
}

/// A transcript written by `atprov provision --transcript` replays as recorded: every host
/// line is sent again exactly (payloads after their prompts, secret ones by length), no
/// command that was answered in the recording times out in the replay, and the rows follow
/// the recording's commands one for one.
pub(crate) fn replays_as_recorded(path: &std::path::Path) {
    let t = Transcript::load(path).unwrap();
    let recorded: Vec<String> = t
        .entries
        .iter()
        .filter_map(|e| match e {
            atprov_core::transcript::Entry::Host { line, .. } => Some(line.clone()),
            _ => None,
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let replayed = rt
        .block_on(atprov_core::transcript::replay::replay_report(
            &t,
            Duration::from_secs(30),
        ))
        .unwrap();
    assert!(
        replayed.differed.is_empty(),
        "{}: {:?}",
        path.display(),
        replayed.differed
    );
    let mut rows = replayed.rows.iter().filter_map(|r| match r {
        Row::Command {
            command, payload, ..
        } => Some((command, payload)),
        _ => None,
    });
    let mut commands = 0;
    for line in &recorded {
        if line.starts_with('<') || !line.starts_with("AT") && !line.starts_with("at") {
            // A payload (shown with its command's row) or the engine's own filler.
            continue;
        }
        let (command, _) = rows
            .next()
            .unwrap_or_else(|| panic!("{}: no row for `{line}`", path.display()));
        assert_eq!(command, line, "{}", path.display());
        commands += 1;
    }
    assert!(commands >= 10, "{}: {commands} commands", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_in_a_written_transcript_replays_with_its_sentinel_marked() {
    // A command the module swallows (no answer): the engine times out, then resynchronises
    // with its own `AT` before the next command. The transcript shows it; the replay sends
    // it again and marks it as the engine's.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.txt");
    let p = path.to_str().unwrap().to_string();
    let (code, _, err) = tokio::task::spawn_blocking(move || {
        atprov(&[
            "send",
            "--port",
            "sim:esp32-at",
            "--keep-going",
            "--timeout",
            "300ms",
            "--transcript",
            &p,
            r#"AT+SIMFAULT="silent",1"#,
            "AT+GMR",
            "AT+CWMODE?",
        ])
    })
    .await
    .unwrap();
    assert_eq!(code, 6, "{err}");
    let t = Transcript::load(&path).unwrap();
    let replayed = atprov_core::transcript::replay::replay_report(&t, Duration::from_secs(2))
        .await
        .unwrap();
    let rows: Vec<(String, bool, bool)> = replayed
        .rows
        .iter()
        .filter_map(|r| match r {
            Row::Command {
                command,
                sentinel,
                timeout,
                ..
            } => Some((command.clone(), *sentinel, *timeout)),
            _ => None,
        })
        .collect();
    assert!(
        rows.contains(&("AT".to_string(), true, false)),
        "the sentinel is replayed and marked: {rows:?}"
    );
    assert!(
        rows.contains(&("AT+GMR".to_string(), false, true)),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("AT+CWMODE?".to_string(), false, false)),
        "{rows:?}"
    );
    assert!(replayed.differed.is_empty(), "{:?}", replayed.differed);
}
