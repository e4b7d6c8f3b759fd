//! The runner: plays an emulated module's replies on a byte stream with the timing and the
//! quirks of a real AT firmware. It owns what every family shares: echo, assembling command
//! lines, `busy p...` for a line that arrives while a reply is still running, reading exactly N
//! payload bytes after a prompt, reboots, and fault injection. A [`Model`] owns the rest: what
//! a command does and what it answers.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// One step of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Bytes sent as they are (info lines, URCs).
    Send(Vec<u8>),
    /// The final result; fault injection puts "mid-response" URCs before it.
    Final(Vec<u8>),
    /// A prompt; then the runner reads exactly `len` payload bytes and hands them to
    /// [`Model::payload`].
    Prompt {
        /// The prompt as sent.
        bytes: Vec<u8>,
        /// Payload bytes to read after it.
        len: usize,
    },
    /// The firmware is busy for this long (new lines get `busy p...`).
    Delay(Duration),
    /// The firmware waits for the network (a real broker); the steps that follow come from
    /// there. Lines meanwhile get `busy p...`.
    Await(Await),
    /// The module reboots: volatile state goes, the boot banner comes (after the boot time,
    /// during which the module hears nothing).
    Reboot,
    /// The boot is over: the banner goes out and the module listens again.
    Awake(Vec<u8>),
    /// The module's UART changes rate (after the `OK` that went out at the old one) and hears
    /// nothing for `settle`.
    SetRate {
        /// The new rate.
        rate: u32,
        /// How long the module is deaf after the switch.
        settle: Duration,
    },
    /// The module saved this rate: it powers up at it from now on.
    SaveRate(u32),
}

/// A reply: steps played in order.
pub type Script = Vec<Step>;

/// What an emulated module does with commands.
pub trait Model: Send + 'static {
    /// Resets volatile state (echo, session settings) as a reboot does; returns the boot banner.
    fn reboot(&mut self) -> Vec<u8>;
    /// Handles a command line (without terminator).
    fn command(&mut self, line: &str) -> Script;
    /// Handles the payload announced by a [`Step::Prompt`].
    fn payload(&mut self, data: Vec<u8>) -> Script;
    /// Whether the module echoes what it receives.
    fn echo(&self) -> bool;
    /// The answer to a line that arrives while a reply is running.
    fn busy_reply(&self) -> Vec<u8> {
        b"\r\nbusy p...\r\n".to_vec()
    }
    /// Advances emulated time-dependent state; may return unsolicited bytes (a URC).
    fn poll(&mut self) -> Vec<u8> {
        Vec::new()
    }
    /// Waits the module started on its own since last asked (an SNTP sync under way): start
    /// and length, for the device-time account.
    fn take_waits(&mut self) -> Vec<(std::time::Instant, Duration)> {
        Vec::new()
    }
    /// When [`Model::poll`] next has something to do, so the runner wakes exactly then.
    fn next_event(&self) -> Option<std::time::Instant> {
        None
    }
}

/// Steps that a network task will deliver.
#[derive(Clone)]
pub struct Await(Arc<Mutex<Option<tokio::sync::oneshot::Receiver<Script>>>>);

impl Await {
    /// The steps `rx` delivers (nothing, if its sender goes away).
    pub fn new(rx: tokio::sync::oneshot::Receiver<Script>) -> Await {
        Await(Arc::new(Mutex::new(Some(rx))))
    }

    fn take(&self) -> Option<tokio::sync::oneshot::Receiver<Script>> {
        self.0.lock().expect("await lock").take()
    }
}

impl std::fmt::Debug for Await {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Await")
    }
}

impl PartialEq for Await {
    fn eq(&self, other: &Await) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Await {}

/// A restart command's reply (`AT+RST`, `AT+CFUN=1,1`): `OK`, then the module goes away and
/// boots (the runner's boot time, then the model's banner).
pub fn ok_then_reboot() -> Script {
    vec![
        Step::Final(b"\r\nOK\r\n".to_vec()),
        Step::Delay(Duration::from_millis(20)),
        Step::Reboot,
    ]
}

/// Runs `work` on the runtime and delivers its steps: what a family model returns while the
/// network answers.
pub fn awaiting<F>(work: F) -> Script
where
    F: std::future::Future<Output = Script> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _ = tx.send(work.await);
    });
    vec![Step::Await(Await::new(rx))]
}

