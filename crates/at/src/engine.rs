//! The engine: one task per port that owns the port and the [`Session`], runs one command at a
//! time, delivers URCs to subscribers, retries `busy p...` with bounded backoff, and after any
//! timeout resynchronises (drain until quiet, then a sentinel `AT` that must get its own `OK`)
//! before the next command, so a late reply can never answer the wrong command.
//!
//! Modules restart, on purpose or not, and take seconds to come back. The engine is patient
//! for the profile's boot window: a resync keeps trying sentinels until the window has passed
//! (not after a fixed count), and a command that restarts the module ([`Command::reboots`]:
//! `AT+RST`, `AT+CFUN=1,1`) ends only when the module is back (its boot banner, or a sentinel
//! answered after a sign that it went away). It also leaves no module stuck in a data phase:
//! a prompt that never came for an announced length is paid with filler bytes, and a prompt
//! nobody expected is cancelled with ESC, before the next command is sent.
//!
//! With `resync` off (replays of recorded sessions) the engine sends exactly the caller's
//! lines and payloads, nothing of its own.
//!
//! Callers hold an [`Engine`] handle; it is cheap to clone and every method is async.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::command::Command;
use super::response::{Phase, Response, Status, Urc};
use super::session::{Output, RxClass, Session};

/// Anything the engine can own as a port: a byte stream in both directions.
pub trait Port: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Port for T {}

/// An open port, owned by the engine.
pub type BoxPort = Box<dyn Port>;

/// Tunables of the engine. The defaults suit real modules at 115,200 baud.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// First pause after `busy p...`; doubled on every further rejection.
    pub busy_backoff: Duration,
    /// Rejections tolerated before the command fails as busy.
    pub busy_retries: u32,
    /// Silence that ends the drain after a timeout.
    pub quiet: Duration,
    /// Longest drain, however chatty the module is.
    pub max_drain: Duration,
    /// Time for the sentinel `AT` to be answered.
    pub sentinel_timeout: Duration,
    /// Sentinels tried before the session is declared lost.
    pub sentinel_attempts: u32,
    /// A profile's additions to the built-in response tables.
    pub grammar: std::sync::Arc<super::classify::Grammar>,
    /// How long a restarting module may take to answer again: a resync gives up only after
    /// this, and a command that restarts the module waits this long for it. Zero: commands
    /// that restart the module end at their `OK`.
    pub boot_window: Duration,
    /// Send bytes of the engine's own (sentinels, filler, ESC) to recover after a timeout.
    /// Off for replays, which send exactly what was recorded.
    pub resync: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            busy_backoff: Duration::from_millis(50),
            busy_retries: 8,
            quiet: Duration::from_millis(100),
            max_drain: Duration::from_secs(3),
            sentinel_timeout: Duration::from_secs(1),
            sentinel_attempts: 3,
            grammar: Default::default(),
            boot_window: Duration::from_secs(10),
            resync: true,
        }
    }
}

/// A failure of the link itself, as opposed to the module's answer.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the port closed (device unplugged or the other end went away)")]
    /// The port closed.
    Closed,
    #[error("I/O error on the port: {0}")]
    /// Reading or writing the port failed.
    Io(#[from] std::io::Error),
    #[error("the module stopped answering: no `OK` to {attempts} sentinel `AT` after a timeout")]
    /// The module never answered the resync after a timeout.
    Lost {
        /// Sentinels tried.
        attempts: u32,
    },
}

/// One thing that happened on the wire, for transcripts, consoles and reports.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceEvent {
    /// Bytes the host sent: a command line (without terminator) or a payload.
    Tx {
        /// When, since the engine started.
        at: Duration,
        /// The line (redacted form when it carries a secret) or the payload, escaped.
        text: String,
        /// Bytes written.
        len: usize,
        /// Whether these are payload bytes after a prompt (not a command line).
        payload: bool,
        /// Whether they are secret (the text is then empty).
        secret: bool,
        /// The engine's own resync `AT`, not a caller's command.
        sentinel: bool,
    },
    /// A record the device sent, classified.
    Rx {
        /// When, since the engine started.
        at: Duration,
        /// The record, escaped (secrets hidden by the engine's redaction).
        text: String,
        /// How the session classified it.
        class: RxClass,
        /// Whether it carries a secret (show its length only).
        secret: bool,
    },
    /// A command ended (so a report can be assembled in wire order).
    Done {
        /// When, since the engine started.
        at: Duration,
        /// The command's whole result.
        response: Box<Response>,
    },
    /// Something the engine did on its own (resync, retry).
    Note {
        /// When, since the engine started.
        at: Duration,
        /// What happened.
        text: String,
    },
}

