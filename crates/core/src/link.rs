//! Opening a port and starting the engine on it, with a transcript file when asked: what every
//! command that talks to a device, and every factory station, shares.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::at::{Engine, EngineConfig, TraceEvent};
use crate::error::Failure;
use crate::port::{self, Flow, Lines, Selector, SerialOptions};
use crate::transcript::TranscriptWriter;

/// Where the module is and how to talk to it.
#[derive(Debug, Clone, Default)]
pub struct PortArgs {
    /// Port selector: /dev/ttyUSB0, COM7, usb:VID:PID[:SERIAL], tcp://HOST:PORT, sim:NAME,
    /// replay:FILE.
    pub port: String,
    /// Baud rate (default: the profile's).
    pub baud: Option<u32>,
    /// Flow control.
    pub flow: Flow,
    /// DTR/RTS after opening.
    pub lines: Lines,
    /// Write the session to this file in the transcript format (secrets redacted; replaced,
    /// readable by its owner only).
    pub transcript: Option<PathBuf>,
}

/// An engine on an open port, and the task writing the transcript.
pub struct Link {
    /// The engine on the port.
    pub engine: Engine,
    /// The engine's task (it ends when every handle is dropped).
    pub engine_task: tokio::task::JoinHandle<()>,
    /// The task writing the transcript, if one was asked for.
    pub trace_task: Option<tokio::task::JoinHandle<()>>,
    /// What can be done with the port's line rate.
    pub rate: port::LineRate,
}

impl PortArgs {
    /// The parsed selector.
    pub fn selector(&self) -> Result<Selector, Failure> {
        Ok(Selector::parse(&self.port)?)
    }

    /// Opens the port and starts the engine; `observer` also receives every trace event.
    pub async fn open(
        &self,
        observer: Option<mpsc::UnboundedSender<TraceEvent>>,
    ) -> Result<Link, Failure> {
        self.open_with(observer, 115_200, EngineConfig::default())
            .await
    }

    /// [`PortArgs::open`] with a profile's default baud rate and engine settings.
    pub async fn open_with(
        &self,
        observer: Option<mpsc::UnboundedSender<TraceEvent>>,
        default_baud: u32,
        config: EngineConfig,
    ) -> Result<Link, Failure> {
        let selector = self.selector()?;
        let options = SerialOptions {
            baud: self.baud.unwrap_or(default_baud),
            flow: self.flow,
            lines: self.lines,
        };
        let (port, rate) = port::open_line(&selector, &options).await?;
        let mut writer = match &self.transcript {
            None => None,
            Some(path) => {
                let file = crate::files::create_private(path).map_err(|e| {
                    Failure::usage(format!("cannot write transcript {}: {e}", path.display()))
                })?;
                let now = time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                let header = vec![
                    format!("source: atprov {} session", env!("CARGO_PKG_VERSION")),
                    format!("port: {selector}"),
                    format!("started: {now}"),
                    "timestamps: #t=<seconds since start> before each host line".to_string(),
                ];
                Some(
                    TranscriptWriter::new(std::io::BufWriter::new(file), &header).map_err(|e| {
                        Failure::usage(format!("cannot write transcript {}: {e}", path.display()))
                    })?,
                )
            }
        };
        let (trace, trace_task) = if writer.is_some() || observer.is_some() {
            let (tx, mut rx) = mpsc::unbounded_channel::<TraceEvent>();
            let task = tokio::spawn(async move {
                while let Some(ev) = rx.recv().await {
                    if let Some(w) = writer.as_mut()
                        && let Err(e) = w.write(&ev)
                    {
                        tracing::error!("transcript: {e}");
                        writer = None;
                    }
                    if let Some(o) = &observer {
                        let _ = o.send(ev);
                    }
                }
            });
            (Some(tx), Some(task))
        } else {
            (None, None)
        };
        let (engine, engine_task) = Engine::start(port, config, trace);
        Ok(Link {
            engine,
            engine_task,
            trace_task,
            rate,
        })
    }
}

impl Link {
    /// Stops the engine and waits until the transcript is complete.
    pub async fn close(self) {
        drop(self.engine);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.engine_task).await;
        if let Some(t) = self.trace_task {
            let _ = t.await;
        }
    }
}
