//! The credential transfer at a higher line rate (`--flash-baud`), after
//! `reference/uart-rate.md`: ESP-AT switches with `AT+UART_CUR` only (`AT+UART_DEF` and
//! `AT+UART=` are saved), Quectel and Luat with `AT+IPR` and never `AT&W`; the `OK` comes at
//! the old rate; the host then follows, waits the family's settle time, drops what arrived
//! meanwhile and confirms with `AT`.
//!
//! The invariant: a unit is never left where the host cannot reach it. The adapter is checked
//! (the driver reports the rate it really set) before the module is told; a confirmation that
//! fails sends the restore command at the new rate anyway (a link that loses only the module's
//! bytes still carries it) and goes back to the old rate; only a module that answers at
//! neither rate is an error, and then the line says that a restart restores the rate, which
//! was never saved.

use std::time::{Duration, Instant};

use crate::at::{Command, Engine, EngineError, Status};
use crate::error::{Code, Failure};
use crate::port::{LineRate, RateHandle};
use crate::profile::{Family, Profile};
use crate::provision::flow::{StepReport, StepResult};
use crate::units::FlashBaud;

/// Rates `auto` tries, fastest first: what common bridges carry reliably (the CP2102's top
/// AN205 entry is 921,600).
const AUTO_RATES: &[u32] = &[921_600, 460_800, 230_400];

/// How far a rate read back may be from the one asked for (ESP-AT reports the divided rate,
/// 115201 for 115200; drivers round to their divisors).
const TOLERANCE: f64 = 0.03;

/// How the step of a switch that had to come back begins.
const FELL_BACK: &str = "no answer at";

/// Whether the flash stage tried a faster rate and had to come back without it.
pub(crate) fn fell_back(report: &super::Report) -> bool {
    report
        .stages
        .iter()
        .filter(|s| s.stage == super::Stage::Flash)
        .flat_map(|s| &s.steps)
        .any(|s| {
            s.name == "line rate"
                && s.result == StepResult::Warning
                && s.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(FELL_BACK))
        })
}

/// How long a restore command sent blind is given to be read and carried out before the port
/// changes rate under it.
const BLIND_RESTORE: Duration = Duration::from_millis(200);

/// How long a confirming `AT` may take.
const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

/// A switch in force: what to send to undo it.
pub(crate) struct Switched {
    handle: RateHandle,
    old: u32,
    new: u32,
    restore: String,
    settle: Duration,
}