/// Faults to inject, shared between the runner and whoever drives the test.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Answer the next N command lines with `busy p...`.
    pub busy: u32,
    /// Swallow the next N command lines without an answer.
    pub silent: u32,
    /// Hold the next reply back this long (lines meanwhile get `busy p...`).
    pub delay: Option<Duration>,
    /// Put this URC line before the final result of the next reply.
    pub urc_mid: Option<String>,
    /// Put this URC line right before the next prompt.
    pub urc_before_prompt: Option<String>,
    /// Reboot halfway through the next reply.
    pub reset_mid: bool,
    /// Reboot right after the next reply (a brown-out between commands).
    pub reboot_after: bool,
    /// Flip a bit in every byte of the next reply.
    pub garble: bool,
    /// Drop the next reply's bytes after the first N.
    pub truncate: Option<usize>,
    /// Do not send the next reply's prompt, but still wait for its data (a `>` lost on the
    /// wire: the module swallows what comes next as data).
    pub drop_prompt: bool,
    /// One-shot faults armed for the first command line starting with a prefix.
    pub triggers: Vec<Trigger>,
}

/// A fault that fires on the first command line starting with `prefix`
/// (`atprov sim --fault KIND@PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    /// The command line prefix that arms it.
    pub prefix: String,
    /// What happens.
    pub kind: TriggerKind,
}

/// The faults a trigger can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    /// Reboot halfway through the reply.
    ResetMid,
    /// Answer, then reboot (the host sees `ready` between commands).
    RebootAfter,
    /// Flip a bit in every byte of the reply.
    Garble,
    /// No answer at all.
    Silent,
    /// Answer `busy p...` this many times.
    Busy(u32),
    /// Only the first N bytes of the reply.
    Truncate(usize),
    /// The prompt is lost; the module still waits for the data.
    DropPrompt,
}

impl Trigger {
    /// `KIND@PREFIX`, KIND one of `reset_mid`, `reboot_after`, `garble`, `silent`, `busy:N`,
    /// `truncate:N`, `drop_prompt`.
    pub fn parse(s: &str) -> Result<Trigger, String> {
        let (kind, prefix) = s.split_once('@').ok_or_else(|| {
            format!("--fault {s}: write KIND@COMMAND-PREFIX, e.g. reset_mid@AT+SYSFLASH=1")
        })?;
        let num = |k: &str| -> Result<u32, String> {
            k.parse()
                .map_err(|_| format!("--fault {s}: `{k}` is not a number"))
        };
        let kind = match kind.split_once(':') {
            Some(("busy", n)) => TriggerKind::Busy(num(n)?),
            Some(("truncate", n)) => TriggerKind::Truncate(num(n)? as usize),
            None if kind == "reset_mid" => TriggerKind::ResetMid,
            None if kind == "reboot_after" => TriggerKind::RebootAfter,
            None if kind == "garble" => TriggerKind::Garble,
            None if kind == "silent" => TriggerKind::Silent,
            None if kind == "drop_prompt" => TriggerKind::DropPrompt,
            _ => {
                return Err(format!(
                    "--fault {s}: unknown fault `{kind}` (reset_mid, reboot_after, garble, silent, busy:N, truncate:N, drop_prompt)"
                ));
            }
        };
        if prefix.is_empty() {
            return Err(format!("--fault {s}: the command prefix after @ is empty"));
        }
        Ok(Trigger {
            prefix: prefix.to_string(),
            kind,
        })
    }
}

/// The time the emulated device spent on the wire or in its own latencies, counted once even
/// where they overlap: the lower bound of any session's duration, used by benchmarks.
#[derive(Debug, Default)]
pub struct DeviceClock {
    covered_until: Option<std::time::Instant>,
    total: Duration,
}

impl DeviceClock {
    fn add(&mut self, start: std::time::Instant, len: Duration) {
        let end = start + len;
        let from = match self.covered_until {
            Some(c) if c >= end => return,
            Some(c) if c > start => c,
            _ => start,
        };
        self.total += end - from;
        self.covered_until = Some(end);
    }
}

