//! The HTTP side: routes, security headers, the JSON documents and the live event stream.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use dtk_instance::home::Home;
use dtk_instance::watch::JournalFollower;
use serde::{Deserialize, Serialize};

use crate::view::{self, LiveView};
use crate::{UiError, pages};

/// How often the live stream looks at the service's journal.
const POLL: Duration = Duration::from_millis(200);

const UI_JS: &str = include_str!("../assets/ui.js");
const UI_CSS: &str = include_str!("../assets/ui.css");

/// How the server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServeOptions {
    /// Answer only requests whose `Host` is a loopback name or address (`localhost`,
    /// `127.x.x.x`, `[::1]`): a web page elsewhere cannot read this one through a DNS name
    /// it points at 127.0.0.1 (DNS rebinding). Set it whenever the server listens on
    /// loopback.
    pub loopback_hosts_only: bool,
}

struct AppState {
    home: Home,
    options: ServeOptions,
    stop: tokio::sync::watch::Receiver<bool>,
}

type Shared = Arc<AppState>;

/// The whole application: pages, static files, JSON documents, the live stream. `stop`
/// ends every live stream when it turns `true` (for a graceful shutdown).
pub fn router(
    home: Home,
    options: ServeOptions,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let state = Arc::new(AppState {
        home,
        options,
        stop,
    });
    Router::new()
        .route("/", get(index))
        .route("/services/{name}", get(service_page))
        .route("/services/{name}/graph.svg", get(graph_svg))
        .route("/static/ui.js", get(ui_js))
        .route("/static/ui.css", get(ui_css))
        .route("/api/services", get(api_services))
        .route("/api/services/{name}", get(api_service))
        .route("/api/services/{name}/runs/{run}", get(api_run))
        .route("/api/services/{name}/live", get(api_live))
        .route("/api/services/{name}/events", get(api_events))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    home: Home,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let app = router(home, options, rx);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = tx.send(true);
        })
        .await
}

/// Whether `host` (a `Host` header: name or address, maybe with a port) is loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses foreign `Host`s (when asked) and adds the security headers to every answer.
async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if st.options.loopback_hosts_only {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !is_loopback_host(host) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "dtk ui answers loopback host names only (localhost, 127.0.0.1, [::1])\n",
            )
                .into_response();
        }
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Runs blocking library work off the async threads.
async fn blocking<T: Send + 'static>(
    st: &Shared,
    f: impl FnOnce(&Home) -> Result<T, UiError> + Send + 'static,
) -> Result<T, Failure> {
    let home = st.home.clone();
    match tokio::task::spawn_blocking(move || f(&home)).await {
        Ok(r) => r.map_err(Failure),
        Err(e) => Err(Failure(UiError::Read {
            service: "*".to_owned(),
            source: Box::new(dtk_instance::InstanceError::Io {
                path: std::path::PathBuf::new(),
                op: "serve",
                source: std::io::Error::other(e.to_string()),
            }),
        })),
    }
}

/// A failed page: an HTML error page.
struct Failure(UiError);

fn status_of(e: &UiError) -> StatusCode {
    if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

fn chain(e: &UiError) -> (String, Vec<String>) {
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    (e.to_string(), causes)
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        let (message, causes) = chain(&self.0);
        let text = std::iter::once(message)
            .chain(causes)
            .collect::<Vec<_>>()
            .join(": ");
        (status, Html(pages::error(status.as_u16(), &text))).into_response()
    }
}

/// A failed JSON request: a `dtk.error/v1` document.
struct ApiFailure(UiError);

impl From<Failure> for ApiFailure {
    fn from(f: Failure) -> Self {
        ApiFailure(f.0)
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let (message, causes) = chain(&self.0);
        let body = serde_json::json!({
            "schema": "dtk.error/v1",
            "message": message,
            "causes": causes,
            "diagnostics": [],
        });
        (status_of(&self.0), axum::Json(body)).into_response()
    }
}

/// A JSON document: `schema` first, then the body's fields.
#[derive(Serialize)]
struct Doc<T: Serialize> {
    schema: &'static str,
    #[serde(flatten)]
    body: T,
}

fn json<T: Serialize>(schema: &'static str, body: T) -> Response {
    axum::Json(Doc { schema, body }).into_response()
}

async fn index(State(st): State<Shared>) -> Result<Html<String>, Failure> {
    let v = blocking(&st, view::index).await?;
    Ok(Html(pages::index(&v)))
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    run: Option<String>,
}

async fn service_page(
    State(st): State<Shared>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Html<String>, Failure> {
    let run = q.run.filter(|r| !r.is_empty());
    let page = blocking(&st, move |home| {
        crate::render_service_page(home, &name, run.as_deref())
    })
    .await?;
    Ok(Html(page))
}

async fn graph_svg(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, Failure> {
    let svg = blocking(&st, move |home| {
        let svc = view::open(home, &name)?;
        let (nodes, edges) = view::graph(&svc)?;
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        crate::graph::svg(&mut out, &name, &nodes, &edges, true);
        Ok(out)
    })
    .await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    // The standalone drawing carries its own style block.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    Ok((headers, svg).into_response())
}

async fn ui_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        UI_JS,
    )
        .into_response()
}

async fn ui_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        UI_CSS,
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(pages::error(404, "there is no such page")),
    )
        .into_response()
}

async fn api_services(State(st): State<Shared>) -> Result<Response, ApiFailure> {
    let v = blocking(&st, view::index).await?;
    Ok(json("dtk.ui.services/v1", v))
}