impl TraceEvent {
    /// The event as one line of atprov's transcript notation: `>> ` what the host sent, `<< `
    /// what the device sent, `~~ ` a device line outside any command, `# atprov: ` what the
    /// engine did on its own; secret bytes show as their length only. `None` for
    /// [`TraceEvent::Done`], which is bookkeeping, not traffic.
    pub fn notation(&self) -> Option<String> {
        Some(match self {
            TraceEvent::Tx {
                text, len, secret, ..
            } => {
                if *secret {
                    format!(">> <{len} bytes, secret, not shown>")
                } else {
                    format!(">> {text}")
                }
            }
            TraceEvent::Rx {
                text,
                class,
                secret,
                ..
            } => {
                let marker = if *class == RxClass::Unsolicited {
                    "~~"
                } else {
                    "<<"
                };
                if *secret {
                    format!("{marker} <{} characters, secret, not shown>", text.len())
                } else {
                    format!("{marker} {text}")
                }
            }
            TraceEvent::Note { text, .. } => format!("# atprov: {text}"),
            TraceEvent::Done { .. } => return None,
        })
    }
}

enum Request {
    Run(Box<Command>, oneshot::Sender<Result<Response, EngineError>>),
    Write(Vec<u8>, oneshot::Sender<Result<(), EngineError>>),
    Unanswered(String, String, oneshot::Sender<Result<(), EngineError>>),
}

/// How long a command may still get its final after a sign that the module restarted.
const RESET_GRACE: Duration = Duration::from_secs(1);

/// A handle to the engine task of one port.
#[derive(Clone)]
pub struct Engine {
    requests: mpsc::Sender<Request>,
    urcs: broadcast::Sender<Urc>,
}

impl Engine {
    /// Starts the engine task on `port`. Trace events go to `trace` when given.
    pub fn start(
        port: BoxPort,
        config: EngineConfig,
        trace: Option<mpsc::UnboundedSender<TraceEvent>>,
    ) -> (Engine, tokio::task::JoinHandle<()>) {
        let (req_tx, req_rx) = mpsc::channel(16);
        let (urc_tx, _) = broadcast::channel(1024);
        let mut session = Session::with_grammar(config.grammar.clone());
        session.set_nesting(!config.resync);
        let actor = Actor {
            port,
            requests: req_rx,
            urcs: urc_tx.clone(),
            trace,
            config,
            session,
            started: Instant::now(),
            current: None,
            pending: None,
            dirty: false,
            drain: None,
            pending_attempt: 0,
            resync_started: None,
            rebooting: None,
            prompt_check: None,
            last_command: None,
            rx_scrubber: Default::default(),
            tx_scrubber: Default::default(),
        };
        let task = tokio::spawn(actor.run());
        (
            Engine {
                requests: req_tx,
                urcs: urc_tx,
            },
            task,
        )
    }

    /// Runs one command to its end. The response's status tells how it ended; an `Err` means
    /// the link itself failed.
    pub async fn run(&self, cmd: Command) -> Result<Response, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Run(Box::new(cmd), tx))
            .await
            .map_err(|_| EngineError::Closed)?;
        rx.await.map_err(|_| EngineError::Closed)?
    }

    /// Whether the module answers `AT` (after the resync a timeout calls for, which waits out
    /// the boot window): what to say after a command got no answer.
    pub async fn answers_at(&self) -> bool {
        self.run(Command::new("AT").timeout(Duration::from_secs(2)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Shorthand for [`Engine::run`] with the expectations the line implies.
    pub async fn send(&self, line: &str) -> Result<Response, EngineError> {
        self.run(Command::new(line)).await
    }

    /// Writes raw bytes between commands (console use).
    pub async fn write_raw(&self, bytes: Vec<u8>) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Write(bytes, tx))
            .await
            .map_err(|_| EngineError::Closed)?;
        rx.await.map_err(|_| EngineError::Closed)?
    }

    /// Sends a command line whose answer cannot be heard (the line rate is being restored
    /// after the module stopped being readable), traced like any command with `why` as a
    /// note. No answer is waited for; the next command resynchronises as usual.
    pub async fn send_unanswered(&self, line: &str, why: &str) -> Result<(), EngineError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Unanswered(line.to_string(), why.to_string(), tx))
            .await
            .map_err(|_| EngineError::Closed)?;
        rx.await.map_err(|_| EngineError::Closed)?
    }

    /// Subscribes to unsolicited messages from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Urc> {
        self.urcs.subscribe()
    }
}

