//! The session over whole device answers: the same bytes give the same records however they
//! are chunked, for the behaviours real modules show (restarts under a command, a prompt glued
//! to the line after it, `busy p...`, echoed data after a prompt, `CONNECT <rate>`).

use atprov_at::Command;
use atprov_at::session::{Output, Session};
use proptest::prelude::*;

/// A command and what the device answers to it.
fn scenarios() -> Vec<(Command, &'static [u8])> {
    vec![
        (
            Command::new("AT+GMR"),
            b"AT+GMR\r\r\nAT version:3.2.0.0\r\n\r\nets Jun  8 2016 00:22:57\r\n\r\nready\r\nAT+GMR\r\n\r\nOK\r\n",
        ),
        (
            Command::new("AT+MQTTPUBRAW=0,\"t\",2,1,0").payload(b"{}".to_vec()),
            b"\r\nOK\r\n\r\n>+MQTTPUB:OK\r\n",
        ),
        (
            Command::new("AT+CWJAP=\"a\",\"b\"").no_busy_retry(),
            b"\r\nbusy p...\r\n\r\nbusy p...\r\nERR CODE:0x010b0000\r\n+CWJAP:1\r\n\r\nERROR\r\n",
        ),
        (
            Command::new("AT+CMGS=\"+1\"").payload(b"hi".to_vec()),
            b"AT+CMGS=\"+1\"\r\r\n> hi\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n",
        ),
        (
            Command::new("ATD*99#"),
            b"\r\nCONNECT 150000000\r\n",
        ),
        (
            Command::new("AT+RST"),
            b"\r\nOK\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13\r\n\r\nready\r\n",
        ),
    ]
}

fn run(cmd: &Command, data: &[u8], cut: usize) -> Vec<Output> {
    let mut s = Session::new();
    s.begin(cmd.clone());
    let mut out = Vec::new();
    for chunk in data.chunks(cut.max(1)) {
        s.feed(chunk, &mut out);
    }
    out
}

#[test]
fn whole_answers_are_classified_as_real_modules_mean_them() {
    use atprov_at::Status;
    let done = |out: &[Output]| {
        out.iter()
            .find_map(|o| match o {
                Output::Done(r) => Some((**r).clone()),
                _ => None,
            })
            .expect("the command ended")
    };
    let s = scenarios();
    // ROM noise then `ready` under AT+GMR, then the module answers it after booting.
    let gmr = done(&run(&s[0].0, s[0].1, usize::MAX));
    assert_eq!(gmr.final_line.as_deref(), Some("OK"));
    assert!(gmr.urcs.iter().any(|u| u.line == "ready"));
    // The prompt glued to the result.
    let publish = done(&run(&s[1].0, s[1].1, usize::MAX));
    assert_eq!(
        (publish.prompt.as_deref(), publish.final_line.as_deref()),
        (Some(">"), Some("+MQTTPUB:OK"))
    );
    // `busy p...` with nothing running before: not the result.
    let join = done(&run(&s[2].0, s[2].1, usize::MAX));
    assert_eq!(join.final_line.as_deref(), Some("ERROR"));
    assert!(join.info.iter().any(|l| l == "busy p..."));
    // Data echoed after the prompt is not an info line.
    let sms = done(&run(&s[3].0, s[3].1, usize::MAX));
    assert_eq!(sms.info, vec!["+CMGS: 7".to_string()]);
    let dial = done(&run(&s[4].0, s[4].1, usize::MAX));
    assert_eq!(dial.status, Status::Ok);
    let rst = done(&run(&s[5].0, s[5].1, usize::MAX));
    assert_eq!(rst.status, Status::Ok);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn chunking_never_changes_the_records(which in 0usize..6, cut in 1usize..17) {
        let s = scenarios();
        let (cmd, data) = &s[which];
        prop_assert_eq!(run(cmd, data, usize::MAX), run(cmd, data, cut));
    }
}
