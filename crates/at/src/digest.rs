//! The digester: a pure, total function from device bytes to framing events.
//!
//! It owns nothing but a bounded buffer. It knows how modules frame what they send:
//! lines split on CR or LF however the bytes arrive (`\r\n`, `\r\r\n` echo endings, a lone
//! `\r`), NULs and empty lines dropped, raw prompts with no line ending (`>` and `> `), and
//! counted payloads: a header that announces N bytes, then exactly N bytes that may contain
//! CR, LF, NUL or text that looks like a URC (`+MQTTSUBRECV:0,"t",5,<5 bytes>`).
//!
//! It does not know which command is in flight, with one exception the engine tells it about:
//! whether a raw prompt is expected ([`Digester::arm_prompt`]). A `>` at the start of a line is
//! a prompt only then; otherwise it is the first byte of an ordinary line.
//!
//! Guarantees, each tested: the same bytes give the same events whether fed at once, one byte
//! at a time or in random chunks; it never panics; memory stays bounded by [`MAX_LINE`] and
//! [`MAX_PAYLOAD`] whatever arrives.

/// Longest line kept; longer lines are cut and reported with [`Event::Overflow`].
pub const MAX_LINE: usize = 4096;
/// Largest counted payload read by count. A header announcing more is treated as a plain line,
/// so that a garbled length can never swallow the rest of the session.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What the digester recognised in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete, non-empty line without its CR/LF and NULs.
    Line(Vec<u8>),
    /// A raw prompt (`>` or `> `) arrived while one was armed.
    Prompt,
    /// A counted payload: its header as the device sent it and exactly the announced bytes.
    Payload {
        /// The header text: for [`PayloadStyle::Inline`] everything up to and including the
        /// separator before the data (`+SYSFLASH:8,`); for [`PayloadStyle::NextLine`] the whole
        /// header line (`+HTTPREAD: 124`).
        header: Vec<u8>,
        /// The announced bytes, verbatim.
        data: Vec<u8>,
        /// Whether the data followed the header on the same line or on the next one.
        style: PayloadStyle,
    },
    /// A line longer than [`MAX_LINE`]: the kept part was emitted as a [`Event::Line`] and
    /// this many further bytes were dropped.
    Overflow {
        /// Bytes dropped.
        dropped: usize,
    },
}

/// Where a counted payload sits relative to its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadStyle {
    /// `+MQTTSUBRECV:0,"t",5,hello`: data right after the header.
    Inline,
    /// `+HTTPREAD: 124\r\n<124 bytes>`: data after the header line's end.
    NextLine,
}

/// A header that announces a counted payload (each family lists its own in
/// [`crate::family`]).
pub struct PayloadHeader {
    /// How the header line starts.
    pub(crate) prefix: &'static [u8],
    /// Called on the rest of the line buffer after `prefix` each time it ends with the
    /// trigger byte. Returns the announced length when the header is complete.
    pub(crate) parse: fn(&[u8]) -> Option<usize>,
    pub(crate) trigger: u8,
    pub(crate) style: PayloadStyle,
    /// Bytes the device sends right after the data that belong to the payload record.
    pub(crate) trailer: &'static [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Collecting a line.
    Line,
    /// Dropping the rest of an over-long line until its end.
    Discard { dropped: usize },
    /// A next-line header ended with CR: swallow one LF, then read the payload.
    AwaitLf {
        header: Vec<u8>,
        remaining: usize,
        style: PayloadStyle,
        trailer: &'static [u8],
    },
    /// Reading a counted payload.
    Payload {
        header: Vec<u8>,
        remaining: usize,
        style: PayloadStyle,
        trailer: &'static [u8],
    },
    /// Swallowing the trailer of a payload record (e.g. the closing quote of `+QMTRECV`).
    Trailer { rest: &'static [u8] },
}

/// The framing state machine. Feed it bytes; collect events.
#[derive(Debug)]
pub struct Digester {
    state: State,
    line: Vec<u8>,
    data: Vec<u8>,
    prompt_armed: bool,
    /// After a prompt, one space (Quectel's `> `) belongs to the prompt.
    skip_space: bool,
}

impl Default for Digester {
    fn default() -> Self {
        Self::new()
    }
}

impl Digester {
    /// A digester expecting a line, no prompt armed.
    pub fn new() -> Self {
        Digester {
            state: State::Line,
            line: Vec::with_capacity(256),
            data: Vec::new(),
            prompt_armed: false,
            skip_space: false,
        }
    }

    /// Tells the digester that the command in flight expects a raw `>` prompt: the next `>`
    /// at the start of a line is reported as [`Event::Prompt`] (once).
    pub fn arm_prompt(&mut self, armed: bool) {
        self.prompt_armed = armed;
    }

    /// Whether a prompt is currently armed.
    pub fn prompt_armed(&self) -> bool {
        self.prompt_armed
    }

    /// Forgets any partial line or payload, e.g. after the port was reopened.
    pub fn reset(&mut self) {
        self.state = State::Line;
        self.line.clear();
        self.data = Vec::new();
        self.skip_space = false;
    }

    /// A raw prompt that nothing armed, waiting at the start of a line with nothing after it
    /// yet: `>`, `> ` or u-blox's `@`. Whether it is a prompt or the first byte of a line only
    /// time can tell, so the digester only reports it; the engine decides after a quiet spell
    /// ([`Digester::take_pending_prompt`]).
    pub fn pending_prompt(&self) -> Option<&'static str> {
        if !matches!(self.state, State::Line) {
            return None;
        }
        match self.line.as_slice() {
            b">" | b"> " => Some(">"),
            b"@" => Some("@"),
            _ => None,
        }
    }