/// Switches the module and the port to a faster rate when `want` asks for one and it can be
/// done safely; `bytes` is what the transfer will move (for `auto`). Returns the switch in
/// force, if any, and a step saying what was decided. An `Err` only when the module no longer
/// answers at either rate.
pub(crate) async fn up(
    engine: &Engine,
    profile: &Profile,
    want: FlashBaud,
    line: &LineRate,
    bytes: usize,
) -> Result<(Option<Switched>, Option<StepReport>), Failure> {
    let t = Instant::now();
    let step = |result: StepResult, detail: String| StepReport {
        name: "line rate".into(),
        result,
        ms: t.elapsed().as_millis() as u64,
        detail: Some(detail),
    };
    // Asked for explicitly, a switch not made is a warning; under `auto` it is a decision.
    let stay = |why: String| {
        let result = if matches!(want, FlashBaud::Rate(_)) {
            tracing::warn!("--flash-baud {want}: not switched: {why}");
            StepResult::Warning
        } else {
            StepResult::Skipped
        };
        Ok((None, Some(step(result, format!("not switched: {why}")))))
    };
    if want == FlashBaud::Off {
        return Ok((None, None));
    }
    let handle = match line {
        LineRate::Uart(h) => h.clone(),
        LineRate::Fixed(why) => return stay(why.clone()),
    };
    let old = match handle.get() {
        Ok(r) => r,
        Err(e) => return stay(format!("the port's rate cannot be read ({e})")),
    };
    let settle = profile.serial.rate_settle.0;
    // `auto` must never cost time: when even the fastest rate would not pay, the module is
    // not even asked.
    if want == FlashBaud::Auto
        && let Some(why) = not_worth(bytes, old, AUTO_RATES[0], settle)
    {
        return stay(why);
    }
    let module = match ask_module(engine, profile.family).await? {
        Ok(m) => m,
        Err(why) => return stay(why),
    };
    let new = match want {
        FlashBaud::Rate(n) if !module.offers(n) => {
            return stay(format!(
                "the module does not offer {n} baud ({})",
                module.offer
            ));
        }
        FlashBaud::Rate(n) => n,
        _ => match AUTO_RATES.iter().copied().find(|&r| module.offers(r)) {
            Some(n) => n,
            None => return stay(format!("no rate above {old} offered ({})", module.offer)),
        },
    };
    if new <= old {
        return stay(format!("{new} baud is not faster than {old}"));
    }
    if want == FlashBaud::Auto
        && let Some(why) = not_worth(bytes, old, new, settle)
    {
        return stay(why);
    }
    // The adapter first: a driver that cannot do the rate says so in the rate it reports.
    let reported = handle.set(new);
    let back = handle.set(old);
    match (reported, back) {
        (Ok(r), Ok(_)) if close(r, new) => {}
        (Ok(r), Ok(_)) => {
            return stay(format!("the adapter runs at {r} baud when asked for {new}"));
        }
        (Err(e), _) | (_, Err(e)) => {
            let _ = handle.set(old);
            return stay(format!("the adapter refuses {new} baud ({e})"));
        }
    }
    let (switch, restore) = module.commands(new, module.restore_to.unwrap_or(old));
    let r = engine
        .run(Command::new(&switch).timeout(2 * CONFIRM_WITHIN))
        .await?;
    // Only a refusal means the module stayed: an `OK` lost or garbled on the way may still
    // have switched it, and then only the new rate reaches it.
    if matches!(r.status, Status::Error { .. }) {
        return stay(format!("{switch}: {}", r.summary()));
    }
    let switched = Switched {
        handle,
        old,
        new,
        restore,
        settle,
    };
    if follow(engine, &switched.handle, new, settle).await? {
        let detail = format!("{old} → {new} baud");
        return Ok((Some(switched), Some(step(StepResult::Ok, detail))));
    }
    // The module took the switch but does not answer at the new rate: undo it blind (a link
    // that loses only the module's bytes still carries the command) and go back.
    tracing::warn!("the module does not answer at {new} baud; going back to {old}");
    if back_blind(engine, &switched).await? {
        let why = format!("{FELL_BACK} {new} baud over this adapter; back at {old}");
        tracing::warn!("--flash-baud {want}: {why}");
        return Ok((None, Some(step(StepResult::Warning, why))));
    }
    Err(unreachable(new, old))
}

/// Switches back to the rate the session began at; the module must answer there. After a
/// transfer that failed (`transfer_ok` false: the module may have restarted, which brings it
/// back to its old rate) the old rate is tried first.
pub(crate) async fn down(
    engine: &Engine,
    s: Switched,
    transfer_ok: bool,
) -> Result<StepReport, Failure> {
    let t = Instant::now();
    let done = |ms: u128| StepReport {
        name: "line rate back".into(),
        result: StepResult::Ok,
        ms: ms as u64,
        detail: Some(format!("{} → {} baud", s.new, s.old)),
    };
    if !transfer_ok && follow(engine, &s.handle, s.old, s.settle).await? {
        return Ok(done(t.elapsed().as_millis()));
    }
    if !transfer_ok {
        set(&s.handle, s.new)?;
    }
    // Its OK comes at the new rate; whatever it says, the confirmation at the old rate tells.
    let _ = engine.run(Command::new(&s.restore)).await?;
    if follow(engine, &s.handle, s.old, s.settle).await? || back_blind(engine, &s).await? {
        return Ok(done(t.elapsed().as_millis()));
    }
    Err(unreachable(s.new, s.old))
}

