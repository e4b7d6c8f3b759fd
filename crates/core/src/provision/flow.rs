//! Running a profile's flows on a module: each [`Step`] rendered from the variables, sent
//! through the engine, its captures stored, polled or retried as the profile says, and a failure
//! turned into one line with the exit code its kind implies. The flow runner knows no module
//! family; profiles say what to send and what it means.

use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::at::{Command, Engine, Response, Status, Urc};
use crate::error::{Code, Failure};
use crate::profile::{Action, FailKind, Profile, Step, Vars};

/// A module being worked on: its engine, its profile and the variables gathered so far.
pub struct Device {
    /// The engine on the module's port.
    pub engine: Engine,
    /// The module's profile.
    pub profile: Profile,
    /// Everything known so far: the job's values and what the module reported.
    pub vars: Vars,
    urcs: broadcast::Receiver<Urc>,
    /// The profile's grammar, to recognise boot banners among URCs.
    grammar: crate::at::Grammar,
    /// URCs received and not yet consumed by a wait.
    backlog: Vec<Urc>,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepResult {
    /// It did what it should.
    Ok,
    /// Its `when` did not hold.
    Skipped,
    /// It failed, and so did the flow.
    Failed,
    /// An optional step failed; the flow went on.
    Warning,
}

/// How one step went, for reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// How it ended.
    pub result: StepResult,
    /// How long it took.
    pub ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// What went wrong, or what was done.
    pub detail: Option<String>,
}

impl Device {
    /// A module with no variables yet.
    pub fn new(engine: Engine, profile: Profile) -> Device {
        let urcs = engine.subscribe();
        Device {
            grammar: profile.engine_grammar(),
            engine,
            profile,
            vars: Vars::default(),
            urcs,
            backlog: Vec::new(),
        }
    }

    /// Runs a flow; `on_step` hears the name of each step as it starts.
    pub async fn run_flow(
        &mut self,
        steps: &[Step],
        on_step: &mut (dyn FnMut(&str) + Send),
    ) -> Result<Vec<StepReport>, (Failure, Vec<StepReport>)> {
        let mut reports = Vec::new();
        let mut previous_start = Instant::now();
        for step in steps {
            let started = Instant::now();
            let report = |result, detail| StepReport {
                name: step.name.clone(),
                result,
                ms: started.elapsed().as_millis() as u64,
                detail,
            };
            if let Some(cond) = &step.when {
                match cond.eval(&self.vars) {
                    Ok(true) => {}
                    Ok(false) => {
                        reports.push(report(StepResult::Skipped, None));
                        continue;
                    }
                    Err(e) => {
                        let f = Failure::usage(format!(
                            "profile {}: step `{}`: {e}",
                            self.profile.name, step.name
                        ));
                        return Err((f, reports));
                    }
                }
            }
            if let Some(banner) = self.restarted() {
                let f = Failure::new(
                    Code::ModuleReset,
                    format!(
                        "{}: the module restarted (`{banner}`) before this step and lost its session (Wi-Fi, MQTT); check its power supply, then run the command again",
                        step.name
                    ),
                );
                return Err((f, reports));
            }
            on_step(&step.name);
            match self.run_step(step).await {
                Ok(()) => {
                    if let Some(var) = &step.record_ms {
                        let ms = previous_start.elapsed().as_millis();
                        self.vars.set_text(var.clone(), ms.to_string());
                    }
                    reports.push(report(StepResult::Ok, None));
                }
                // An optional step may fail; a lost port or a restart ends the flow all the same.
                Err(f)
                    if step.optional && !matches!(f.code, Code::PortLost | Code::ModuleReset) =>
                {
                    tracing::warn!("{} (optional step, going on)", f.message);
                    reports.push(report(StepResult::Warning, Some(f.message)));
                }
                Err(f) => {
                    reports.push(report(StepResult::Failed, Some(f.message.clone())));
                    return Err((f, reports));
                }
            }
            previous_start = started;
        }
        Ok(reports)
    }