struct Current {
    reply: Option<oneshot::Sender<Result<Response, EngineError>>>,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    retry_at: Option<Instant>,
    in_completion: bool,
    sentinel_attempt: u32,
    secret_payload: bool,
    /// The command restarts the module.
    reboots: bool,
    /// The deadline is the prompt's; it becomes the final's when the prompt comes.
    waiting_prompt: bool,
    /// A boot banner arrived while it ran.
    back_seen: bool,
}

/// A command that restarted the module, waiting until it is back.
struct Rebooting {
    reply: oneshot::Sender<Result<Response, EngineError>>,
    resp: Response,
    deadline: Instant,
    /// The module showed it went away (a reset sign, an unanswered sentinel).
    evidence: bool,
    /// Its boot banner came.
    back: bool,
}

struct Drain {
    quiet_until: Instant,
    hard_until: Instant,
}

struct Actor {
    port: BoxPort,
    requests: mpsc::Receiver<Request>,
    urcs: broadcast::Sender<Urc>,
    trace: Option<mpsc::UnboundedSender<TraceEvent>>,
    config: EngineConfig,
    session: Session,
    started: Instant,
    current: Option<Current>,
    /// A caller's command waiting for the resync to finish.
    pending: Option<(Command, oneshot::Sender<Result<Response, EngineError>>)>,
    dirty: bool,
    drain: Option<Drain>,
    /// Sentinels already tried in this resync.
    pending_attempt: u32,
    /// When the current resync began (it lasts at least the boot window).
    resync_started: Option<Instant>,
    /// A command that restarted the module, waiting for it to come back.
    rebooting: Option<Rebooting>,
    /// When to take a raw prompt nobody armed as a prompt (the line stayed unfinished).
    prompt_check: Option<Instant>,
    /// The last caller's command, as shown (for messages about what followed it).
    last_command: Option<String>,
    /// Secrets hidden from trace events, per direction (a key may span many records).
    rx_scrubber: super::redact::Scrubber,
    tx_scrubber: super::redact::Scrubber,
}

impl Actor {
    async fn run(mut self) {
        let mut buf = vec![0u8; 16 * 1024];
        let result = loop {
            let timer = self.next_timer();
            let idle = self.current.is_none()
                && self.drain.is_none()
                && self.pending.is_none()
                && self.rebooting.is_none()
                && self.prompt_check.is_none();
            tokio::select! {
                biased;
                read = self.port.read(&mut buf) => match read {
                    Ok(0) => break Err(EngineError::Closed),
                    Ok(n) => {
                        if let Some(d) = self.drain.as_mut() {
                            d.quiet_until = Instant::now() + self.config.quiet;
                        }
                        let mut outs = Vec::new();
                        self.session.feed(&buf[..n], &mut outs);
                        if let Err(e) = self.handle(outs).await {
                            break Err(e);
                        }
                        self.track_phase();
                        self.prompt_check = (self.session.unexpected_prompt_pending()
                            || self.session.idle_prompt_pending())
                        .then(|| Instant::now() + self.config.quiet);
                        if let Err(e) = self.after_reboot_news().await {
                            break Err(e);
                        }
                    }
                    Err(e) => break Err(EngineError::Io(e)),
                },
                _ = sleep_until(timer), if timer.is_some() => {
                    if let Err(e) = self.on_timer().await {
                        break Err(e);
                    }
                }
                req = self.requests.recv(), if idle => match req {
                    None => break Ok(()),
                    Some(Request::Run(cmd, reply)) => {
                        if self.dirty && self.config.resync {
                            self.note("resynchronising after a timeout: draining");
                            self.pending = Some((*cmd, reply));
                            self.resync_started.get_or_insert_with(Instant::now);
                            self.start_drain();
                        } else if let Err(e) = self.start(*cmd, Some(reply), 0).await {
                            break Err(e);
                        }
                    }
                    Some(Request::Write(bytes, reply)) => {
                        let r = self.write(&bytes).await;
                        let failed = r.is_err();
                        let _ = reply.send(r);
                        if failed {
                            break Err(EngineError::Closed);
                        }
                    }
                    Some(Request::Unanswered(line, why, reply)) => {
                        self.note(&why);
                        let len = line.len() + 2;
                        self.trace(|at| TraceEvent::Tx {
                            at,
                            text: line.clone(),
                            len,
                            payload: false,
                            secret: false,
                            sentinel: false,
                        });
                        let r = self.write(format!("{line}\r\n").as_bytes()).await;
                        let failed = r.is_err();
                        let _ = reply.send(r);
                        if failed {
                            break Err(EngineError::Closed);
                        }
                    }
                },
            }
        };
        if let Err(err) = result {
            self.fail_all(err);
        }
    }