    /// Takes the [`Digester::pending_prompt`] as a prompt: the partial line is consumed.
    pub fn take_pending_prompt(&mut self) -> Option<&'static str> {
        let p = self.pending_prompt()?;
        self.line.clear();
        Some(p)
    }

    /// Whether bytes of an unfinished record are held (a partial line or payload).
    pub fn is_mid_record(&self) -> bool {
        !self.line.is_empty() || !matches!(self.state, State::Line)
    }

    /// Feeds bytes and appends the events they complete to `out`.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Event>) {
        while !bytes.is_empty() {
            let used = match &mut self.state {
                State::Line => self.feed_line(bytes, out),
                State::Discard { dropped } => {
                    match bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
                        Some(i) => {
                            out.push(Event::Overflow {
                                dropped: *dropped + i,
                            });
                            self.state = State::Line;
                            i + 1
                        }
                        None => {
                            *dropped = dropped.saturating_add(bytes.len());
                            bytes.len()
                        }
                    }
                }
                State::AwaitLf { .. } => {
                    let State::AwaitLf {
                        header,
                        remaining,
                        style,
                        trailer,
                    } = std::mem::replace(&mut self.state, State::Line)
                    else {
                        unreachable!()
                    };
                    let used = usize::from(bytes[0] == b'\n');
                    self.start_payload(header, remaining, style, trailer, out);
                    used
                }
                State::Payload { remaining, .. } => {
                    let take = (*remaining).min(bytes.len());
                    self.data.extend_from_slice(&bytes[..take]);
                    *remaining -= take;
                    if *remaining == 0 {
                        self.finish_payload(out);
                    }
                    take
                }
                State::Trailer { rest } => {
                    if bytes[0] == rest[0] {
                        let rest = &rest[1..];
                        self.state = if rest.is_empty() {
                            State::Line
                        } else {
                            State::Trailer { rest }
                        };
                        1
                    } else {
                        // The device did not send the trailer; carry on with ordinary lines.
                        self.state = State::Line;
                        0
                    }
                }
            };
            bytes = &bytes[used..];
        }
    }

    /// Convenience: feed bytes and return the events.
    pub fn digest(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut out = Vec::new();
        self.feed(bytes, &mut out);
        out
    }

    /// Line mode; returns how many bytes were used.
    fn feed_line(&mut self, bytes: &[u8], out: &mut Vec<Event>) -> usize {
        for (i, &b) in bytes.iter().enumerate() {
            if self.skip_space {
                self.skip_space = false;
                if b == b' ' {
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    if let Some((len, rule)) = self.header_complete(b) {
                        let header = std::mem::take(&mut self.line);
                        if b == b'\r' {
                            self.state = State::AwaitLf {
                                header,
                                remaining: len,
                                style: rule.style,
                                trailer: rule.trailer,
                            };
                        } else {
                            self.start_payload(header, len, rule.style, rule.trailer, out);
                        }
                        return i + 1;
                    }
                    self.end_line(out);
                }
                0 => {}
                b'>' if self.prompt_armed && self.line.is_empty() => {
                    self.prompt_armed = false;
                    self.skip_space = true;
                    out.push(Event::Prompt);
                }
                _ => {
                    if self.line.len() == MAX_LINE {
                        out.push(Event::Line(std::mem::take(&mut self.line)));
                        self.state = State::Discard { dropped: 1 };
                        return i + 1;
                    }
                    self.line.push(b);
                    if let Some((len, rule)) = self.header_complete(b) {
                        let mut header = std::mem::take(&mut self.line);
                        header.shrink_to_fit();
                        self.start_payload(header, len, rule.style, rule.trailer, out);
                        return i + 1;
                    }
                }
            }
        }
        bytes.len()
    }

    /// Whether the line buffer, just extended by `last`, is a complete payload header.
    fn header_complete(&self, last: u8) -> Option<(usize, &'static PayloadHeader)> {
        if self.line.first() != Some(&b'+') {
            return None;
        }
        let rule = crate::family::payload_headers()
            .find(|r| r.trigger == last && self.line.starts_with(r.prefix))?;
        let len = (rule.parse)(&self.line[rule.prefix.len()..])?;
        (len <= MAX_PAYLOAD).then_some((len, rule))
    }

    fn end_line(&mut self, out: &mut Vec<Event>) {
        // Trailing spaces and tabs carry no meaning in AT responses.
        while matches!(self.line.last(), Some(b' ' | b'\t')) {
            self.line.pop();
        }
        if !self.line.is_empty() {
            out.push(Event::Line(std::mem::take(&mut self.line)));
        }
    }

    fn start_payload(
        &mut self,
        header: Vec<u8>,
        remaining: usize,
        style: PayloadStyle,
        trailer: &'static [u8],
        out: &mut Vec<Event>,
    ) {
        self.data = Vec::with_capacity(remaining.min(64 * 1024));
        self.state = State::Payload {
            header,
            remaining,
            style,
            trailer,
        };
        if remaining == 0 {
            self.finish_payload(out);
        }
    }

    fn finish_payload(&mut self, out: &mut Vec<Event>) {
        let State::Payload {
            header,
            style,
            trailer,
            ..
        } = std::mem::replace(&mut self.state, State::Line)
        else {
            return;
        };
        out.push(Event::Payload {
            header,
            data: std::mem::take(&mut self.data),
            style,
        });
        if !trailer.is_empty() {
            self.state = State::Trailer { rest: trailer };
        }
    }
}

/// Parses a run of ASCII digits as a length (no sign, no overflow).
pub(crate) fn number(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}