    async fn run_step(&mut self, step: &Step) -> Result<(), Failure> {
        match &step.action {
            Action::Send { .. } => self.send_step(step).await,
            Action::WaitUrc { prefix, payload } => {
                let prefix = self.render(step, prefix)?.text;
                let payload = match payload {
                    Some(p) => Some(self.render(step, p)?.text.into_bytes()),
                    None => None,
                };
                let timeout = self.timeout(step)?;
                if let Some(urc) = self.wait_urc(&prefix, payload.as_deref(), timeout).await {
                    let body = urc.payload.as_deref().map(crate::at::text::escape);
                    let lines: Vec<&str> = std::iter::once(urc.line.as_str())
                        .chain(body.as_deref())
                        .collect();
                    self.capture_lines(step, &lines);
                    Ok(())
                } else {
                    let what = format!("no `{prefix}…` within {}", show(timeout));
                    Err(self.explain(step, None, &what, step.fail))
                }
            }
        }
    }

    async fn send_step(&mut self, step: &Step) -> Result<(), Failure> {
        let Action::Send { line, payload } = &step.action else {
            unreachable!("send_step is only called for send steps");
        };
        let poll_deadline = match &step.poll {
            Some(p) => Some(
                Instant::now()
                    + match &p.within {
                        Some(w) => w.resolve(&self.vars).map_err(|e| self.bad(step, &e))?,
                        None => Duration::from_secs(30),
                    },
            ),
            None => None,
        };
        let mut attempt = 0;
        loop {
            let line = self.render(step, line)?;
            let mut cmd = Command::new(line.text.clone()).timeout(self.timeout(step)?);
            if line.secret {
                cmd = cmd.shown_as(line.shown.clone());
            }
            if let Some(p) = payload {
                let p = self.render(step, p)?;
                let secret = p.secret;
                cmd = cmd.payload(p.text.into_bytes());
                if secret {
                    cmd = cmd.secret_payload();
                }
            }
            if step.secret {
                cmd = cmd.secret_response();
            }
            if !step.completes_on.is_empty() {
                let prefixes: Vec<&str> = step.completes_on.iter().map(String::as_str).collect();
                cmd = cmd.completes_on(&prefixes, self.timeout(step)?);
            }
            let reboots = cmd.reboots;
            let resp = self.engine.run(cmd).await?;
            self.backlog.extend(resp.urcs.iter().cloned());
            if reboots && resp.is_ok() {
                // The restart was the point: its banner is no news.
                self.forget_restarts();
            }
            if !resp.is_ok() {
                let retryable = matches!(resp.status, Status::Error { .. } | Status::Busy);
                if retryable && attempt < step.retries {
                    attempt += 1;
                    tokio::time::sleep(step.retry_delay).await;
                    continue;
                }
                if let Some(f) = self.after_no_answer(step, &resp).await {
                    return Err(f);
                }
                return Err(self.explain(step, Some(&resp), &resp.summary(), step.fail));
            }
            // A restart seen while the command ran (it still answered after booting): the
            // module lost its session all the same.
            if let Some(banner) = resp
                .urcs
                .iter()
                .find(|u| self.grammar.is_reset_sign(&u.line) && !resp_expected_reboot(&resp))
            {
                return Err(Failure::new(
                    Code::ModuleReset,
                    format!(
                        "{}: the module restarted (`{}`) during `{}` and lost its session; check its power supply, then run the command again",
                        step.name, banner.line, resp.command
                    ),
                ));
            }
            self.capture(step, &resp);
            if let Some(expect) = &step.expect {
                let want = self.render(step, expect)?.text;
                let lines = || {
                    resp.info
                        .iter()
                        .chain(resp.completion.iter())
                        .chain(resp.urcs.iter().map(|u| &u.line))
                };
                if !lines().any(|l| l.starts_with(&want)) {
                    let got = lines()
                        .find(|l| {
                            let head = want.split(':').next().unwrap_or(&want);
                            l.starts_with(head)
                        })
                        .map_or("nothing".to_string(), |l| format!("`{l}`"));
                    let what = format!("{got} instead of `{want}`");
                    return Err(self.explain(step, Some(&resp), &what, step.fail));
                }
            }
            let Some(poll) = &step.poll else {
                return Ok(());
            };
            let done = poll
                .until
                .eval(&self.vars)
                .map_err(|e| self.bad(step, &e))?;
            if done {
                return Ok(());
            }
            if let Some(stop) = &poll.stop_if
                && stop.eval(&self.vars).map_err(|e| self.bad(step, &e))?
            {
                let what = format!("`{}`", stop.0.shown(&self.vars));
                return Err(self.explain(step, Some(&resp), &what, step.fail));
            }
            let deadline = poll_deadline.expect("set when polling");
            let now = Instant::now();
            if now >= deadline {
                let shown = poll.until.0.shown(&self.vars);
                let what = format!("still `{shown}` is false");
                return Err(self.explain(step, Some(&resp), &what, step.fail));
            }
            let pause = poll.every.min(deadline - now);
            match &poll.or_urc {
                // A completing URC ends the pause early; the command then runs once more to
                // capture the new state.
                Some(urc) => {
                    self.wait_urc(urc, None, pause).await;
                }
                None => tokio::time::sleep(pause).await,
            }
        }
    }