    fn next_timer(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut consider = |x: Instant| t = Some(t.map_or(x, |t| t.min(x)));
        if let Some(c) = &self.current {
            consider(c.retry_at.unwrap_or(c.deadline));
        }
        if let Some(d) = &self.drain {
            consider(d.quiet_until.min(d.hard_until));
        }
        // (A probe in flight ends first; its end sees the deadline.)
        if let Some(r) = self.rebooting.as_ref().filter(|_| self.current.is_none()) {
            consider(r.deadline);
        }
        if let Some(p) = self.prompt_check {
            consider(p);
        }
        t
    }

    async fn on_timer(&mut self) -> Result<(), EngineError> {
        let now = Instant::now();
        if self.prompt_check.is_some_and(|p| now >= p) {
            self.prompt_check = None;
            let mut outs = Vec::new();
            self.session.take_unexpected_prompt(&mut outs);
            if self.session.take_idle_prompt(&mut outs) && self.config.resync {
                // A command that ended with `OK` wants data after all, of a length nobody
                // knows: the resync's sentinels fill it until the module answers again.
                let after = self.last_command.clone().unwrap_or_default();
                tracing::warn!(
                    "the module wants data: it sent a `>` after `{after}` ended with OK; give the data with the command (send --data/--payload, a step's payload); resynchronising"
                );
                self.note("the module sent a prompt after its command ended: it waits for data; resynchronising before the next command");
                self.dirty = true;
            }
            self.handle(outs).await?;
            self.track_phase();
            return Ok(());
        }
        // The boot window is over (a probe in flight ends first; its end sees the deadline).
        if self.rebooting.as_ref().is_some_and(|r| now >= r.deadline) && self.current.is_none() {
            self.drain = None;
            self.end_reboot();
        }
        if let Some(d) = &self.drain {
            if now >= d.quiet_until || now >= d.hard_until {
                self.drain = None;
                self.start_sentinel().await?;
            }
            return Ok(());
        }
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        if let Some(at) = c.retry_at {
            if now >= at {
                c.retry_at = None;
                c.deadline = now + c.timeout;
                if let Some(bytes) = self.session.resend() {
                    self.note("resending after `busy p...`");
                    self.write(&bytes).await?;
                }
            }
            return Ok(());
        }
        if now < c.deadline {
            return Ok(());
        }
        let c = self.current.take().expect("checked above");
        let debt = self.session.prompt_debt();
        let Some(resp) = self.session.expire(now - c.started) else {
            return Ok(());
        };
        self.dirty = true;
        match c.reply {
            Some(reply) => {
                self.emit_done(&resp);
                let _ = reply.send(Ok(resp));
            }
            None => self.sentinel_failed(c.sentinel_attempt + 1).await?,
        }
        if let Some(n) = debt.filter(|_| self.config.resync) {
            // The module may sit in its data phase waiting for the announced bytes and would
            // swallow the next commands: pay them so that the write ends (and fails).
            self.write_own(
                &format!(
                    "no prompt came: sending {n} filler bytes in case the module waits for its data"
                ),
                format!("<{n} filler bytes>"),
                &vec![b'0'; n],
            )
            .await?;
        }
        Ok(())
    }