/// Sends the restore command at the new rate without hearing the answer, then goes back to
/// the old rate: whether the module answers there.
async fn back_blind(engine: &Engine, s: &Switched) -> Result<bool, Failure> {
    set(&s.handle, s.new)?;
    let why = format!(
        "no answer at {} baud: restoring {} without hearing the module",
        s.new, s.old
    );
    engine.send_unanswered(&s.restore, &why).await?;
    // The command must leave the wire and be carried out before the port changes under it.
    tokio::time::sleep(s.settle.max(BLIND_RESTORE)).await;
    follow(engine, &s.handle, s.old, s.settle).await
}

fn unreachable(new: u32, old: u32) -> Failure {
    Failure::new(
        Code::NoAnswer,
        format!(
            "after switching to {new} baud the module answers at neither {new} nor {old}; power-cycle it (atprov never saves the rate: it should start at {old} again) and run without --flash-baud or with a lower rate"
        ),
    )
}

fn set(handle: &RateHandle, rate: u32) -> Result<(), Failure> {
    handle.set(rate).map(|_| ()).map_err(|e| {
        Failure::new(
            Code::PortLost,
            format!("cannot set the port to {rate} baud: {e}"),
        )
    })
}

/// Sets the port to `rate`, waits the settle time, drops what waits in the port and asks
/// `AT`: whether the module answers (a module the engine declares lost does not).
async fn follow(
    engine: &Engine,
    handle: &RateHandle,
    rate: u32,
    settle: Duration,
) -> Result<bool, Failure> {
    set(handle, rate)?;
    tokio::time::sleep(settle_wait(settle)).await;
    handle.discard_input();
    match engine.run(Command::new("AT").timeout(CONFIRM_WITHIN)).await {
        Ok(r) => Ok(r.is_ok()),
        Err(EngineError::Lost { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// What the module said it can do.
struct ModuleRates {
    family: Family,
    /// ESP-AT's data bits, stop bits, parity and flow control, kept as they are.
    frame: String,
    /// The rates offered, when the module lists them.
    list: Option<Vec<u32>>,
    /// The same, as said to a person.
    offer: String,
    /// The rate to go back to when the module reports its own (`AT+IPR?`; 0 is autobaud).
    restore_to: Option<u32>,
}

impl ModuleRates {
    fn offers(&self, rate: u32) -> bool {
        match (&self.list, self.family) {
            (Some(list), _) => list.contains(&rate),
            // ESP32 and ESP32-C3 ESP-AT: 80 to 5,000,000.
            (None, Family::EspAt) => (80..=5_000_000).contains(&rate),
            // Not listed: try, the module's ERROR tells.
            (None, _) => true,
        }
    }

    /// The command that switches to `new`, and the one that goes back to `old`.
    fn commands(&self, new: u32, old: u32) -> (String, String) {
        match self.family {
            Family::EspAt => (
                format!("AT+UART_CUR={new},{}", self.frame),
                format!("AT+UART_CUR={old},{}", self.frame),
            ),
            Family::Quectel | Family::Luat => (format!("AT+IPR={new}"), format!("AT+IPR={old}")),
        }
    }
}

/// Asks the module which rates it takes (`Ok(Err(why))`: it cannot switch).
async fn ask_module(
    engine: &Engine,
    family: Family,
) -> Result<Result<ModuleRates, String>, Failure> {
    Ok(match family {
        Family::EspAt => {
            let r = engine.run(Command::new("AT+UART_CUR?")).await?;
            let value = r.value("+UART_CUR:").filter(|_| r.is_ok());
            let frame = value.and_then(|v| {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                (parts.len() == 5 && parts.iter().all(|p| p.parse::<u32>().is_ok()))
                    .then(|| parts[1..].join(","))
            });
            match frame {
                Some(frame) => Ok(ModuleRates {
                    family,
                    frame,
                    list: None,
                    offer: "80 to 5,000,000 baud".into(),
                    restore_to: None,
                }),
                None => Err(format!(
                    "the module does not report its UART (AT+UART_CUR?: {})",
                    r.summary()
                )),
            }
        }
        Family::Quectel | Family::Luat => {
            let r = engine.run(Command::new("AT+IPR=?")).await?;
            let list: Option<Vec<u32>> = r.is_ok().then(|| {
                r.info
                    .iter()
                    .filter(|l| l.starts_with("+IPR:"))
                    .flat_map(|l| l["+IPR:".len()..].split(|c: char| !c.is_ascii_digit()))
                    .filter_map(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .collect()
            });
            let list = list.filter(|l| !l.is_empty());
            let offer = match &list {
                Some(l) => format!(
                    "it offers {}",
                    l.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                ),
                None => "it does not list its rates".into(),
            };
            // What it is set to now, autobaud (0) included, is what it goes back to.
            let now = engine.run(Command::new("AT+IPR?")).await?;
            let restore_to = now
                .value("+IPR:")
                .filter(|_| now.is_ok())
                .and_then(|v| v.trim().parse().ok());
            Ok(ModuleRates {
                family,
                frame: String::new(),
                list,
                offer,
                restore_to,
            })
        }
    })
}

/// Why switching from `old` to `new` for `bytes` would not pay, if it would not.
fn not_worth(bytes: usize, old: u32, new: u32, settle: Duration) -> Option<String> {
    let gain = wire(bytes, old).saturating_sub(wire(bytes, new));
    let cost = switch_cost(old, settle);
    (gain <= cost).then(|| {
        format!(
            "{bytes} bytes gain {} ms at {new} baud, the switch costs {} ms",
            gain.as_millis(),
            cost.as_millis()
        )
    })
}

/// Time `bytes` take on the wire at `rate` (10 bits a byte).
fn wire(bytes: usize, rate: u32) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 10.0 / f64::from(rate))
}

/// What a switch up and back costs: the wait after each switch, and six short commands (the
/// query, switch, confirm, restore, confirm, and one for luck) at the old rate with 10 ms each
/// for the module and a USB adapter's latency.
fn switch_cost(old: u32, settle: Duration) -> Duration {
    2 * settle_wait(settle) + 6 * (wire(40, old) + Duration::from_millis(10))
}

/// How long the host waits after a switch: the settle time counts from the module's switch,
/// which the host sees only late (its `OK` crossed the adapter and the engine first), so a
/// margin more.
fn settle_wait(settle: Duration) -> Duration {
    settle + settle / 10 + Duration::from_millis(2)
}

fn close(got: u32, want: u32) -> bool {
    (f64::from(got) - f64::from(want)).abs() <= TOLERANCE * f64::from(want)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_pays_from_the_sizes_the_reference_derives() {
        // reference/uart-rate.md §6: at 921600 a 1.0 s overhead (Quectel, 2 × 500 ms) needs
        // about 13 KB, a 0.1 s one (2 × 50 ms) about 1.3 KB; the margins and the commands
        // around each switch put the break-even a little higher.
        let gain = |b| wire(b, 115_200) - wire(b, 921_600);
        let quectel = switch_cost(115_200, Duration::from_millis(500));
        let fifty = switch_cost(115_200, Duration::from_millis(50));
        assert!(gain(13_000) < quectel && gain(16_000) > quectel);
        assert!(gain(1_300) < fifty && gain(3_200) > fifty);
    }

    #[test]
    fn read_back_rates_within_tolerance() {
        assert!(close(115_201, 115_200));
        assert!(close(921_659, 921_600));
        assert!(!close(1_000_000, 2_000_000));
    }
}
