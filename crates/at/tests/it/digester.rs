//! The digester: byte-exact cases from the reference notes, each also fed one byte at a time
//! and in random chunks with identical events, and a property test on arbitrary bytes.

use atprov_at::digest::{Digester, Event, MAX_LINE, MAX_PAYLOAD, PayloadStyle};
use proptest::prelude::*;

fn line(s: &str) -> Event {
    Event::Line(s.as_bytes().to_vec())
}

fn inline(header: &str, data: &[u8]) -> Event {
    Event::Payload {
        header: header.as_bytes().to_vec(),
        data: data.to_vec(),
        style: PayloadStyle::Inline,
    }
}

struct Case {
    name: &'static str,
    armed: bool,
    input: &'static [u8],
    expect: Vec<Event>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "plain OK",
            armed: false,
            input: b"\r\nOK\r\n",
            expect: vec![line("OK")],
        },
        Case {
            name: "echo ending in CR CR LF (Quectel M35)",
            armed: false,
            input: b"AT+MODE=2\r\r\n+CME ERROR: 100\r\n",
            expect: vec![line("AT+MODE=2"), line("+CME ERROR: 100")],
        },
        Case {
            name: "lone CR ends a line",
            armed: false,
            input: b"OK\rERROR\r",
            expect: vec![line("OK"), line("ERROR")],
        },
        Case {
            name: "LF only",
            armed: false,
            input: b"+CSQ: 20,99\nOK\n",
            expect: vec![line("+CSQ: 20,99"), line("OK")],
        },
        Case {
            name: "NULs and blank lines between lines are dropped",
            armed: false,
            input: b"\0\0\r\n\r\n\0OK\0\r\n\r\n",
            expect: vec![line("OK")],
        },
        Case {
            name: "GMR info lines then a blank line then OK",
            armed: false,
            input: b"AT version:3.2.0.0(s-ec2dec2 - ESP32 - Jul 28 2023 07:05:28)\r\nBin version:v3.2.0.0(WROOM-32)\r\n\r\nOK\r\n",
            expect: vec![
                line("AT version:3.2.0.0(s-ec2dec2 - ESP32 - Jul 28 2023 07:05:28)"),
                line("Bin version:v3.2.0.0(WROOM-32)"),
                line("OK"),
            ],
        },
        Case {
            name: "ESP-AT OK then bare prompt (SYSMFG, MQTTPUBRAW)",
            armed: true,
            input: b"\r\nOK\r\n\r\n>",
            expect: vec![line("OK"), Event::Prompt],
        },
        Case {
            name: "bare prompt as the very first byte (SYSFLASH with ATE0)",
            armed: true,
            input: b">",
            expect: vec![Event::Prompt],
        },
        Case {
            name: "Quectel prompt with a trailing space",
            armed: true,
            input: b"\r\n> OK\r\n",
            expect: vec![Event::Prompt, line("OK")],
        },
        Case {
            name: "a '>' at line start is text when no prompt is armed",
            armed: false,
            input: b">\r\n",
            expect: vec![line(">")],
        },
        Case {
            name: "URC between OK and the prompt",
            armed: true,
            input: b"\r\nOK\r\n+MQTTSUBRECV:0,\"t\",3,abc\r\n\r\n>",
            expect: vec![line("OK"), inline("+MQTTSUBRECV:0,\"t\",3,", b"abc"), Event::Prompt],
        },
        Case {
            name: "SYSFLASH read-back: counted bytes then OK with no CRLF of its own",
            armed: false,
            input: b"+SYSFLASH:8,\xF1\xF1\x01\x00\x0C\x04\x00\x00\r\nOK\r\n",
            expect: vec![inline("+SYSFLASH:8,", b"\xF1\xF1\x01\x00\x0C\x04\x00\x00"), line("OK")],
        },
        Case {
            name: "counted payload containing CRLF OK CRLF",
            armed: false,
            input: b"+SYSMFG:\"mqtt_ca\",\"mqtt_ca\",8,8,a\r\nOK\r\nb\r\n\r\nOK\r\n",
            expect: vec![
                inline("+SYSMFG:\"mqtt_ca\",\"mqtt_ca\",8,8,", b"a\r\nOK\r\nb"),
                line("OK"),
            ],
        },
        Case {
            name: "SYSFLASH query lines are not payloads",
            armed: false,
            input: b"+SYSFLASH:\"mqtt_cert\",64,12,0x37000,0x2000\r\n",
            expect: vec![line("+SYSFLASH:\"mqtt_cert\",64,12,0x37000,0x2000")],
        },
        Case {
            name: "MQTTSUBRECV payload with NUL, CR, LF and fake URC text",
            armed: false,
            input: b"+MQTTSUBRECV:0,\"cmd/x\",13,\0\r\nready\r\nOK\n\r\n",
            expect: vec![inline("+MQTTSUBRECV:0,\"cmd/x\",13,", b"\0\r\nready\r\nOK\n")],
        },
        Case {
            name: "MQTTSUBRECV with a topic containing a quote and comma",
            armed: false,
            input: b"+MQTTSUBRECV:0,\"a\",b\",2,hi\r\n",
            expect: vec![inline("+MQTTSUBRECV:0,\"a\",b\",2,", b"hi")],
        },
        Case {
            name: "Luat +MSUB payload",
            armed: false,
            input: b"+MSUB: \"mqtt/sub\",22 byte,{\r\n  \"msg\": \"hello\"\r\n}\r\n",
            expect: vec![inline("+MSUB: \"mqtt/sub\",22 byte,", b"{\r\n  \"msg\": \"hello\"\r\n}")],
        },
        Case {
            name: "Quectel +QMTRECV with length: closing quote swallowed",
            armed: false,
            input: b"+QMTRECV: 0,0,\"t/1\",7,\"a\"\r\nb,c\"\r\n",
            expect: vec![inline("+QMTRECV: 0,0,\"t/1\",7,\"", b"a\"\r\nb,c")],
        },
        Case {
            name: "Quectel +QMTRECV without length is a line",
            armed: false,
            input: b"+QMTRECV: 0,0,\"t\",\"hello\"\r\n",
            expect: vec![line("+QMTRECV: 0,0,\"t\",\"hello\"")],
        },
        Case {
            name: "Luat +HTTPREAD: header line, then the body by count",
            armed: false,
            input: b"\r\n+HTTPREAD: 12\r\n{\"a\":\r\n\"OK\"}\r\nOK\r\n",
            expect: vec![
                Event::Payload {
                    header: b"+HTTPREAD: 12".to_vec(),
                    data: b"{\"a\":\r\n\"OK\"}".to_vec(),
                    style: PayloadStyle::NextLine,
                },
                line("OK"),
            ],
        },
        Case {
            name: "ESP +IPD with link id",
            armed: false,
            input: b"+IPD,0,4:\r\n\r\n\r\n",
            expect: vec![inline("+IPD,0,4:", b"\r\n\r\n")],
        },
        Case {
            name: "zero-length payload",
            armed: false,
            input: b"+SYSFLASH:0,\r\nOK\r\n",
            expect: vec![inline("+SYSFLASH:0,", b""), line("OK")],
        },
        Case {
            name: "absurd announced length is a plain line",
            armed: false,
            input: b"+SYSFLASH:99999999,x\r\nOK\r\n",
            expect: vec![line("+SYSFLASH:99999999,x"), line("OK")],
        },
        Case {
            name: "busy and boot banners are lines",
            armed: false,
            input: b"\r\nbusy p...\r\n\r\nready\r\nRDY\r\n",
            expect: vec![line("busy p..."), line("ready"), line("RDY")],
        },
        Case {
            name: "trailing spaces trimmed",
            armed: false,
            input: b"OK  \r\n",
            expect: vec![line("OK")],
        },
        Case {
            name: "non-UTF-8 bytes kept raw",
            armed: false,
            input: b"\xff\xfeA\r\n",
            expect: vec![Event::Line(vec![0xff, 0xfe, b'A'])],
        },
    ]
}

