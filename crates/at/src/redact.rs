//! Keeping secrets out of everything atprov shows or writes: transcripts, consoles, logs, JSON.
//!
//! Two rules, both pure:
//! - **By grammar**: the parameters of commands that are secrets (the Wi-Fi password of
//!   `AT+CWJAP`, the MQTT password of `AT+MQTTUSERCFG`, `AT+QMTCONN`, `AT+MCONFIG`, an APN
//!   password...) and the payload of `AT+MQTTLONGPASSWORD` are shown as `"***"`, whoever typed
//!   the command. [`command_line`] gives the shown form.
//! - **By content**: a PEM private-key block (in either direction, across lines, counted
//!   payloads and read-back chunks) and the secret fields of cloud replies (`deviceSecret`,
//!   `iotToken`, ...). A [`Scrubber`] follows one stream so that a block split over several
//!   lines or chunks is hidden from its header to its end.

/// A command's parameters that are secrets, by command name (0-based positions).
const SECRET_PARAMS: &[(&str, &[usize])] = &[
    // ESP-AT: AT+CWJAP="ssid","password",... and the soft-AP's AT+CWSAP="ssid","password",...
    ("+CWJAP", &[1]),
    ("+CWJAP_CUR", &[1]),
    ("+CWJAP_DEF", &[1]),
    ("+CWSAP", &[1]),
    // ESP-AT: AT+MQTTUSERCFG=<link>,<scheme>,"client id","username","password",...
    ("+MQTTUSERCFG", &[4]),
    // Quectel: AT+QMTCONN=<idx>,"client id","username","password"
    ("+QMTCONN", &[3]),
    // Luat: AT+MCONFIG="client id","username","password",...
    ("+MCONFIG", &[2]),
    // APN logins: AT+QICSGP=<ctx>,<type>,"apn","user","password",<auth>; 3GPP AT+CGAUTH.
    ("+QICSGP", &[4]),
    ("+CGAUTH", &[3]),
];

/// Commands whose payload after the prompt is a secret.
const SECRET_PAYLOADS: &[&str] = &["+MQTTLONGPASSWORD"];

/// Info lines that repeat a secret parameter (`+CWSAP:"ssid","password",...`).
const SECRET_INFO: &[(&str, usize)] = &[("+CWSAP:", 1), ("+CWSAP_CUR:", 1), ("+CWSAP_DEF:", 1)];

/// JSON fields of cloud replies whose values are secrets.
const SECRET_FIELDS: &[&str] = &[
    "deviceSecret",
    "productSecret",
    "iotToken",
    "password",
    "token",
];

const SHOWN: &str = "***";

/// The command line as it may be shown, when its grammar says it carries a secret.
pub fn command_line(line: &str) -> Option<String> {
    let name = super::command::command_name(line)?.to_ascii_uppercase();
    let secret = SECRET_PARAMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)?;
    let eq = line.find('=')?;
    Some(format!(
        "{}{}",
        &line[..=eq],
        hide_params(&line[eq + 1..], secret)
    ))
}

/// Whether the payload of this command line is a secret.
pub fn payload_is_secret(line: &str) -> bool {
    super::command::command_name(line)
        .is_some_and(|n| SECRET_PAYLOADS.iter().any(|s| s.eq_ignore_ascii_case(n)))
}

/// `a,"b",c` with the parameters at `secret` replaced by `"***"` (commas inside quotes and
/// backslash escapes respected).
fn hide_params(args: &str, secret: &[usize]) -> String {
    let mut out = String::with_capacity(args.len());
    for (i, p) in super::command::split_args(args).into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let empty = matches!(p.trim(), "" | "\"\"");
        if secret.contains(&i) && !empty {
            out.push('"');
            out.push_str(SHOWN);
            out.push('"');
        } else {
            out.push_str(p);
        }
    }
    out
}

/// Follows one stream of text (device lines, or host payloads) and hides secrets in it; a
/// private-key block that began in an earlier piece stays hidden until its end marker.
#[derive(Debug, Default, Clone)]
pub struct Scrubber {
    in_key: bool,
    /// The end of the previous piece, where a marker split across pieces begins.
    tail: String,
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
/// Longer than any marker, so a marker split across two pieces is seen whole.
const TAIL: usize = 48;

impl Scrubber {
    /// A scrubber at the start of a stream.
    pub fn new() -> Scrubber {
        Scrubber::default()
    }