/// A handle to inject faults and URCs into a running emulator.
#[derive(Clone, Default)]
pub struct SimControl {
    faults: Arc<Mutex<Faults>>,
    /// Ideal device time: wire time and latencies as configured.
    clock: Arc<Mutex<DeviceClock>>,
    /// The same, as the emulator's timers actually slept (they wake late by up to a tick).
    slept: Arc<Mutex<DeviceClock>>,
    urcs: Arc<Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>>,
    uart: Arc<Mutex<UartLog>>,
}

/// What the emulated module's UART did: the rate now, a saved one, every switch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UartLog {
    /// The rate the module's UART runs at now.
    pub rate: u32,
    /// The rate it saved (`AT+UART_DEF`, `AT&W`), if any: its power-on rate.
    pub saved: Option<u32>,
    /// Every rate it switched to, in order.
    pub switches: Vec<u32>,
}

impl SimControl {
    /// Changes the pending faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.faults.lock().expect("fault lock"));
    }

    /// Wire time plus emulated latencies so far (overlaps counted once).
    pub fn device_time(&self) -> Duration {
        self.clock.lock().expect("clock lock").total
    }

    /// [`SimControl::device_time`] as the emulator's timers actually slept: the time the
    /// device was busy, timer lateness included, which a host can never overlap.
    pub fn device_time_slept(&self) -> Duration {
        self.slept.lock().expect("clock lock").total
    }

    fn account(&self, start: std::time::Instant, len: Duration) {
        if !len.is_zero() {
            self.clock.lock().expect("clock lock").add(start, len);
            self.slept.lock().expect("clock lock").add(start, len);
        }
    }

    /// A wait of `ideal` that began at `start` and ended now.
    fn account_slept(&self, start: std::time::Instant, ideal: Duration) {
        if !ideal.is_zero() {
            self.clock.lock().expect("clock lock").add(start, ideal);
            self.slept
                .lock()
                .expect("clock lock")
                .add(start, start.elapsed());
        }
    }

    /// What the module's UART did so far.
    pub fn uart(&self) -> UartLog {
        self.uart.lock().expect("uart lock").clone()
    }

    /// Sends an unsolicited line now (framed `\r\n<line>\r\n`).
    pub fn inject_urc(&self, line: &str) {
        if let Some(tx) = self.urcs.lock().expect("urc lock").as_ref() {
            let _ = tx.send(format!("\r\n{line}\r\n").into_bytes());
        }
    }
}

/// Reads the line rate the host's port is set to, where that can be known (a pseudo-terminal's
/// termios, as the host set it).
#[derive(Clone)]
pub struct HostRate(Arc<dyn Fn() -> Option<u32> + Send + Sync>);

impl HostRate {
    /// A reader.
    pub fn new(read: impl Fn() -> Option<u32> + Send + Sync + 'static) -> HostRate {
        HostRate(Arc::new(read))
    }

    fn get(&self) -> Option<u32> {
        (self.0)()
    }
}

impl std::fmt::Debug for HostRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostRate")
    }
}

/// Options of the runner.
#[derive(Debug, Clone, Default)]
pub struct RunnerOptions {
    /// Pace both directions at the module's UART rate (10 bits a byte), like a real UART; it
    /// starts at this rate and follows the module's switches (`AT+UART_CUR`, `AT+IPR`).
    /// Without it the module's rate still starts at 115,200 and is tracked, unpaced.
    pub baud: Option<u32>,
    /// The host's port rate: once either side has switched, bytes cross only while the
    /// host's rate and the module's agree (within 3 %), as on a real UART.
    pub host_rate: Option<HostRate>,
    /// The adapter cannot receive above this rate: while the module runs faster, what it sends
    /// reaches the host garbled (what it hears is fine).
    pub max_baud: Option<u32>,
    /// Time the firmware takes for every command before answering.
    pub latency: Duration,
    /// Send the boot banner when starting.
    pub boot_banner: bool,
    /// How long a reboot takes: the module hears nothing, then sends its banner.
    pub boot_time: Duration,
}