    fn timeout(&self, step: &Step) -> Result<Duration, Failure> {
        match &step.timeout {
            Some(t) => t.resolve(&self.vars).map_err(|e| self.bad(step, &e)),
            None => Ok(self.profile.serial.timeout.0),
        }
    }

    fn render(
        &self,
        step: &Step,
        t: &crate::profile::Template,
    ) -> Result<crate::profile::template::Rendered, Failure> {
        t.render(&self.vars).map_err(|e| self.bad(step, &e))
    }

    /// A step that cannot run because a value is missing or malformed.
    fn bad(&self, step: &Step, e: &crate::profile::TemplateError) -> Failure {
        let hint = if matches!(e, crate::profile::TemplateError::Unset(_)) {
            " (give it in the job file, a flag or --set)"
        } else {
            ""
        };
        Failure::usage(format!(
            "{}: {e}{hint} [profile {}]",
            step.name, self.profile.name
        ))
    }

    fn capture(&mut self, step: &Step, resp: &Response) {
        let lines: Vec<&str> = resp
            .info
            .iter()
            .chain(resp.completion.iter())
            .chain(resp.urcs.iter().map(|u| &u.line))
            .map(String::as_str)
            .collect();
        self.capture_lines(step, &lines);
    }

    /// Sets the variables a step's capture patterns find in `lines` (secret when the step
    /// says its response is).
    fn capture_lines(&mut self, step: &Step, lines: &[&str]) {
        for line in lines {
            for p in &step.capture {
                if let Some(values) = p.captures(line) {
                    for (k, v) in values {
                        let v = v.trim_matches('"').to_string();
                        if step.secret {
                            self.vars.set(k, crate::profile::Value::secret(v));
                        } else {
                            self.vars.set_text(k, v);
                        }
                    }
                }
            }
        }
    }

    /// Waits for a URC starting with `prefix` (and carrying `payload`, chunks joined); returns
    /// the one that matched.
    async fn wait_urc(
        &mut self,
        prefix: &str,
        payload: Option<&[u8]>,
        within: Duration,
    ) -> Option<Urc> {
        let deadline = tokio::time::Instant::now() + within;
        let mut joined: Vec<u8> = Vec::new();
        let mut i = 0;
        loop {
            while i < self.backlog.len() {
                let urc = &self.backlog[i];
                if urc.line.starts_with(prefix) {
                    let matched = match payload {
                        None => true,
                        Some(want) => {
                            let chunk = urc.payload.as_deref().unwrap_or_default();
                            joined.extend_from_slice(chunk);
                            if !want.starts_with(&joined) {
                                joined.clear();
                                // A different message; this chunk may start ours.
                                if want.starts_with(chunk) {
                                    joined.extend_from_slice(chunk);
                                }
                            }
                            joined == want
                        }
                    };
                    if matched {
                        let urc = self.backlog[i].clone();
                        self.backlog.drain(..=i);
                        return Some(urc);
                    }
                }
                i += 1;
            }
            match tokio::time::timeout_at(deadline, self.urcs.recv()).await {
                Err(_) => return None,
                Ok(Ok(urc)) => self.backlog.push(urc),
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!("{n} unsolicited messages were missed");
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            }
        }
    }