    /// The sentinel `AT` got no `OK` (timeout or error): drain and try again, or, once the
    /// attempts are spent and the boot window has passed, give the waiting caller up as lost.
    /// The attempt count starts afresh for the next resync.
    async fn sentinel_failed(&mut self, attempt: u32) -> Result<(), EngineError> {
        if let Some(r) = self.rebooting.as_mut() {
            r.evidence = true;
            return self.reboot_probe_done(false).await;
        }
        let window_over = self
            .resync_started
            .is_none_or(|t| t.elapsed() >= self.config.boot_window);
        if attempt >= self.config.sentinel_attempts && window_over {
            self.pending_attempt = 0;
            self.resync_started = None;
            if let Some((_, reply)) = self.pending.take() {
                let _ = reply.send(Err(EngineError::Lost { attempts: attempt }));
            }
        } else {
            self.note("sentinel `AT` unanswered: draining again");
            self.pending_attempt = attempt;
            self.start_drain();
        }
        Ok(())
    }

    fn start_drain(&mut self) {
        let now = Instant::now();
        // While a module restarts, probe at a gentler pace.
        let quiet = if self.rebooting.is_some() {
            self.config.quiet.max(Duration::from_millis(500))
        } else {
            self.config.quiet
        };
        self.drain = Some(Drain {
            quiet_until: now + quiet,
            hard_until: now + self.config.max_drain,
        });
    }

    /// A probe of a restarting module ended (`answered`: with its own `OK`): the module is
    /// back when its banner came or it answered after showing it had gone; otherwise probe
    /// again until the boot window is over.
    async fn reboot_probe_done(&mut self, answered: bool) -> Result<(), EngineError> {
        let Some(r) = self.rebooting.as_ref() else {
            return Ok(());
        };
        if r.back || (answered && r.evidence) || Instant::now() >= r.deadline {
            self.end_reboot();
        } else {
            self.start_drain();
        }
        Ok(())
    }

    /// Reboot news came (a banner, a sign): end the wait when the module is back and nothing
    /// of ours is on the wire.
    async fn after_reboot_news(&mut self) -> Result<(), EngineError> {
        if self.current.is_none() && self.rebooting.as_ref().is_some_and(|r| r.back) {
            self.drain = None;
            self.end_reboot();
        }
        Ok(())
    }

    /// Ends the wait for a restarting module: back (its banner, or a probe answered after it
    /// went away), or the boot window is over (the command then ends as a timeout and the
    /// next command resynchronises first).
    fn end_reboot(&mut self) {
        let Some(mut r) = self.rebooting.take() else {
            return;
        };
        let back = r.back || (r.evidence && !self.dirty);
        if back {
            self.note("the module is back after its restart");
            self.dirty = false;
        } else {
            self.note("the module did not come back within the boot window");
            r.resp.status = Status::Timeout {
                phase: super::response::Phase::Reboot,
            };
            self.dirty = true;
        }
        r.resp.elapsed +=
            Instant::now().saturating_duration_since(r.deadline - self.config.boot_window);
        self.emit_done(&r.resp);
        let _ = r.reply.send(Ok(r.resp));
    }

    async fn start_sentinel(&mut self) -> Result<(), EngineError> {
        let attempt = std::mem::take(&mut self.pending_attempt);
        self.note("sending sentinel `AT`");
        let cmd = Command::new("AT").timeout(self.config.sentinel_timeout);
        self.start(cmd, None, attempt).await
    }

    async fn start(
        &mut self,
        cmd: Command,
        reply: Option<oneshot::Sender<Result<Response, EngineError>>>,
        sentinel_attempt: u32,
    ) -> Result<(), EngineError> {
        let now = Instant::now();
        let shown = cmd.display().to_string();
        let timeout = cmd.timeout;
        let secret_payload = cmd.secret_payload;
        let reboots = cmd.reboots && reply.is_some();
        let first_wait = match (&cmd.prompt, cmd.prompt_timeout) {
            (Some(_), Some(p)) => p,
            _ => timeout,
        };
        let bytes = self.session.begin(cmd);
        let sentinel = reply.is_none();
        if !sentinel {
            self.last_command = Some(shown.clone());
        }
        let len = bytes.len();
        self.current = Some(Current {
            reply,
            started: now,
            deadline: now + first_wait,
            waiting_prompt: first_wait != timeout,
            timeout,
            retry_at: None,
            in_completion: false,
            sentinel_attempt,
            secret_payload,
            reboots,
            back_seen: false,
        });
        self.trace(|at| TraceEvent::Tx {
            at,
            text: shown,
            len,
            payload: false,
            secret: false,
            sentinel,
        });
        self.write(&bytes).await
    }

