//! Prometheus/OpenMetrics metrics, served only with `--metrics-address`.
//!
//! The series are recorded whether or not they are served: each is an
//! atomic add where the work happens, cheaper than asking whether anyone
//! listens. Modules by phase are counted from the store when scraped.

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use forklet_state::api::ModulePhase;
use forklet_state::store::{Phase, Store};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The default port when `--metrics-address` names none.
pub const DEFAULT_PORT: u16 = 9464;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: PhaseValue,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
struct PhaseValue(ModulePhase);

impl EncodeLabelValue for PhaseValue {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.0.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    endpoint: &'static str,
    outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DockerLabels {
    operation: &'static str,
    outcome: Outcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values, as Prometheus spells them
pub enum Outcome {
    ok,
    error,
}

impl Outcome {
    pub fn of<T, E>(result: &Result<T, E>) -> Self {
        match result {
            Ok(_) => Outcome::ok,
            Err(_) => Outcome::error,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

type Durations<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    modules: Family<PhaseLabel, Gauge>,
    transitions: Family<PhaseLabel, Counter>,
    calls: Durations<CallLabels>,
    docker: Durations<DockerLabels>,
    queued: Gauge,
    active: Gauge,
    schedule: Family<ActionLabel, Counter>,
}

/// 1 ms to about 65 s: a health poll to a slow install.
fn call_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("forklet");
        let modules = Family::<PhaseLabel, Gauge>::default();
        registry.register(
            "modules",
            "Modules forklet has a record of, by phase",
            modules.clone(),
        );
        let transitions = Family::<PhaseLabel, Counter>::default();
        registry.register(
            "phase_transitions",
            "Modules entering a phase",
            transitions.clone(),
        );
        let calls: Durations<CallLabels> = Family::new_with_constructor(call_buckets);
        registry.register_with_unit(
            "lifecycle_call_duration",
            "Lifecycle calls to modules (health: until healthy), by endpoint and outcome",
            prometheus_client::registry::Unit::Seconds,
            calls.clone(),
        );
        let docker: Durations<DockerLabels> = Family::new_with_constructor(call_buckets);
        registry.register_with_unit(
            "docker_operation_duration",
            "Docker engine operations, by operation and outcome",
            prometheus_client::registry::Unit::Seconds,
            docker.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "reconcile_queue_depth",
            "Module steps waiting for a --max-concurrent slot",
            queued.clone(),
        );
        let active = Gauge::default();
        registry.register("reconcile_active", "Module steps under way", active.clone());
        let schedule = Family::<ActionLabel, Counter>::default();
        registry.register(
            "schedule_transitions",
            "Workspace schedules putting to sleep or waking",
            schedule.clone(),
        );
        registry.register(
            "build",
            "forkletd's release",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        Self {
            registry,
            modules,
            transitions,
            calls,
            docker,
            queued,
            active,
            schedule,
        }
    }

    pub fn entered(&self, phase: Phase) {
        let phase = PhaseValue(phase.into());
        self.transitions.get_or_create(&PhaseLabel { phase }).inc();
    }

    pub fn call(&self, endpoint: &'static str, outcome: Outcome, took: Duration) {
        let labels = CallLabels { endpoint, outcome };
        self.calls
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn docker(&self, operation: &'static str, outcome: Outcome, took: Duration) {
        let labels = DockerLabels { operation, outcome };
        self.docker
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn scheduled(&self, action: &'static str) {
        self.schedule.get_or_create(&ActionLabel { action }).inc();
    }

    /// Counts a step from asking for a slot to the end of its work.
    pub fn queued(&self) -> Slot<'_> {
        self.queued.inc();
        Slot {
            metrics: self,
            active: false,
        }
    }

    /// The text a scrape gets, with modules counted from `store` now.
    fn encode(&self, store: &Store) -> Result<String, String> {
        // Counted by SQLite: no record is read, however many there are.
        let counts = store.phase_counts().map_err(|err| err.to_string())?;
        for phase in ModulePhase::ALL {
            let count = counts
                .iter()
                .filter(|(word, _)| word == phase.as_str())
                .map(|(_, n)| *n)
                .sum::<u64>();
            let label = PhaseLabel {
                phase: PhaseValue(phase),
            };
            self.modules
                .get_or_create(&label)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|err| err.to_string())?;
        Ok(text)
    }
}

/// A step's place in the queue, then in the work: the gauges follow it
/// however the step ends (done, failed, dropped on shutdown).
pub struct Slot<'a> {
    metrics: &'a Metrics,
    active: bool,
}

impl Slot<'_> {
    pub fn started(&mut self) {
        if !self.active {
            self.active = true;
            self.metrics.queued.dec();
            self.metrics.active.inc();
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        match self.active {
            true => self.metrics.active.dec(),
            false => self.metrics.queued.dec(),
        };
    }
}

/// Times `work` as a Docker operation.
pub async fn timed_docker<T, E>(
    operation: &'static str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = work.await;
    METRICS.docker(operation, Outcome::of(&result), started.elapsed());
    result
}

/// `9464`, `:9464` and `IP:PORT`; a missing address is loopback, so that
/// metrics are never exposed by accident.
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("{text:?} is not PORT, :PORT or IP:PORT (e.g. 127.0.0.1:{DEFAULT_PORT}; a host name is not looked up)")
    })
}