    /// The piece as it may be shown.
    pub fn scrub(&mut self, piece: &str) -> String {
        let shown = self.scrub_keys(piece);
        let shown = hide_json_fields(&shown);
        let shown = hide_info_params(&shown);
        let keep_from = floor_char_boundary(piece, piece.len().saturating_sub(TAIL));
        if piece.len() >= TAIL {
            self.tail = piece[keep_from..].to_string();
        } else {
            self.tail.push_str(piece);
            let cut = floor_char_boundary(&self.tail, self.tail.len().saturating_sub(TAIL));
            self.tail.drain(..cut);
        }
        shown
    }

    /// Whether a private-key block is open (its end not seen yet).
    pub fn in_key(&self) -> bool {
        self.in_key
    }

    fn scrub_keys(&mut self, piece: &str) -> String {
        // Search the previous tail and this piece together, so a marker split between them is
        // found; only what lies in this piece (from `offset`) is output.
        let joined = format!("{}{piece}", self.tail);
        let offset = self.tail.len();
        let mut out = String::with_capacity(piece.len());
        let mut pos = offset;
        let mut search = 0;
        loop {
            if self.in_key {
                match marker_ending_after(&joined, search, offset, END) {
                    Some((start, _)) => {
                        let start = start.max(pos);
                        push_hidden(&mut out, joined[pos..start].chars().count());
                        pos = start;
                        search = start;
                        self.in_key = false;
                    }
                    None => {
                        push_hidden(&mut out, joined[pos..].chars().count());
                        return out;
                    }
                }
            }
            match marker_ending_after(&joined, search, offset, BEGIN) {
                Some((_, end)) => {
                    out.push_str(&joined[pos..end]);
                    pos = end;
                    search = end;
                    self.in_key = true;
                }
                None => {
                    out.push_str(&joined[pos..]);
                    return out;
                }
            }
        }
    }
}

/// A copy of a command's result with its secrets hidden, for printing and JSON (the original
/// keeps the raw lines and payloads the caller may need, e.g. a read-back to compare).
pub fn response(r: &super::Response) -> super::Response {
    let mut s = Scrubber::new();
    let mut shown = r.clone();
    for line in &mut shown.info {
        *line = s.scrub(line);
    }
    for d in &mut shown.details {
        *d = Scrubber::new().scrub(d);
    }
    for u in &mut shown.urcs {
        u.line = s.scrub(&u.line);
        u.payload = None;
    }
    shown.completion = shown.completion.as_deref().map(|c| s.scrub(c));
    for p in &mut shown.payloads {
        p.data.clear();
    }
    shown
}

fn push_hidden(out: &mut String, n: usize) {
    if n > 0 {
        out.push_str(&format!("<private key, {n} characters, not shown>"));
    }
}

/// The first `LEAD<label>PRIVATE KEY-----` marker (LEAD `-----BEGIN ` or `-----END `) found
/// from `from` that ends after `after`: (start, end).
fn marker_ending_after(s: &str, from: usize, after: usize, lead: &str) -> Option<(usize, usize)> {
    let mut at = from;
    while let Some(i) = s[at..].find(lead) {
        let start = at + i;
        let rest = &s[start + lead.len()..];
        if let Some(close) = rest.find("-----") {
            let end = start + lead.len() + close + 5;
            // Labels are short: ``, `RSA `, `EC `, `ENCRYPTED `, `OPENSSH `.
            if close <= 24 && rest[..close].ends_with("PRIVATE KEY") && end > after {
                return Some((start, end));
            }
        }
        at = start + lead.len();
    }
    None
}

/// `"deviceSecret":"abc"` → `"deviceSecret":"***"` (also with spaces, or escaped quotes as in a
/// rendered payload).
fn hide_json_fields(s: &str) -> String {
    if !SECRET_FIELDS.iter().any(|f| s.contains(f)) {
        return s.to_string();
    }
    let mut out = s.to_string();
    for field in SECRET_FIELDS {
        for quote in ["\"", "\\\""] {
            let key = format!("{quote}{field}{quote}");
            let mut search = 0;
            while let Some(i) = out[search..].find(&key) {
                let after_key = search + i + key.len();
                let rest = &out[after_key..];
                let trimmed = rest.trim_start();
                let Some(colon_rest) = trimmed.strip_prefix(':') else {
                    search = after_key;
                    continue;
                };
                let value = colon_rest.trim_start();
                let Some(v) = value.strip_prefix(quote) else {
                    search = after_key;
                    continue;
                };
                let value_start = out.len() - v.len();
                let Some(end) = v.find(quote) else {
                    out.replace_range(value_start.., SHOWN);
                    break;
                };
                if end > 0 {
                    out.replace_range(value_start..value_start + end, SHOWN);
                }
                search = value_start + SHOWN.len().min(end) + quote.len();
            }
        }
    }
    out
}

fn hide_info_params(s: &str) -> String {
    for (prefix, index) in SECRET_INFO {
        if let Some(rest) = s.strip_prefix(prefix) {
            return format!("{prefix}{}", hide_params(rest, &[*index]));
        }
    }
    s.to_string()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parameters_are_hidden_by_grammar() {
        assert_eq!(
            command_line(r#"AT+CWJAP="lab","s3cr,et\"x",,1"#).unwrap(),
            r#"AT+CWJAP="lab","***",,1"#
        );
        assert_eq!(
            command_line(r#"AT+MQTTUSERCFG=0,5,"id","user","pw",0,0,"""#).unwrap(),
            r#"AT+MQTTUSERCFG=0,5,"id","user","***",0,0,"""#
        );
        assert_eq!(
            command_line(r#"AT+QMTCONN=0,"id","u","p""#).unwrap(),
            r#"AT+QMTCONN=0,"id","u","***""#
        );
        assert_eq!(
            command_line(r#"at+mconfig="id","u","p""#).unwrap(),
            r#"at+mconfig="id","u","***""#
        );
        // An empty password stays visibly empty; other commands are untouched.
        assert_eq!(
            command_line(r#"AT+MQTTUSERCFG=0,5,"id","","",0,0,"""#).unwrap(),
            r#"AT+MQTTUSERCFG=0,5,"id","","",0,0,"""#
        );
        assert_eq!(
            command_line(r#"AT+QMTCONN=0,"id""#).unwrap(),
            r#"AT+QMTCONN=0,"id""#
        );
        assert_eq!(command_line("AT+GMR"), None);
        assert!(payload_is_secret("AT+MQTTLONGPASSWORD=0,80"));
        assert!(!payload_is_secret("AT+MQTTLONGCLIENTID=0,80"));
    }

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";

    #[test]
    fn a_key_in_one_piece_is_hidden() {
        let mut s = Scrubber::new();
        let shown = s.scrub(&format!(
            "+SYSMFG:\"mqtt_key\",8,{},{}",
            KEY.len(),
            KEY.replace('\n', "\\n")
        ));
        assert!(!shown.contains("MIGHAgEA"), "{shown}");
        assert!(
            shown.contains("-----BEGIN PRIVATE KEY-----<private key"),
            "{shown}"
        );
        assert!(shown.contains("-----END PRIVATE KEY-----"), "{shown}");
        assert!(!s.in_key());
    }

    #[test]
    fn a_key_split_over_lines_or_at_any_byte_is_hidden() {
        let body = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg";
        for cut in 0..KEY.len() {
            let mut s = Scrubber::new();
            let (a, b) = KEY.split_at(cut);
            let shown = format!("{}{}", s.scrub(&format!("+SYSFLASH:9,{a}")), s.scrub(b));
            // No run of the key body longer than a marker's slack is shown.
            for w in body.as_bytes().windows(12) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(!shown.contains(w), "cut {cut}: `{w}` shown in {shown}");
            }
            assert!(!s.in_key(), "cut {cut}: {shown}");
        }
        let mut s = Scrubber::new();
        let lines: Vec<String> = KEY.lines().map(|l| s.scrub(l)).collect();
        assert_eq!(lines[0], "-----BEGIN PRIVATE KEY-----");
        assert!(lines[1].starts_with("<private key"), "{lines:?}");
        assert_eq!(lines[2], "-----END PRIVATE KEY-----");
        // Other PEM blocks are left alone.
        let mut s = Scrubber::new();
        assert_eq!(
            s.scrub("-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"),
            "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"
        );
        let mut s = Scrubber::new();
        let ec = s.scrub("-----BEGIN EC PRIVATE KEY-----MHcCAQEE-----END EC PRIVATE KEY-----");
        assert!(!ec.contains("MHcCAQEE"), "{ec}");
    }

    #[test]
    fn cloud_reply_secrets_are_hidden() {
        let mut s = Scrubber::new();
        let shown = s.scrub(r#"{"code":200,"data":{"deviceSecret":"abc123","productKey":"pk"}}"#);
        assert_eq!(
            shown,
            r#"{"code":200,"data":{"deviceSecret":"***","productKey":"pk"}}"#
        );
        let shown = s.scrub(r#"+HTTPREAD: {\"iotToken\": \"tok\", \"iotId\":\"id\"}"#);
        assert!(!shown.contains("tok") && shown.contains("id"), "{shown}");
        assert_eq!(
            s.scrub(r#"+CWSAP:"esp","softap-pw",5,3"#),
            r#"+CWSAP:"esp","***",5,3"#
        );
    }
}