async fn api_service(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiFailure> {
    let v = blocking(&st, move |home| view::service(&view::open(home, &name)?)).await?;
    Ok(json("dtk.ui.service/v1", v))
}

async fn api_run(
    State(st): State<Shared>,
    Path((name, run)): Path<(String, String)>,
) -> Result<Response, ApiFailure> {
    let v = blocking(&st, move |home| {
        let svc = view::open(home, &name)?;
        let last = run == "last";
        view::run(&svc, (!last).then_some(run.as_str()))?.ok_or(UiError::NoSuchRun {
            service: name.clone(),
            run,
        })
    })
    .await?;
    Ok(json("dtk.ui.run/v1", v))
}

async fn api_live(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> Result<Response, ApiFailure> {
    let v = blocking(&st, move |home| view::live(&view::open(home, &name)?)).await?;
    Ok(json("dtk.ui.live/v1", v))
}

/// `GET /api/services/NAME/events`: the live stream (`text/event-stream`). Events:
/// `run` (a `dtk.ui.live/v1` document, when a run is found: at once if one is in
/// progress), `tasks` (`dtk.ui.tasks/v1`: task changes since the last), `end`
/// (`dtk.ui.end/v1`: the run ended). The stream stays open for the next run.
async fn api_events(
    State(st): State<Shared>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiFailure> {
    let check = name.clone();
    blocking(&st, move |home| view::open(home, &check).map(drop)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let home = st.home.clone();
    let mut stop = st.stop.clone();
    tokio::spawn(async move {
        let mut watch = Watch {
            home,
            name,
            follower: None,
            reported: HashSet::new(),
        };
        loop {
            let (w, events) = match tokio::task::spawn_blocking(move || {
                let events = watch.step();
                (watch, events)
            })
            .await
            {
                Ok(r) => r,
                Err(_) => return,
            };
            watch = w;
            for e in events {
                if tx.send(e).await.is_err() {
                    return; // the page went away
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What one live stream follows.
struct Watch {
    home: Home,
    name: String,
    follower: Option<JournalFollower>,
    /// Runs whose end (or interruption) was sent: not followed again.
    reported: HashSet<String>,
}

fn event(name: &str, schema: &'static str, body: impl Serialize) -> Option<Event> {
    let data = serde_json::to_string(&Doc { schema, body }).ok()?;
    Some(Event::default().event(name).data(data))
}

#[derive(Serialize)]
struct TasksBody<'a> {
    service: &'a str,
    run: &'a str,
    changes: Vec<dtk_instance::watch::TaskChange>,
    finished: usize,
    tasks: usize,
}

#[derive(Serialize)]
struct EndBody<'a> {
    service: &'a str,
    run: &'a str,
    status: String,
}

impl Watch {
    /// One look at the journal: the events it makes. Errors end nothing: the next look
    /// tries again (a journal may vanish between a listing and a read).
    fn step(&mut self) -> Vec<Event> {
        let Ok(svc) = self.home.service(&self.name) else {
            return Vec::new();
        };
        let running = svc.is_running().unwrap_or(false);
        let mut out = Vec::new();
        match self.follower.take() {
            None => {
                let Ok(Some(path)) = svc.live_journal() else {
                    return out;
                };
                let mut f = JournalFollower::new(&path, &self.name);
                if self.reported.contains(&f.run().run) || f.poll().is_err() || f.is_gone() {
                    return out;
                }
                f.set_running(running);
                out.extend(event(
                    "run",
                    "dtk.ui.live/v1",
                    LiveView {
                        service: self.name.clone(),
                        lock: svc.lock_holder().ok().flatten(),
                        run: Some(f.run().clone()),
                    },
                ));
                if running {
                    self.follower = Some(f);
                } else {
                    // A killed run's journal: shown once, not followed.
                    self.reported.insert(f.run().run.clone());
                }
            }
            Some(mut f) => {
                // A converge that resumes a killed run starts its own journal: follow
                // the newest.
                if let Ok(Some(newest)) = svc.live_journal()
                    && newest != f.path()
                {
                    let id = f.run().run.clone();
                    out.extend(event(
                        "end",
                        "dtk.ui.end/v1",
                        EndBody {
                            service: &self.name,
                            run: &id,
                            status: "resumed".to_owned(),
                        },
                    ));
                    self.reported.insert(id);
                    return out;
                }
                let changes = f.poll().unwrap_or_default();
                if !changes.is_empty() {
                    let r = f.run();
                    out.extend(event(
                        "tasks",
                        "dtk.ui.tasks/v1",
                        TasksBody {
                            service: &self.name,
                            run: &r.run,
                            changes,
                            finished: r.finished(),
                            tasks: r.tasks.len(),
                        },
                    ));
                }
                let killed = !running && f.run().ended.is_none();
                if f.is_gone() || killed {
                    let id = f.run().run.clone();
                    let status = match svc.last_run() {
                        Ok(Some(r)) if r.run == id => r.status.to_string(),
                        _ => match f.run().ended.as_deref() {
                            Some("complete") => "succeeded".to_owned(),
                            Some(s) => s.to_owned(),
                            None if killed && !f.is_gone() => "interrupted".to_owned(),
                            None => "ended".to_owned(),
                        },
                    };
                    out.extend(event(
                        "end",
                        "dtk.ui.end/v1",
                        EndBody {
                            service: &self.name,
                            run: &id,
                            status,
                        },
                    ));
                    self.reported.insert(id);
                } else {
                    self.follower = Some(f);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.5.6.7",
            "[::1]:80",
            "[::1]",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example",
            "evil.example:80",
            "10.0.0.1:80",
            "[::2]:80",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