/// Runs `model` on `io` until the host side closes.
pub async fn run<M: Model, IO: AsyncRead + AsyncWrite + Unpin>(
    mut model: M,
    io: IO,
    options: RunnerOptions,
    control: SimControl,
) -> std::io::Result<()> {
    let (urc_tx, mut urc_rx) = mpsc::unbounded_channel();
    *control.urcs.lock().expect("urc lock") = Some(urc_tx);
    control.uart.lock().expect("uart lock").rate = options.baud.unwrap_or(FACTORY_RATE);
    let (mut reader, mut writer) = tokio::io::split(io);
    let mut out = Output {
        wire: Wire::new(&options),
        writer: &mut writer,
        control: control.clone(),
        boot_time: options.boot_time,
    };
    if options.boot_banner {
        let banner = model.reboot();
        out.send(&banner).await?;
    }
    let mut state = RunnerState::default();
    let mut buf = vec![0u8; 8192];
    let mut poll_every = tokio::time::interval(Duration::from_millis(20));
    poll_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Play the steps that need no waiting.
        while state.waiting_until.is_none() && state.awaiting_payload.is_none() && !state.on_network
        {
            let Some(step) = state.steps.pop_front() else {
                break;
            };
            play(step, &mut model, &mut state, &mut out).await?;
        }
        let wake = state.waiting_until;
        let event = model.next_event().map(Instant::from_std);
        let mut network = state.awaiting.take();
        tokio::select! {
            biased;
            script = recv_script(&mut network), if network.is_some() => {
                network = None;
                state.on_network = false;
                state.steps.extend(script);
            }
            n = reader.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                // Whether the bytes are heard is decided as they arrive, not after their wire time.
                let heard = out.wire.module_hears();
                if out.wire.paced {
                    // A UART receives no faster than its baud rate.
                    let wire = wire_time(n, out.wire.rate);
                    let start = std::time::Instant::now();
                    tokio::time::sleep(wire).await;
                    control.account_slept(start, wire);
                }
                if heard {
                    input(&buf[..n], &mut model, &mut state, &mut out, &control, &options).await?;
                } else {
                    // Settling after a switch, or at another rate than the host: framing errors.
                    tracing::debug!("emulator: {n} bytes lost on the UART");
                }
            }
            Some(urc) = urc_rx.recv() => out.send(&urc).await?,
            _ = sleep_until(wake), if wake.is_some() => {
                state.waiting_until = None;
                if let Some((start, ideal)) = state.delay.take() {
                    control.account_slept(start, ideal);
                }
            }
            _ = sleep_until(event), if event.is_some() => {
                let unsolicited = model.poll();
                if !unsolicited.is_empty() {
                    out.send(&unsolicited).await?;
                }
            }
            _ = poll_every.tick() => {
                let unsolicited = model.poll();
                if !unsolicited.is_empty() {
                    out.send(&unsolicited).await?;
                }
            }
        }
        if network.is_some() {
            state.awaiting = network;
        }
    }
}

async fn recv_script(rx: &mut Option<tokio::sync::oneshot::Receiver<Script>>) -> Script {
    match rx.as_mut() {
        Some(rx) => rx.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct RunnerState {
    /// The delay being waited out: when it began and how long it should take.
    delay: Option<(std::time::Instant, Duration)>,
    steps: VecDeque<Step>,
    waiting_until: Option<Instant>,
    awaiting_payload: Option<usize>,
    payload: Vec<u8>,
    line: Vec<u8>,
    /// Faults that apply to the reply being played.
    active: Faults,
    /// Bytes of the current reply sent so far (for truncation).
    sent_in_reply: usize,
    /// The network's answer being waited for.
    awaiting: Option<tokio::sync::oneshot::Receiver<Script>>,
    /// The firmware is waiting for the network (the receiver is being polled).
    on_network: bool,
    /// Rebooting: whatever arrives is lost.
    booting: bool,
}

impl RunnerState {
    fn running(&self) -> bool {
        !self.steps.is_empty() || self.waiting_until.is_some() || self.on_network
    }
}

struct Output<'a, W> {
    wire: Wire,
    writer: &'a mut W,
    control: SimControl,
    boot_time: Duration,
}

/// The rate a module's UART starts at when nobody said otherwise.
const FACTORY_RATE: u32 = 115_200;

/// The wire between the module's UART and the host's adapter.
struct Wire {
    paced: bool,
    /// The module's rate now.
    rate: u32,
    power_on: u32,
    saved: Option<u32>,
    host: Option<HostRate>,
    /// The host's rate when first seen.
    host_first: Option<u32>,
    max_baud: Option<u32>,
    /// After a switch, the module hears nothing until then.
    deaf_until: Option<Instant>,
    /// When the last bytes sent are off the wire (as configured, not as the timer slept).
    sent_until: Option<Instant>,
}

impl Wire {
    fn new(options: &RunnerOptions) -> Wire {
        let rate = options.baud.unwrap_or(FACTORY_RATE);
        Wire {
            paced: options.baud.is_some(),
            rate,
            power_on: rate,
            saved: None,
            host: options.host_rate.clone(),
            host_first: None,
            max_baud: options.max_baud,
            deaf_until: None,
            sent_until: None,
        }
    }

    /// The host's port and the module run at different rates. Judged only once either has
    /// switched: a tool that opens the port at whatever rate and never changes it (a test
    /// writing raw bytes) is taken to match.
    fn mismatch(&mut self) -> bool {
        let Some(host) = self.host.as_ref().and_then(HostRate::get) else {
            return false;
        };
        // The host's rate is known from its first bytes (before that the PTY may still carry
        // its default settings).
        let Some(first) = self.host_first else {
            return false;
        };
        let switched = self.rate != self.power_on || host != first;
        let close = (f64::from(host) - f64::from(self.rate)).abs() <= 0.03 * f64::from(self.rate);
        switched && !close
    }

    /// Whether the host's adapter can read what the module sends now.
    fn host_hears(&mut self) -> bool {
        !self.mismatch() && self.max_baud.is_none_or(|m| self.rate <= m)
    }

    /// Whether the module can read what the host sends now.
    fn module_hears(&mut self) -> bool {
        if self.host_first.is_none() {
            self.host_first = self.host.as_ref().and_then(HostRate::get);
        }
        if self.deaf_until.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        self.deaf_until = None;
        !self.mismatch()
    }
}

fn wire_time(bytes: usize, baud: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(baud))
}

