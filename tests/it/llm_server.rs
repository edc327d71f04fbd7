//! A scripted OpenAI-compatible server on 127.0.0.1 for tests: real HTTP,
//! `/v1/chat/completions` wire format, every request recorded. The default
//! script answers like missionctl's demo model; tests wrap it to inject
//! throttling, latency or judge misbehaviour.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

#[derive(Clone, Debug)]
pub struct Recorded {
    pub body: Value,
    pub authorization: Option<String>,
    pub at: Instant,
}

pub enum Reply {
    Json(Value),
    /// HTTP status with an optional Retry-After (seconds).
    Status(u16, Option<u64>),
    Delayed(Duration, Box<Reply>),
}

pub type Script = Arc<dyn Fn(&Value, usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct AppState {
    script: Script,
    log: Arc<Mutex<Vec<Recorded>>>,
}

pub struct LlmServer {
    pub url: String,
    pub log: Arc<Mutex<Vec<Recorded>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The demo model's answer, as the default script.
pub fn demo() -> Script {
    Arc::new(|body, _| Reply::Json(missionctl::eval::demo_model::respond(body)))
}

pub fn system_of(body: &Value) -> String {
    body["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

pub fn is_judge(body: &Value) -> bool {
    system_of(body).starts_with("You are an evaluation judge")
}

async fn handle(State(st): State<AppState>, headers: HeaderMap, body: String) -> Response {
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let n = {
        let mut log = st.log.lock().expect("log lock");
        log.push(Recorded {
            body: v.clone(),
            authorization: headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .map(String::from),
            at: Instant::now(),
        });
        log.len() - 1
    };
    let mut reply = (st.script)(&v, n);
    loop {
        match reply {
            Reply::Delayed(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
            Reply::Json(j) => return (StatusCode::OK, axum::Json(j)).into_response(),
            Reply::Status(code, retry_after) => {
                let mut r = (
                    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    axum::Json(serde_json::json!({"error": {"message": "scripted", "type": "rate_limit_error"}})),
                )
                    .into_response();
                if let Some(s) = retry_after {
                    r.headers_mut().insert(
                        "retry-after",
                        HeaderValue::from_str(&s.to_string()).expect("header"),
                    );
                }
                return r;
            }
        }
    }
}

impl LlmServer {
    pub fn start(script: Script) -> LlmServer {
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            script,
            log: log.clone(),
        };
        let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                let app = Router::new()
                    .route("/v1/chat/completions", post(handle))
                    .with_state(state);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let addr = addr_rx.recv().expect("server address");
        LlmServer {
            url: format!("http://{addr}"),
            log,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().expect("log lock").clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().expect("log lock").len()
    }
}

impl Drop for LlmServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