    /// Moves the deadline when the command starts waiting for its completing URC.
    fn track_phase(&mut self) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        if c.waiting_prompt && self.session.phase() != Some(Phase::Prompt) {
            c.waiting_prompt = false;
            c.deadline = Instant::now() + c.timeout;
        }
        if !c.in_completion && self.session.phase() == Some(Phase::Completion) {
            c.in_completion = true;
            let t = self.session.completion_timeout().unwrap_or(c.timeout);
            c.deadline = Instant::now() + t;
        }
    }

    async fn handle(&mut self, outs: Vec<Output>) -> Result<(), EngineError> {
        for out in outs {
            match out {
                Output::Rx {
                    text,
                    class,
                    secret,
                } => self.trace(|at| TraceEvent::Rx {
                    at,
                    text,
                    class,
                    secret,
                }),
                Output::Urc(urc) => {
                    let _ = self.urcs.send(urc);
                }
                Output::SendPayload(bytes) => {
                    let secret = self.current.as_ref().is_some_and(|c| c.secret_payload);
                    let text = if secret {
                        String::new()
                    } else {
                        crate::text::escape(&bytes)
                    };
                    let len = bytes.len();
                    self.trace(|at| TraceEvent::Tx {
                        at,
                        text,
                        len,
                        payload: true,
                        secret,
                        sentinel: false,
                    });
                    self.write(&bytes).await?;
                }
                Output::Busy => {
                    let backoff = self.config.busy_backoff;
                    let max = self.config.busy_retries;
                    if let Some(c) = self.current.as_mut() {
                        let tries = self.session.busy_retries();
                        if tries >= max {
                            let now = Instant::now();
                            c.deadline = now;
                            c.retry_at = None;
                        } else {
                            let pause = backoff * 2u32.saturating_pow(tries.min(6));
                            c.retry_at = Some(Instant::now() + pause);
                        }
                    }
                }
                Output::Reset { back } => {
                    let now = Instant::now();
                    if let Some(r) = self.rebooting.as_mut() {
                        r.evidence = true;
                        r.back |= back;
                        // A probe in flight has nothing more to tell.
                        if let Some(c) = self.current.as_mut().filter(|_| back) {
                            c.deadline = now;
                        }
                    } else if let Some(c) = self.current.as_mut().filter(|c| c.reboots) {
                        c.back_seen |= back;
                    } else {
                        // A final may still come at once (the module took the command after
                        // booting); otherwise the command ends as a reset soon.
                        // (A command waiting to be resent after `busy p...` is resent as usual.)
                        if let Some(c) = self.current.as_mut().filter(|c| c.retry_at.is_none()) {
                            c.deadline = c.deadline.min(now + RESET_GRACE);
                        }
                        self.note(if back {
                            "the module restarted (boot banner)"
                        } else {
                            "the module is restarting"
                        });
                    }
                }
                Output::Done(resp) => self.on_done(*resp).await?,
            }
        }
        Ok(())
    }

    async fn on_done(&mut self, mut resp: Response) -> Result<(), EngineError> {
        let Some(c) = self.current.take() else {
            return Ok(());
        };
        resp.elapsed = c.started.elapsed();
        match c.reply {
            Some(reply) => {
                let wait =
                    c.reboots && resp.is_ok() && !c.back_seen && !self.config.boot_window.is_zero();
                if wait {
                    // The module restarts now: the command ends when it is back.
                    self.note("waiting for the module to restart");
                    self.rebooting = Some(Rebooting {
                        reply,
                        resp,
                        deadline: Instant::now() + self.config.boot_window,
                        evidence: false,
                        back: false,
                    });
                    if self.config.resync {
                        self.start_drain();
                    }
                    return Ok(());
                }
                let wants_data = resp.status == Status::WantsData;
                self.emit_done(&resp);
                let _ = reply.send(Ok(resp));
                if wants_data && self.config.resync {
                    self.cancel_data_phase().await?;
                    self.dirty = true;
                }
            }
            None if self.rebooting.is_some() => {
                let answered = resp.status == Status::Ok;
                if answered {
                    self.dirty = false;
                }
                if resp.status == Status::Reset
                    && let Some(r) = self.rebooting.as_mut()
                {
                    r.evidence = true;
                }
                self.reboot_probe_done(answered).await?;
            }
            None => {
                if resp.status == Status::WantsData && self.config.resync {
                    self.cancel_data_phase().await?;
                }
                // The sentinel: its own OK makes the session clean again.
                if resp.status == Status::Ok {
                    self.dirty = false;
                    self.resync_started = None;
                    self.note("resynchronised");
                    if let Some((cmd, reply)) = self.pending.take() {
                        self.start(cmd, Some(reply), 0).await?;
                    }
                } else {
                    self.sentinel_failed(c.sentinel_attempt + 1).await?;
                }
            }
        }
        Ok(())
    }

    fn emit_done(&mut self, resp: &Response) {
        if self.trace.is_some() {
            let response = Box::new(super::redact::response(resp));
            self.trace(|at| TraceEvent::Done { at, response });
        }
    }

    /// Bytes the engine sends on its own to recover (filler, ESC): noted, traced as its own
    /// (a transcript shows them and a replay sends them again), written.
    async fn write_own(
        &mut self,
        note: &str,
        shown: String,
        bytes: &[u8],
    ) -> Result<(), EngineError> {
        self.note(note);
        let len = bytes.len();
        self.trace(|at| TraceEvent::Tx {
            at,
            text: shown,
            len,
            payload: true,
            secret: false,
            sentinel: true,
        });
        self.write(bytes).await
    }

    /// The module waits for data nobody will send: ESC leaves the data phase (3GPP, Quectel);
    /// the resync before the next command checks it worked.
    async fn cancel_data_phase(&mut self) -> Result<(), EngineError> {
        self.write_own(
            "the module wants data: sending ESC to cancel",
            "\\x1b".into(),
            &[0x1b],
        )
        .await
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), EngineError> {
        self.port.write_all(bytes).await?;
        self.port.flush().await?;
        Ok(())
    }

    fn note(&mut self, text: &str) {
        self.trace(|at| TraceEvent::Note {
            at,
            text: text.to_string(),
        });
    }

    /// Sends a trace event with its secrets hidden (see [`super::redact`]).
    /// The same redacted event also goes to the log (target `atprov::traffic`, info), which
    /// `-v` and `--log-file` show.
    fn trace(&mut self, make: impl FnOnce(Duration) -> TraceEvent) {
        let log = tracing::enabled!(target: "atprov::traffic", tracing::Level::INFO);
        if self.trace.is_none() && !log {
            return;
        }
        let mut event = make(self.started.elapsed());
        match &mut event {
            TraceEvent::Rx {
                text,
                secret: false,
                ..
            } => *text = self.rx_scrubber.scrub(text),
            TraceEvent::Tx {
                text,
                payload: true,
                secret: false,
                ..
            } => *text = self.tx_scrubber.scrub(text),
            _ => {}
        }
        if log {
            log_traffic(&event);
        }
        if let Some(t) = &self.trace {
            let _ = t.send(event);
        }
    }

    fn fail_all(&mut self, err: EngineError) {
        let closed = matches!(err, EngineError::Closed);
        if let Some(c) = self.current.take()
            && let Some(reply) = c.reply
        {
            let _ = reply.send(Err(if closed {
                EngineError::Closed
            } else {
                EngineError::Io(std::io::Error::other(err.to_string()))
            }));
        }
        if let Some((_, reply)) = self.pending.take() {
            let _ = reply.send(Err(EngineError::Closed));
        }
        self.requests.close();
        while let Ok(req) = self.requests.try_recv() {
            match req {
                Request::Run(_, reply) => {
                    let _ = reply.send(Err(EngineError::Closed));
                }
                Request::Write(_, reply) | Request::Unanswered(_, _, reply) => {
                    let _ = reply.send(Err(EngineError::Closed));
                }
            }
        }
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// One line of the log per event, in the transcript notation ([`TraceEvent::notation`]).
fn log_traffic(event: &TraceEvent) {
    if let Some(line) = event.notation() {
        tracing::info!(target: "atprov::traffic", "{line}");
    }
}