impl<W: AsyncWrite + Unpin> Output<'_, W> {
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let began = Instant::now();
        if self.wire.host_hears() {
            self.writer.write_all(bytes).await?;
        } else {
            // Framing errors at the host: every byte arrives as something else.
            let garbled: Vec<u8> = bytes.iter().map(|b| b ^ 0xA5).collect();
            self.writer.write_all(&garbled).await?;
        }
        self.writer.flush().await?;
        let wire = wire_time(bytes.len(), self.wire.rate);
        self.wire.sent_until = Some(
            began
                + if self.wire.paced {
                    wire
                } else {
                    Duration::ZERO
                },
        );
        if self.wire.paced {
            let start = std::time::Instant::now();
            tokio::time::sleep(wire).await;
            self.control.account_slept(start, wire);
        }
        Ok(())
    }
}

async fn input<M: Model, W: AsyncWrite + Unpin>(
    bytes: &[u8],
    model: &mut M,
    state: &mut RunnerState,
    out: &mut Output<'_, W>,
    control: &SimControl,
    options: &RunnerOptions,
) -> std::io::Result<()> {
    if state.booting {
        // A module that is starting hears nothing.
        return Ok(());
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        if let Some(remaining) = state.awaiting_payload {
            let take = remaining.min(rest.len());
            state.payload.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if take == remaining {
                state.awaiting_payload = None;
                let data = std::mem::take(&mut state.payload);
                let script = model.payload(data);
                state.steps.extend(apply_faults(script, &mut state.active));
            } else {
                state.awaiting_payload = Some(remaining - take);
            }
            continue;
        }
        let b = rest[0];
        rest = &rest[1..];
        if model.echo() {
            out.send(&[b]).await?;
        }
        if b != b'\r' && b != b'\n' {
            if state.line.len() < 4096 {
                state.line.push(b);
            }
            continue;
        }
        if state.line.is_empty() {
            continue;
        }
        let line = String::from_utf8_lossy(&std::mem::take(&mut state.line)).into_owned();
        if state.running() {
            out.send(&model.busy_reply()).await?;
            continue;
        }
        if let Some(script) = sim_fault_command(&line, control) {
            state.steps.extend(script);
            continue;
        }
        let mut faults = std::mem::take(&mut *control.faults.lock().expect("fault lock"));
        if let Some(i) = faults
            .triggers
            .iter()
            .position(|t| line.starts_with(t.prefix.as_str()))
        {
            let trigger = faults.triggers.remove(i);
            tracing::info!("emulator: fault {:?} on `{line}`", trigger.kind);
            match trigger.kind {
                TriggerKind::ResetMid => faults.reset_mid = true,
                TriggerKind::RebootAfter => faults.reboot_after = true,
                TriggerKind::Garble => faults.garble = true,
                TriggerKind::Silent => faults.silent += 1,
                TriggerKind::Busy(n) => faults.busy += n,
                TriggerKind::Truncate(n) => faults.truncate = Some(n),
                TriggerKind::DropPrompt => faults.drop_prompt = true,
            }
        }
        if faults.busy > 0 {
            faults.busy -= 1;
            *control.faults.lock().expect("fault lock") = faults;
            out.send(&model.busy_reply()).await?;
            continue;
        }
        if faults.silent > 0 {
            faults.silent -= 1;
            *control.faults.lock().expect("fault lock") = faults;
            continue;
        }
        // The faults taken now apply to this reply; the rest stay pending.
        let mut active = Faults {
            delay: faults.delay.take(),
            urc_mid: faults.urc_mid.take(),
            reset_mid: std::mem::take(&mut faults.reset_mid),
            reboot_after: std::mem::take(&mut faults.reboot_after),
            garble: std::mem::take(&mut faults.garble),
            truncate: faults.truncate.take(),
            drop_prompt: std::mem::take(&mut faults.drop_prompt),
            urc_before_prompt: None,
            ..Faults::default()
        };
        let script = model.command(&line);
        for (start, len) in model.take_waits() {
            control.account(start, len);
        }
        if script.iter().any(|s| matches!(s, Step::Prompt { .. })) {
            active.urc_before_prompt = faults.urc_before_prompt.take();
        }
        *control.faults.lock().expect("fault lock") = faults;
        let mut steps = Vec::new();
        let wait = options.latency + active.delay.unwrap_or_default();
        if !wait.is_zero() {
            steps.push(Step::Delay(wait));
        }
        steps.extend(apply_faults(script, &mut active));
        if active.reboot_after {
            steps.push(Step::Delay(Duration::from_millis(5)));
            steps.push(Step::Reboot);
        }
        state.active = active;
        state.sent_in_reply = 0;
        state.steps.extend(steps);
    }
    Ok(())
}