/// Serves `GET /metrics` on `listener` until shutdown.
pub async fn serve(listener: tokio::net::TcpListener, store: Arc<Store>, stop: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(store);
    crate::http_server::serve(listener, app, "metrics", stop).await;
}

async fn scrape(State(store): State<Arc<Store>>) -> impl IntoResponse {
    // The store reads from disk: not on the async runtime.
    let text = tokio::task::spawn_blocking(move || METRICS.encode(&store)).await;
    match text {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "metrics: cannot read the store");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot read the store").into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_host_is_loopback() {
        assert_eq!(parse_address("9464"), Ok("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(
            parse_address(":9100"),
            Ok("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(
            parse_address("0.0.0.0:9100"),
            Ok("0.0.0.0:9100".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:9100"),
            Ok("[::1]:9100".parse().unwrap())
        );
        assert!(parse_address("localhost").is_err());
        assert!(parse_address("99999").is_err());
    }

    #[test]
    fn a_step_leaves_the_gauges_as_it_found_them_however_it_ends() {
        let metrics = Metrics::new();
        {
            let _waiting = metrics.queued();
            assert_eq!(metrics.queued.get(), 1);
        }
        let mut slot = metrics.queued();
        slot.started();
        slot.started();
        assert_eq!((metrics.queued.get(), metrics.active.get()), (0, 1));
        drop(slot);
        assert_eq!((metrics.queued.get(), metrics.active.get()), (0, 0));
    }

    #[test]
    fn the_text_names_every_series_with_its_unit_and_build() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let metrics = Metrics::new();
        metrics.call("install", Outcome::ok, Duration::from_millis(3));
        metrics.docker("ensure_runner", Outcome::error, Duration::from_millis(40));
        metrics.entered(Phase::Ready);
        metrics.scheduled("sleep");
        let text = metrics.encode(&store).unwrap();
        for line in [
            "forklet_modules{phase=\"ready\"} 0",
            "forklet_phase_transitions_total{phase=\"ready\"} 1",
            "forklet_lifecycle_call_duration_seconds_count{endpoint=\"install\",outcome=\"ok\"} 1",
            "forklet_docker_operation_duration_seconds_count{operation=\"ensure_runner\",outcome=\"error\"} 1",
            "forklet_reconcile_queue_depth 0",
            "forklet_schedule_transitions_total{action=\"sleep\"} 1",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(
            text.contains(&format!(
                "forklet_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }
}