    /// After a command that got no answer (or a lost prompt): ask the module `AT` (the engine
    /// first resynchronises, patiently for the boot window) to tell a restart (exit 9) from a
    /// module that merely did not answer, and to say whether the module answers again.
    async fn after_no_answer(&mut self, step: &Step, resp: &Response) -> Option<Failure> {
        let timed_out = matches!(resp.status, Status::Timeout { .. } | Status::Reset);
        if !timed_out
            || resp.status
                == (Status::Timeout {
                    phase: crate::at::Phase::Completion,
                })
        {
            return None;
        }
        let state = if self.engine.answers_at().await {
            "it answers AT again"
        } else {
            "it does not answer AT"
        };
        if let Some(banner) = self
            .restarted()
            .or_else(|| (resp.status == Status::Reset).then(|| "a boot banner".to_string()))
        {
            return Some(Failure::new(
                Code::ModuleReset,
                format!(
                    "{}: the module restarted (`{banner}`) during `{}` and lost its session; {state}; check its power supply, then run the command again",
                    step.name, resp.command
                ),
            ));
        }
        if resp.status
            == (Status::Timeout {
                phase: crate::at::Phase::Prompt,
            })
        {
            return Some(Failure::new(
                Code::NoAnswer,
                format!(
                    "{}: `{}`: the module never asked for the data (no prompt within {:.1?}); atprov sent the announced length as filler so that it leaves its data phase; {state}; run the command again to write it properly",
                    step.name, resp.command, resp.elapsed
                ),
            ));
        }
        None
    }

    /// A boot banner received since the flow began (the module reset between commands).
    fn restarted(&mut self) -> Option<String> {
        while let Ok(u) = self.urcs.try_recv() {
            self.backlog.push(u);
        }
        let i = self
            .backlog
            .iter()
            .position(|u| self.grammar.is_reset_sign(&u.line))?;
        Some(self.backlog.remove(i).line)
    }

    /// Forgets boot banners seen so far (a module that just powered up is no surprise before
    /// init).
    pub fn forget_restarts(&mut self) {
        while self.restarted().is_some() {}
    }

    /// Forgets URCs that arrived so far (before a flow whose waits must see only new ones).
    pub fn clear_backlog(&mut self) {
        while let Ok(u) = self.urcs.try_recv() {
            drop(u);
        }
        self.backlog.clear();
    }

    /// One line for a failed step: the profile's explanation when one matches, the hint
    /// otherwise, and what the module said as evidence.
    fn explain(&self, step: &Step, resp: Option<&Response>, what: &str, kind: FailKind) -> Failure {
        if let Some(resp) = resp {
            match resp.status {
                Status::Reset => {
                    return Failure::new(
                        Code::ModuleReset,
                        format!(
                            "{}: the module restarted during `{}` and lost its session; check its power supply, then run the command again",
                            step.name, resp.command
                        ),
                    );
                }
                // OK came, the message that completes the command did not: the step's own
                // explanation (the server never answered), not a dead module.
                Status::Timeout {
                    phase: crate::at::Phase::Completion,
                } => {}
                // The module's own state, not the network's or the cloud's.
                Status::Busy | Status::WantsData => {
                    return Failure::new(Code::AtError, format!("{}: {what}", step.name));
                }
                Status::Timeout { .. } => {
                    return Failure::new(
                        Code::NoAnswer,
                        format!(
                            "{}: {what}; is the module powered, on this port and at this baud rate?",
                            step.name
                        ),
                    );
                }
                _ => {}
            }
        }
        let lines: Vec<&str> = resp
            .map(|r| {
                r.info
                    .iter()
                    .chain(&r.details)
                    .chain(r.completion.iter())
                    .chain(r.urcs.iter().map(|u| &u.line))
                    .chain(r.final_line.iter())
                    .map(String::as_str)
                    .collect()
            })
            .unwrap_or_default();
        let explained = step
            .explain
            .iter()
            .find(|e| lines.iter().any(|l| l.starts_with(e.matches.as_str())));
        let (message, kind) = match explained {
            Some(e) => (e.say.shown(&self.vars), e.fail.unwrap_or(kind)),
            None => match &step.hint {
                Some(h) => (h.shown(&self.vars), kind),
                None => (String::new(), kind),
            },
        };
        let code = match kind {
            FailKind::At => Code::AtError,
            FailKind::Network => Code::Network,
            FailKind::Connect => Code::Connect,
            FailKind::Smoke => Code::Smoke,
        };
        let text = if message.is_empty() {
            format!("{}: {what}", step.name)
        } else {
            format!("{}: {message} [{what}]", step.name)
        };
        Failure::new(code, text)
    }
}

fn show(d: Duration) -> String {
    if d.as_millis().is_multiple_of(1000) {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Whether the command was one that restarts the module on purpose (`AT+RST`).
fn resp_expected_reboot(resp: &Response) -> bool {
    Command::new(resp.command.clone()).reboots
}