/// Rewrites a reply with the faults that apply to it.
fn apply_faults(script: Script, active: &mut Faults) -> Script {
    let mut out = Vec::with_capacity(script.len() + 2);
    let total = script.len();
    if active.reset_mid && total <= 1 {
        active.reset_mid = false;
        return vec![Step::Reboot];
    }
    for (i, step) in script.into_iter().enumerate() {
        match step {
            Step::Final(bytes) => {
                if let Some(urc) = active.urc_mid.take() {
                    out.push(Step::Send(format!("\r\n{urc}\r\n").into_bytes()));
                }
                out.push(Step::Final(bytes));
            }
            Step::Prompt { bytes, len } => {
                if let Some(urc) = active.urc_before_prompt.take() {
                    out.push(Step::Send(format!("{urc}\r\n").into_bytes()));
                }
                let bytes = if std::mem::take(&mut active.drop_prompt) {
                    tracing::info!("emulator: prompt dropped, still waiting for {len} bytes");
                    Vec::new()
                } else {
                    bytes
                };
                out.push(Step::Prompt { bytes, len });
            }
            other => out.push(other),
        }
        if active.reset_mid && i + 1 >= total.div_ceil(2) {
            active.reset_mid = false;
            out.push(Step::Reboot);
            return out;
        }
    }
    out
}

