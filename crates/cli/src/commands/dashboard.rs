//! `atprov factory dashboard --journal FILE|URL [--listen ADDR]`: one read-only page of the line
//! for a supervisor, live through server-sent events, and `GET /api/summary` as JSON for an
//! MES. Loopback by default; bound elsewhere it needs `--token`, asked of every request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::error::{Code, Failure};
use crate::factory::dashboard::{self, Summary};
use crate::factory::journal::{Journal, open_existing};

#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// The journal the line writes: a SQLite file or postgresql://USER@HOST:PORT/DB.
    #[arg(long, value_name = "FILE|URL")]
    pub journal: String,
    /// Address to serve on; anything but loopback needs --token.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A token every request must carry (`?token=` or `Authorization: Bearer`); required
    /// when --listen is not a loopback address.
    #[arg(
        long,
        env = "ATPROV_DASHBOARD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// How often the journal is read for changes.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = crate::units::parse_timeout)]
    pub every: Duration,
}

struct Shared {
    /// Opened once; requests read it when they come.
    journal: Arc<dyn Journal>,
    token: Option<String>,
    /// The latest summary (or why the journal could not be read), made by one poller for
    /// every event stream.
    latest: tokio::sync::watch::Receiver<Result<Summary, String>>,
}

#[derive(serde::Deserialize)]
struct Params {
    token: Option<String>,
    /// End the event stream after this many events (a browser test's finite stream).
    limit: Option<u32>,
}

pub async fn run(args: DashboardArgs) -> Result<(), Failure> {
    if !args.listen.ip().is_loopback() && args.token.is_none() {
        return Err(Failure::usage(format!(
            "--listen {}: a dashboard reachable from other machines needs --token (or ATPROV_DASHBOARD_TOKEN)",
            args.listen
        )));
    }
    // The journal is opened once; one that cannot be read is refused before anything is
    // served.
    let location = super::factory::journal_location(&args.journal)?;
    let journal = tokio::task::spawn_blocking(move || open_existing(&location))
        .await
        .map_err(|e| Failure::new(Code::Internal, e.to_string()))?
        .map_err(|e| Failure::new(Code::Journal, e.to_string()))?;
    let first = summary(&journal).await?;
    let (tx, latest) = tokio::sync::watch::channel(Ok(first));
    tokio::spawn(poll(journal.clone(), args.every, tx));
    let shared = Arc::new(Shared {
        journal,
        token: args.token.clone(),
        latest,
    });
    let app = axum::Router::new()
        .route("/", get(page))
        .route("/api/summary", get(api_summary))
        .route("/events", get(events))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            Failure::usage(format!(
                "--listen {}: cannot listen there: {e}",
                args.listen
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(Code::Internal, e.to_string()))?;
    // The one line a script waits for (the port, when 0 was asked for).
    println!("dashboard on http://{local}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Failure::new(Code::Internal, format!("dashboard: {e}")))
}

/// Reads the journal every `every` and publishes the summary, until nobody listens.
async fn poll(
    journal: Arc<dyn Journal>,
    every: Duration,
    tx: tokio::sync::watch::Sender<Result<Summary, String>>,
) {
    loop {
        tokio::time::sleep(every).await;
        let s = summary(&journal).await.map_err(|f| f.message);
        if tx.send(s).is_err() {
            return;
        }
    }
}

async fn summary(journal: &Arc<dyn Journal>) -> Result<Summary, Failure> {
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || {
        let rows = journal.report()?;
        let pool = journal.pool_status()?;
        Ok::<_, crate::factory::journal::JournalError>(dashboard::summarize(
            &rows,
            pool,
            &crate::factory::utc_millis(),
        ))
    })
    .await
    .map_err(|e| Failure::new(Code::Internal, e.to_string()))?
    .map_err(|e| Failure::new(Code::Journal, e.to_string()))
}

/// Lets a request through when it carries the token asked for (or none is asked for).
async fn guard(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(want) = &shared.token {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if params.token.as_deref() != Some(want.as_str()) && bearer != Some(want.as_str()) {
            return (StatusCode::UNAUTHORIZED, "a token is needed: ?token=...\n").into_response();
        }
    }
    next.run(request).await
}

fn failed(message: &str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n")).into_response()
}

async fn page(State(shared): State<Arc<Shared>>, Query(params): Query<Params>) -> Response {
    let mut events = String::from("/events?");
    let mut query = Vec::new();
    if let Some(t) = &params.token {
        query.push(format!("token={}", encode(t)));
    }
    if let Some(n) = params.limit {
        query.push(format!("limit={n}"));
    }
    events.push_str(&query.join("&"));
    match summary(&shared.journal).await {
        Ok(s) => Html(dashboard::page(&s, &events)).into_response(),
        Err(f) => failed(&f.message),
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn api_summary(State(shared): State<Arc<Shared>>) -> Response {
    match summary(&shared.journal).await {
        Ok(s) => (
            [("content-type", "application/json")],
            serde_json::to_string_pretty(&s).unwrap_or_default(),
        )
            .into_response(),
        Err(f) => failed(&f.message),
    }
}

/// The live part of the page as an event whenever the journal says something new (and at
/// once); a browser reconnects after an hour at the earliest once a limited stream ends.
async fn events(State(shared): State<Arc<Shared>>, Query(params): Query<Params>) -> Response {
    let limit = params.limit;
    let mut latest = shared.latest.clone();
    // The current summary counts as news for a new stream.
    latest.mark_changed();
    let state = (latest, None::<String>, 0u32);
    let stream = futures_util::stream::unfold(state, move |(mut latest, last, sent)| async move {
        if limit.is_some_and(|n| sent >= n) {
            return None;
        }
        loop {
            // The poller stopped: the stream ends.
            latest.changed().await.ok()?;
            // What changed is judged without the time stamp, which changes on every read.
            let (key, html) = match &*latest.borrow_and_update() {
                Ok(s) => {
                    let key = dashboard::render(&Summary {
                        at: String::new(),
                        ..s.clone()
                    });
                    (key, dashboard::render(s))
                }
                Err(message) => {
                    let line = format!("<p class=\"error\">{message}</p>");
                    (line.clone(), line)
                }
            };
            if last.as_deref() != Some(key.as_str()) {
                let event = Event::default()
                    .event("summary")
                    .data(html.replace('\n', " "))
                    .retry(Duration::from_secs(3600));
                return Some((
                    Ok::<_, std::convert::Infallible>(event),
                    (latest, Some(key), sent + 1),
                ));
            }
        }
    });
    Sse::new(stream).into_response()
}
