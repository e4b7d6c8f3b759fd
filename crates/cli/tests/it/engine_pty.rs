//! The engine over a real serial path: a pseudo-terminal served by `atprov sim esp32-at --pty`
//! in its own process, opened exclusively like a USB-UART adapter.

use std::time::Duration;

use crate::common::SimProcess;
use atprov_at::{Command, Engine, EngineConfig, Status};
use atprov_core::port::{self, Selector, SerialOptions};

async fn engine(sim: &SimProcess) -> Engine {
    let port = port::open(
        &Selector::Path(sim.path.clone().into()),
        &SerialOptions::default(),
    )
    .await
    .expect("open the emulator's PTY");
    let (engine, _task) = Engine::start(port, EngineConfig::default(), None);
    let r = engine.send("ATE0").await.unwrap();
    assert!(r.is_ok(), "{}", r.summary());
    engine
}

async fn fault(engine: &Engine, spec: &str) {
    let r = engine.send(&format!("AT+SIMFAULT={spec}")).await.unwrap();
    assert!(r.is_ok(), "{}", r.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_urc_in_the_middle_of_a_response_is_a_urc() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    let mut urcs = e.subscribe();
    fault(&e, r#""urc_mid","+MQTTDISCONNECTED:0""#).await;
    let r = e.send("AT+GMR").await.unwrap();
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.info.len(), 4, "{:?}", r.info);
    assert!(r.info[0].starts_with("AT version:3.2.0.0"));
    assert_eq!(r.urcs.len(), 1);
    assert_eq!(r.urcs[0].line, "+MQTTDISCONNECTED:0");
    let delivered = urcs.try_recv().expect("the URC reached the subscriber");
    assert_eq!(delivered.line, "+MQTTDISCONNECTED:0");
    assert_eq!(delivered.during.as_deref(), Some("AT+GMR"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_urc_between_ok_and_the_prompt_does_not_derail_the_write() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    fault(&e, r#""urc_prompt","+MQTTSUBRECV:0,\"t\",3,abc""#).await;
    let cmd = Command::new(r#"AT+SYSMFG=2,"mqtt_ca","mqtt_ca",8,5"#).payload(b"hello".to_vec());
    let r = e.run(cmd).await.unwrap();
    assert_eq!(r.status, Status::Ok, "{}", r.summary());
    assert_eq!(r.prompt.as_deref(), Some(">"));
    assert_eq!(r.urcs.len(), 1);
    assert_eq!(r.urcs[0].payload.as_deref(), Some(&b"abc"[..]));
    let back = e.send(r#"AT+SYSMFG=1,"mqtt_ca","mqtt_ca""#).await.unwrap();
    assert_eq!(back.payloads[0].data, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_payload_may_contain_ok_lines() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    let blob = b"a\r\nOK\r\nb\r\nERROR\r\n\0ready\r\n".to_vec();
    let write = Command::new(format!(
        r#"AT+SYSMFG=2,"mqtt_cert","mqtt_cert",8,{}"#,
        blob.len()
    ))
    .payload(blob.clone());
    assert!(e.run(write).await.unwrap().is_ok());
    let r = e
        .send(r#"AT+SYSMFG=1,"mqtt_cert","mqtt_cert""#)
        .await
        .unwrap();
    assert_eq!(r.status, Status::Ok);
    assert_eq!(r.payloads.len(), 1);
    assert_eq!(r.payloads[0].data, blob);
    assert!(r.urcs.is_empty(), "{:?}", r.urcs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_is_retried_until_the_command_is_taken() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    fault(&e, r#""busy",3"#).await;
    let r = e.send("AT+GMR").await.unwrap();
    assert_eq!(r.status, Status::Ok, "{}", r.summary());
    assert_eq!(r.busy_retries, 3);
    assert_eq!(r.info.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_reply_never_answers_the_next_command() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    let mut urcs = e.subscribe();
    fault(&e, r#""delay",600"#).await;
    let r = e
        .run(Command::new("AT+GMR").timeout(Duration::from_millis(150)))
        .await
        .unwrap();
    assert!(matches!(r.status, Status::Timeout { .. }), "{:?}", r.status);
    // The module is still working on AT+GMR: its answer must not become this command's.
    let next = e.send("AT+CWMODE?").await.unwrap();
    assert_eq!(next.status, Status::Ok, "{}", next.summary());
    assert_eq!(next.info, vec!["+CWMODE:1".to_string()]);
    let mut late = Vec::new();
    while let Ok(u) = urcs.try_recv() {
        late.push(u);
    }
    assert!(
        late.iter()
            .any(|u| u.line.starts_with("AT version:") && u.during.is_none()),
        "the late GMR lines were reported as unsolicited: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_reset_mid_command_is_reported_as_a_reset() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    fault(&e, r#""reset_mid""#).await;
    let r = e.send("AT+GMR").await.unwrap();
    assert_eq!(r.status, Status::Reset, "{}", r.summary());
    // After the reboot echo is on again; the engine matches it against what it sent.
    let again = e.send("AT+CWMODE?").await.unwrap();
    assert!(again.is_ok());
    assert!(again.echo);
    assert_eq!(again.info, vec!["+CWMODE:1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_and_nvs_survive_a_reset_but_echo_does_not() {
    let sim = SimProcess::start("esp32-at", &[]);
    let e = engine(&sim).await;
    let write = Command::new(r#"AT+SYSMFG=2,"mqtt_key","mqtt_key",8,3"#).payload(b"key".to_vec());
    assert!(e.run(write).await.unwrap().is_ok());
    // AT+RST ends only when the module is back (its `ready`), so the next command is safe.
    let rst = e.send("AT+RST").await.unwrap();
    assert_eq!(rst.status, Status::Ok, "{}", rst.summary());
    let r = e
        .send(r#"AT+SYSMFG=1,"mqtt_key","mqtt_key""#)
        .await
        .unwrap();
    assert!(r.echo, "echo is back on after a reboot");
    assert_eq!(r.payloads[0].data, b"key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_restart_with_ten_seconds_of_silence_is_waited_for() {
    // A Quectel module takes seconds to boot after AT+CFUN=1,1 and hears nothing meanwhile.
    let sim = SimProcess::start("quectel", &["--boot-time", "10s"]);
    let port = port::open(
        &Selector::Path(sim.path.clone().into()),
        &SerialOptions::default(),
    )
    .await
    .unwrap();
    let config = EngineConfig {
        boot_window: Duration::from_secs(30),
        ..EngineConfig::default()
    };
    let (e, _task) = Engine::start(port, config, None);
    let mut urcs = e.subscribe();
    let r = e.send("AT+CFUN=1,1").await.unwrap();
    assert_eq!(r.status, Status::Ok, "{}", r.summary());
    assert!(r.elapsed >= Duration::from_secs(10), "{:?}", r.elapsed);
    let mut saw_rdy = false;
    while let Ok(u) = urcs.try_recv() {
        saw_rdy |= u.line == "RDY";
    }
    assert!(saw_rdy, "the banner was delivered");
    // Back: the next command is answered at once.
    let next = e.send("AT").await.unwrap();
    assert!(next.is_ok() && next.elapsed < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unexpected_restart_mid_command_is_a_reset_and_the_session_recovers() {
    let sim = SimProcess::start("esp32-at", &["--fault", "reset_mid@AT+GMR"]);
    let e = engine(&sim).await;
    let r = e.send("AT+GMR").await.unwrap();
    assert_eq!(r.status, Status::Reset, "{}", r.summary());
    let next = e.send("AT").await.unwrap();
    assert!(next.is_ok(), "{}", next.summary());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_that_answers_only_busy_gives_no_result() {
    // A wedged firmware: every try of the command gets `busy p...`, more than atprov retries.
    let sim = SimProcess::start("esp32-at", &["--fault", "busy:50@AT+GMR"]);
    let e = engine(&sim).await;
    let r = e.send("AT+GMR").await.unwrap();
    assert_eq!(r.status, Status::Busy, "{}", r.summary());
    assert!(r.final_line.is_none(), "`busy p...` is not its result");
    assert!(r.busy_retries >= 1);
}