fn run(armed: bool, chunks: &[&[u8]]) -> Vec<Event> {
    let mut d = Digester::new();
    d.arm_prompt(armed);
    let mut out = Vec::new();
    for c in chunks {
        d.feed(c, &mut out);
    }
    out
}

#[test]
fn byte_exact_cases() {
    for c in cases() {
        assert_eq!(run(c.armed, &[c.input]), c.expect, "case: {}", c.name);
    }
}

#[test]
fn byte_at_a_time_gives_the_same_events() {
    for c in cases() {
        let chunks: Vec<&[u8]> = c.input.chunks(1).collect();
        assert_eq!(run(c.armed, &chunks), c.expect, "case: {}", c.name);
    }
}

/// A small deterministic generator, so that a failure names its seed.
fn splits(len: usize, seed: u64) -> Vec<usize> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut cuts = Vec::new();
    let mut at = 0;
    while at < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        at += 1 + (x % 7) as usize;
        cuts.push(at.min(len));
    }
    cuts
}

#[test]
fn random_chunks_give_the_same_events() {
    for c in cases() {
        for seed in 0..200 {
            let mut chunks = Vec::new();
            let mut start = 0;
            for end in splits(c.input.len(), seed) {
                chunks.push(&c.input[start..end]);
                start = end;
            }
            assert_eq!(
                run(c.armed, &chunks),
                c.expect,
                "case: {} seed {seed}",
                c.name
            );
        }
    }
}

#[test]
fn an_overlong_line_is_cut_and_reported() {
    let mut input = vec![b'x'; MAX_LINE + 100];
    input.extend_from_slice(b"\r\nOK\r\n");
    let events = run(false, &[&input]);
    assert_eq!(events.len(), 3);
    assert_eq!(events[0], Event::Line(vec![b'x'; MAX_LINE]));
    assert_eq!(events[1], Event::Overflow { dropped: 100 });
    assert_eq!(events[2], line("OK"));
}

#[test]
fn a_prompt_fires_once_per_arming() {
    let mut d = Digester::new();
    d.arm_prompt(true);
    assert_eq!(d.digest(b">"), vec![Event::Prompt]);
    assert!(!d.prompt_armed());
    assert_eq!(d.digest(b"\r\n>\r\n"), vec![line(">")]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        armed in any::<bool>(),
        cut in 1usize..64,
    ) {
        let mut whole = Digester::new();
        whole.arm_prompt(armed);
        let all = whole.digest(&data);
        let mut pieces = Digester::new();
        pieces.arm_prompt(armed);
        let mut chunked = Vec::new();
        for c in data.chunks(cut) {
            pieces.feed(c, &mut chunked);
        }
        prop_assert_eq!(&all, &chunked);
        for e in &all {
            match e {
                Event::Line(l) => prop_assert!(!l.is_empty() && l.len() <= MAX_LINE),
                Event::Payload { data, .. } => prop_assert!(data.len() <= MAX_PAYLOAD),
                _ => {}
            }
        }
    }

    #[test]
    fn headers_followed_by_anything_keep_framing(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut input = format!("+MQTTSUBRECV:0,\"t\",{},", payload.len()).into_bytes();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\nOK\r\n");
        let events = Digester::new().digest(&input);
        prop_assert_eq!(events, vec![inline(&format!("+MQTTSUBRECV:0,\"t\",{},", payload.len()), &payload), line("OK")]);
    }
}