async fn play<M: Model, W: AsyncWrite + Unpin>(
    step: Step,
    model: &mut M,
    state: &mut RunnerState,
    out: &mut Output<'_, W>,
) -> std::io::Result<()> {
    match step {
        Step::Send(bytes) | Step::Final(bytes) => send_reply(bytes, state, out).await,
        Step::Prompt { bytes, len } => {
            send_reply(bytes, state, out).await?;
            if len == 0 {
                let script = model.payload(Vec::new());
                state.steps.extend(script);
            } else {
                state.awaiting_payload = Some(len);
            }
            Ok(())
        }
        Step::Delay(d) => {
            state.delay = Some((std::time::Instant::now(), d));
            state.waiting_until = Some(Instant::now() + d);
            Ok(())
        }
        Step::Await(a) => {
            state.awaiting = a.take();
            state.on_network = state.awaiting.is_some();
            Ok(())
        }
        Step::Reboot => {
            state.steps.clear();
            state.awaiting_payload = None;
            state.payload.clear();
            state.line.clear();
            let banner = model.reboot();
            out.wire.rate = out.wire.saved.unwrap_or(out.wire.power_on);
            out.wire.deaf_until = None;
            out.control.uart.lock().expect("uart lock").rate = out.wire.rate;
            if out.boot_time.is_zero() {
                return out.send(&banner).await;
            }
            state.booting = true;
            state.steps.push_back(Step::Delay(out.boot_time));
            state.steps.push_back(Step::Awake(banner));
            Ok(())
        }
        Step::Awake(banner) => {
            state.booting = false;
            state.line.clear();
            out.send(&banner).await
        }
        Step::SetRate { rate, settle } => {
            tracing::info!("emulator: UART now at {rate} baud");
            out.wire.rate = rate;
            // The switch happens as the `OK` leaves the wire; the settle time counts from there.
            let switched_at = out.wire.sent_until.unwrap_or_else(Instant::now);
            out.wire.deaf_until = (!settle.is_zero()).then(|| switched_at + settle);
            let mut log = out.control.uart.lock().expect("uart lock");
            log.rate = rate;
            log.switches.push(rate);
            Ok(())
        }
        Step::SaveRate(rate) => {
            out.wire.saved = Some(rate);
            out.control.uart.lock().expect("uart lock").saved = Some(rate);
            Ok(())
        }
    }
}

async fn send_reply<W: AsyncWrite + Unpin>(
    mut bytes: Vec<u8>,
    state: &mut RunnerState,
    out: &mut Output<'_, W>,
) -> std::io::Result<()> {
    if state.active.garble {
        for b in &mut bytes {
            *b ^= 0x20;
        }
    }
    if let Some(limit) = state.active.truncate {
        let room = limit.saturating_sub(state.sent_in_reply);
        bytes.truncate(room);
    }
    state.sent_in_reply += bytes.len();
    out.send(&bytes).await
}

/// `AT+SIMFAULT=...`: the emulator's own command for tests in another process. Not part of
/// any real firmware. Forms: `"busy",N` `"silent",N` `"delay",MS` `"urc_mid","LINE"`
/// `"urc_prompt","LINE"` `"reset_mid"` `"garble"` `"truncate",N` `"urc","LINE"` (sent after the
/// `OK`) `"hex","0D0AFF"` (raw bytes sent after the `OK`).
fn sim_fault_command(line: &str, control: &SimControl) -> Option<Script> {
    let args = line.strip_prefix("AT+SIMFAULT=")?;
    let params = crate::params(line);
    let unquote = super::unquote;
    let kind = params.first().map(|s| unquote(s)).unwrap_or_default();
    let num = params.get(1).and_then(|s| s.parse::<u64>().ok());
    let text = params.get(1).map(|s| unquote(s));
    let ok = b"\r\nOK\r\n".to_vec();
    let mut f = control.faults.lock().expect("fault lock");
    let mut script = vec![Step::Final(ok)];
    match (kind.as_str(), num, text) {
        ("busy", Some(n), _) => f.busy = n as u32,
        ("silent", Some(n), _) => f.silent = n as u32,
        // At most a day: a longer sleep would overflow the clock.
        ("delay", Some(ms), _) => f.delay = Some(Duration::from_millis(ms.min(86_400_000))),
        ("truncate", Some(n), _) => f.truncate = Some(n as usize),
        ("urc_mid", _, Some(t)) => f.urc_mid = Some(t),
        ("urc_prompt", _, Some(t)) => f.urc_before_prompt = Some(t),
        ("reset_mid", _, _) => f.reset_mid = true,
        ("garble", _, _) => f.garble = true,
        ("urc", _, Some(t)) => script.push(Step::Send(format!("\r\n{t}\r\n").into_bytes())),
        ("hex", _, Some(t)) => match decode_hex(&t) {
            Some(bytes) => script.push(Step::Send(bytes)),
            None => script = vec![Step::Final(b"\r\nERROR\r\n".to_vec())],
        },
        _ => {
            tracing::warn!("emulator: unknown fault `{args}`");
            script = vec![Step::Final(b"\r\nERROR\r\n".to_vec())];
        }
    }
    Some(script)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
