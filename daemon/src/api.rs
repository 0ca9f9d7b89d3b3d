//! The control API: HTTP on a Unix socket, read by the `forklet` CLI.
//!
//! Views merge three sources: the store (what forklet did), the desired
//! state (what the manifests ask), and manifest problems (why a module is
//! not what its file says).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use forklet_state::api::{
    ClusterView, DoctorView, ErrorCode, EventReason, EventView, ModulePhase, ModuleView,
    OverrideRequest, OverrideView, ProblemDetails, ScheduleView, SecretCreate, SecretType,
    SecretView, TransitionView, VersionView, WorkspacePhase, WorkspaceView,
};
use forklet_state::bounded::KUBECONFIG_MAX;
use forklet_state::desired::DesiredState;
use forklet_state::hibernation::{Override, OverrideAction, Scope};
use forklet_state::manifest::Kind;
use forklet_state::names::{check_dns_label, check_dns_subdomain, check_secret_key};
use forklet_state::store::{GenericSecret, RegistrySecret};
use forklet_state::store::{ModuleRecord, Store, StoreError};
use forklet_state::{ObjectKey, Problem};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::hibernation::Hibernation;
use crate::reconciler::{Command, ForgetError};
use crate::store_thread::StoreThread;

/// The longest override: beyond it, an override is a manifest edit.
const MAX_OVERRIDE_SECONDS: i64 = 10 * 366 * 24 * 3600;

/// Events shown with a single module.
const EVENTS_SHOWN: usize = 20;

#[derive(Clone)]
pub struct ApiState {
    /// For reads, on a connection of their own.
    pub store: Arc<Store>,
    /// For writes, in order and off the async runtime.
    pub writes: StoreThread,
    pub desired: watch::Receiver<Arc<DesiredState>>,
    /// Asks the watcher to fetch every `httpURL` definition again.
    pub refresh: mpsc::UnboundedSender<()>,
    /// Asks the watcher to look at kubeconfigs again (a secret changed).
    pub look_again: mpsc::UnboundedSender<()>,
    /// How each workspace's modules reach its cluster.
    pub clusters: watch::Receiver<crate::cluster::Book>,
    pub commands: mpsc::UnboundedSender<Command>,
    pub hibernation: watch::Receiver<Arc<Hibernation>>,
    /// Rung after an override is stored, so the hibernation clock looks again.
    pub overrides_changed: Arc<Notify>,
    /// For a `controller` runner's socket: the one workspace it may read.
    pub scope: Option<ObjectKey>,
    /// The engine, for runners' logs (`None`: not served).
    pub docker: Option<bollard::Docker>,
    /// Ends streamed answers (events, logs) when the daemon stops.
    pub shutdown: tokio_util::sync::CancellationToken,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{kind} {key} not found")]
    NotFound { kind: Kind, key: ObjectKey },
    #[error("secret {0} not found")]
    NoSuchSecret(String),
    #[error("{} {key} has no override", scope.as_str())]
    NoOverride { scope: Scope, key: ObjectKey },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    SecretInUse(String),
    #[error("{0}")]
    ManifestDecides(String),
    #[error("{0}")]
    StillDefined(String),
    #[error("{0}")]
    NothingToCheck(String),
    #[error("forkletd is stopping")]
    Stopping,
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApiError {
    fn code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::NotFound { .. } | ApiError::NoSuchSecret(_) | ApiError::NoOverride { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            ApiError::SecretInUse(_) => (StatusCode::CONFLICT, ErrorCode::SecretInUse),
            ApiError::ManifestDecides(_) => (StatusCode::CONFLICT, ErrorCode::ManifestDecides),
            ApiError::StillDefined(_) => (StatusCode::CONFLICT, ErrorCode::StillDefined),
            ApiError::NothingToCheck(_) => (StatusCode::CONFLICT, ErrorCode::NothingToCheck),
            ApiError::Stopping => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Stopping),
            ApiError::Store(StoreError::SecretExists(_)) => {
                (StatusCode::CONFLICT, ErrorCode::SecretExists)
            }
            ApiError::Internal(_) | ApiError::Store(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        crate::problem_response::problem(status, code, self.to_string())
    }
}

/// `{namespace}/{name}` from the path, checked as Kubernetes names before
/// anything is looked up with it.
pub struct KeyPath(pub ObjectKey);

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ModuleQuery {
    /// Also read the runner from the engine (`runner` in the answer): a
    /// call to Docker, so only when asked.
    #[serde(default)]
    runner: bool,
}

/// The path parameters of one object, as the OpenAPI document names them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read through KeyPath; here for the document
pub struct ObjectPath {
    /// A Kubernetes namespace name (DNS label).
    namespace: String,
    /// The object's name (DNS subdomain for modules, label for workspaces).
    name: String,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let Path((namespace, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::BadRequest(err.body_text()))?;
        ObjectKey::new(namespace, name)
            .map(KeyPath)
            .map_err(|err| ApiError::BadRequest(err.to_string()))
    }
}

/// What a module with the `controller` permission may do: read its own
/// workspace and the modules in it. No secrets, no overrides, no retries,
/// no forgetting; its socket serves nothing else.
pub fn controller_router(mut state: ApiState, workspace: ObjectKey) -> Router {
    state.scope = Some(workspace);
    Router::new()
        .route("/v1/modules", get(list_modules))
        .route("/v1/modules/{namespace}/{name}", get(get_module))
        .route("/v1/workspaces", get(list_workspaces))
        .route("/v1/workspaces/{namespace}/{name}", get(get_workspace))
        .fallback(crate::problem_response::no_route)
        .layer(axum::middleware::map_response(
            crate::problem_response::as_problems,
        ))
        .with_state(state)
}

impl ApiState {
    /// Runs a streamed answer's producer until it ends or the daemon stops:
    /// then the answer ends as answers end, and a follower hears the daemon
    /// stopped rather than a connection cut after the drain.
    pub fn spawn_stream(&self, producer: impl Future<Output = ()> + Send + 'static) {
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = producer => {}
            }
        });
    }

    /// Whether a caller of this socket may see `workspace`.
    fn sees(&self, workspace: &ObjectKey) -> bool {
        self.scope.as_ref().is_none_or(|scope| scope == workspace)
    }

    /// The workspace module `key` is in, as recorded or as desired.
    fn sees_module(
        &self,
        record: Option<&ModuleRecord>,
        desired: &DesiredState,
        key: &ObjectKey,
    ) -> bool {
        let workspace = record
            .map(|r| &r.workspace)
            .or(desired.modules.get(key).map(|m| &m.workspace));
        match workspace {
            Some(workspace) => self.sees(workspace),
            None => self.scope.is_none(),
        }
    }
}

/// Every route of the main socket with its OpenAPI description: a route
/// is added here, with `routes!`, or not at all, so that the document
/// (`/v1/openapi.json`) and the router cannot disagree.
pub fn routes() -> OpenApiRouter<ApiState> {
    // A kubeconfig may be 4 MiB, a third more in base64.
    let secrets = OpenApiRouter::new()
        .routes(routes!(list_secrets, create_secret))
        .layer(axum::extract::DefaultBodyLimit::max(6 << 20));
    OpenApiRouter::with_openapi(crate::openapi::Document::openapi())
        .routes(routes!(list_modules))
        .routes(routes!(get_module))
        .routes(routes!(retry_module))
        .routes(routes!(forget_module))
        .routes(routes!(sleep_module))
        .routes(routes!(resume_module))
        .routes(routes!(clear_module_override))
        .routes(routes!(module_logs))
        .routes(routes!(list_workspaces))
        .routes(routes!(get_workspace))
        .routes(routes!(sleep_workspace))
        .routes(routes!(resume_workspace))
        .routes(routes!(clear_workspace_override))
        .routes(routes!(doctor_workspace))
        .routes(routes!(crate::event_stream::events))
        .routes(routes!(version))
        .routes(routes!(crate::openapi::document))
        .merge(secrets)
        .routes(routes!(delete_secret))
        .routes(routes!(refresh_definitions))
        .routes(routes!(list_problems))
}

pub fn router(state: ApiState) -> Router {
    let (router, _) = routes().split_for_parts();
    router
        .fallback(crate::problem_response::no_route)
        .layer(axum::middleware::map_response(
            crate::problem_response::as_problems,
        ))
        .with_state(state)
}

#[utoipa::path(get, path = "/v1/modules", tag = "modules", responses((status = 200, description = "Every module forklet runs or a manifest names", body = Vec<ModuleView>)))]
async fn list_modules(State(state): State<ApiState>) -> Result<Json<Vec<ModuleView>>, ApiError> {
    let desired = state.desired.borrow().clone();
    let hibernation = state.hibernation.borrow().clone();
    let records = state.store.modules()?;
    let mut keys: Vec<ObjectKey> = records.iter().map(|r| r.key.clone()).collect();
    keys.extend(desired.modules.keys().cloned());
    keys.extend(desired.held(Kind::Module).cloned());
    keys.extend(desired.awaiting.keys().cloned());
    keys.sort();
    keys.dedup();
    let records: HashMap<&ObjectKey, &ModuleRecord> = records.iter().map(|r| (&r.key, r)).collect();
    let views = keys
        .iter()
        .filter(|key| state.sees_module(records.get(key).copied(), &desired, key))
        .map(|key| module_view(key, records.get(key).copied(), &desired, &hibernation))
        .collect();
    Ok(Json(views))
}

#[utoipa::path(get, path = "/v1/modules/{namespace}/{name}", tag = "modules", params(ObjectPath, ModuleQuery), responses((status = 200, description = "The module, with its last events", body = ModuleView), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn get_module(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
    Query(query): Query<ModuleQuery>,
) -> Result<Json<ModuleView>, ApiError> {
    let desired = state.desired.borrow().clone();
    let hibernation = state.hibernation.borrow().clone();
    let record = state.store.module(&key)?;
    let named = desired.modules.contains_key(&key) || desired.is_held(Kind::Module, &key);
    if record.is_none() && !named || !state.sees_module(record.as_ref(), &desired, &key) {
        return Err(ApiError::NotFound {
            kind: Kind::Module,
            key,
        });
    }
    let mut view = module_view(&key, record.as_ref(), &desired, &hibernation);
    view.events = event_views(state.store.events(Kind::Module, &key, EVENTS_SHOWN)?);
    if let (true, Some(docker), Some(id)) = (query.runner, &state.docker, &view.container_id) {
        view.runner = crate::docker::runner_view(docker, id).await;
    }
    Ok(Json(view))
}

fn module_view(
    key: &ObjectKey,
    record: Option<&ModuleRecord>,
    desired: &DesiredState,
    hibernation: &Hibernation,
) -> ModuleView {
    let wanted = desired.modules.get(key);
    let sleep_reason = wanted.and_then(|m| hibernation.module(m, desired));
    let problems = joined(desired.problems_of(Kind::Module, key));
    let (phase, mut message) = match (record, &problems) {
        (Some(record), _) => (record.phase.into(), record.message.clone()),
        (None, Some(_)) => (ModulePhase::Failed, String::new()),
        (None, None) => (ModulePhase::Pending, String::new()),
    };
    if let Some(url) = desired.awaiting.get(key) {
        message = format!("fetching the definition from {url}");
    }
    // A manifest problem is what the user must act on; it goes first.
    if let Some(problems) = problems {
        message = if message.is_empty() {
            problems
        } else {
            format!("{problems}; {message}")
        };
    }
    let workspace = record
        .map(|r| &r.workspace)
        .or(wanted.map(|w| &w.workspace));
    ModuleView {
        name: key.name().to_owned(),
        namespace: key.namespace().to_owned(),
        workspace: workspace.map(|w| w.name().to_owned()).unwrap_or_default(),
        workspace_namespace: workspace
            .map(|w| w.namespace().to_owned())
            .unwrap_or_default(),
        phase,
        message,
        container_id: record.and_then(|r| r.container_id.clone()),
        image: record
            .map(|r| r.runner.image.clone())
            .or(wanted.map(|w| w.runner.image.clone())),
        hibernated: sleep_reason.is_some(),
        sleep_reason,
        manual_override: hibernation
            .module_overrides
            .get(key)
            .copied()
            .map(override_view),
        file: wanted.map(|w| w.file.display().to_string()),
        config: record
            .map(|r| r.config.clone())
            .or(wanted.map(|w| w.config.clone()))
            .unwrap_or_default(),
        metadata: record.map(|r| r.metadata.clone()).unwrap_or_default(),
        created_at: record.map(|r| r.created_at),
        last_activity: record.map(|r| r.last_activity),
        attempts: record.map_or(0, |r| r.attempts),
        next_retry: record.and_then(|r| r.next_retry),
        operation: record.and_then(|r| r.operation),
        events: Vec::new(),
        definition: wanted.map(|w| {
            let meta = &w.definition.metadata;
            format!("{} {}", meta.name, meta.version)
        }),
        network: record
            .map(|r| r.runner.network.clone())
            .unwrap_or_else(|| wanted.and_then(|w| w.runner.network.clone())),
        runner: None,
    }
}

/// Every manifest problem, those of files that name no object included.
#[utoipa::path(get, path = "/v1/problems", tag = "manifests", responses((status = 200, description = "Every manifest problem, with its file", body = Vec<Problem>)))]
async fn list_problems(State(state): State<ApiState>) -> Json<Vec<Problem>> {
    Json(state.desired.borrow().problems.clone())
}

#[utoipa::path(get, path = "/v1/workspaces", tag = "workspaces", responses((status = 200, description = "Every workspace a manifest names", body = Vec<WorkspaceView>)))]
async fn list_workspaces(State(state): State<ApiState>) -> Json<Vec<WorkspaceView>> {
    let desired = state.desired.borrow().clone();
    let hibernation = state.hibernation.borrow().clone();
    let mut keys: Vec<ObjectKey> = desired.workspaces.keys().cloned().collect();
    keys.extend(desired.held(Kind::Workspace).cloned());
    keys.retain(|key| state.sees(key));
    keys.sort();
    keys.dedup();
    Json(
        keys.iter()
            .map(|key| workspace_view(key, &desired, &hibernation, &state.clusters.borrow()))
            .collect(),
    )
}

#[utoipa::path(get, path = "/v1/version", tag = "daemon", responses((status = 200, description = "forkletd's release and API version", body = VersionView)))]
async fn version() -> Json<VersionView> {
    Json(VersionView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        api: forklet_state::api::API_VERSION.to_owned(),
    })
}

/// The module's runner output, streamed (see [`crate::module_logs`]).
#[utoipa::path(get, path = "/v1/modules/{namespace}/{name}/logs", tag = "modules", params(ObjectPath, crate::module_logs::LogsQuery), responses((status = 200, description = "The runner's output: one JSON object per line: `{\"stream\": \"stdout\"|\"stderr\", \"data\": TEXT}`", content_type = "application/x-ndjson", body = String), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn module_logs(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
    axum::extract::Query(query): axum::extract::Query<crate::module_logs::LogsQuery>,
) -> Result<Response, ApiError> {
    let Some(docker) = state.docker.clone() else {
        return Err(ApiError::BadRequest("logs are not served here".into()));
    };
    if state.store.module(&key)?.is_none() {
        return Err(ApiError::NotFound {
            kind: Kind::Module,
            key,
        });
    }
    let (tx, rx) = mpsc::channel(64);
    state.spawn_stream(crate::module_logs::stream(
        docker,
        state.store.clone(),
        state.writes.written(),
        key,
        query,
        tx,
    ));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), rx))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Asks the workspace's API server for `/version` the way its runners
/// reach it (see [`crate::cluster::doctor`]).
#[utoipa::path(get, path = "/v1/workspaces/{namespace}/{name}/doctor", tag = "workspaces", params(ObjectPath), responses((status = 200, description = "Each step of reaching the API server", body = DoctorView), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json"), (status = 409, description = "No module of the workspace receives its kubeconfig", body = ProblemDetails, content_type = "application/problem+json")))]
async fn doctor_workspace(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<Json<DoctorView>, ApiError> {
    let reach = state.clusters.borrow().get(&key).cloned();
    let Some(reach) = reach else {
        let desired = state.desired.borrow().clone();
        if let Some(problems) = joined(desired.problems_of(Kind::Workspace, &key)) {
            return Err(ApiError::BadRequest(format!(
                "workspace {key} cannot be checked: {problems}"
            )));
        }
        return match desired.workspaces.contains_key(&key) {
            true => Err(ApiError::NothingToCheck(format!(
                "workspace {key} has no module with the workspace permission: none of its \
                 modules reaches its cluster"
            ))),
            false => Err(ApiError::NotFound {
                kind: Kind::Workspace,
                key,
            }),
        };
    };
    let checks = crate::cluster::doctor::check(&reach).await;
    Ok(Json(DoctorView {
        workspace: key.to_string(),
        ok: checks.iter().all(|c| c.ok),
        checks,
    }))
}

#[utoipa::path(get, path = "/v1/workspaces/{namespace}/{name}", tag = "workspaces", params(ObjectPath), responses((status = 200, description = "The workspace, with its own events", body = WorkspaceView), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn get_workspace(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<Json<WorkspaceView>, ApiError> {
    let desired = state.desired.borrow().clone();
    let hibernation = state.hibernation.borrow().clone();
    let named = desired.workspaces.contains_key(&key) || desired.is_held(Kind::Workspace, &key);
    if !named || !state.sees(&key) {
        return Err(ApiError::NotFound {
            kind: Kind::Workspace,
            key,
        });
    }
    let mut view = workspace_view(&key, &desired, &hibernation, &state.clusters.borrow());
    view.events = event_views(state.store.events(Kind::Workspace, &key, EVENTS_SHOWN)?);
    Ok(Json(view))
}

fn event_views(events: Vec<forklet_state::store::Event>) -> Vec<EventView> {
    events
        .into_iter()
        .map(|e| EventView {
            at: e.at,
            reason: e.reason,
            message: e.message,
        })
        .collect()
}

fn workspace_view(
    key: &ObjectKey,
    desired: &DesiredState,
    hibernation: &Hibernation,
    clusters: &crate::cluster::Book,
) -> WorkspaceView {
    let workspace = desired.workspaces.get(key);
    let problems = joined(desired.problems_of(Kind::Workspace, key));
    let sleep_reason = workspace.and_then(|w| hibernation.workspace(w));
    let phase = match (&problems, sleep_reason) {
        (Some(_), _) => WorkspacePhase::Failed,
        (None, Some(_)) => WorkspacePhase::Hibernated,
        (None, None) => WorkspacePhase::Ready,
    };
    let sleep = hibernation.workspaces.get(key);
    WorkspaceView {
        name: key.name().to_owned(),
        namespace: key.namespace().to_owned(),
        phase,
        message: problems.unwrap_or_default(),
        connection: workspace
            .map(|w| w.spec.connection.kind.to_string())
            .unwrap_or_default(),
        hibernated: sleep_reason.is_some(),
        modules: desired
            .modules
            .values()
            .filter(|m| &m.workspace == key)
            .count(),
        file: workspace.map(|w| w.file.display().to_string()),
        schedule: workspace
            .and_then(|w| w.schedule.as_ref())
            .map(|s| ScheduleView {
                sleep: s.sleep_text.clone(),
                wake: s.wake_text.clone(),
                timezone: s.zone.name().to_owned(),
            }),
        next_transition: sleep
            .and_then(|s| s.next)
            .map(|(at, transition)| TransitionView {
                at,
                action: transition,
            }),
        manual_override: sleep.and_then(|s| s.over).map(override_view),
        sleep_reason,
        cluster: clusters.get(key).map(|reach| match reach.as_ref() {
            Ok(access) => ClusterView {
                endpoint: Some(access.endpoint.clone()),
                via: Some(access.via()),
                network: access.network.clone(),
                reason: None,
            },
            Err(reason) => ClusterView {
                endpoint: None,
                via: None,
                network: None,
                reason: Some(reason.clone()),
            },
        }),
        events: Vec::new(),
    }
}

fn override_view(o: Override) -> OverrideView {
    OverrideView {
        action: o.action,
        until: o.until,
    }
}

/// Stores a manual sleep or resume of a module or a workspace. Without a
/// duration or an end it lasts until the next scheduled transition of the
/// workspace (or until replaced, where there is no schedule).
async fn set_override(
    state: &ApiState,
    scope: Scope,
    key: ObjectKey,
    action: OverrideAction,
    request: OverrideRequest,
) -> Result<Json<OverrideView>, ApiError> {
    let desired = state.desired.borrow().clone();
    let hibernation = state.hibernation.borrow().clone();
    let not_found = |kind| ApiError::NotFound {
        kind,
        key: key.clone(),
    };
    // The workspace whose schedule bounds the override, and whether the
    // module's own manifest says hibernated.
    let (workspace_key, module_hibernated) = match scope {
        Scope::Module => {
            let module = desired
                .modules
                .get(&key)
                .ok_or_else(|| not_found(Kind::Module))?;
            (module.workspace.clone(), module.hibernated)
        }
        Scope::Workspace => {
            desired
                .workspaces
                .get(&key)
                .ok_or_else(|| not_found(Kind::Workspace))?;
            (key.clone(), false)
        }
    };
    let workspace_hibernated = desired
        .workspaces
        .get(&workspace_key)
        .is_some_and(|w| w.spec.hibernated);
    let manifest_says = if module_hibernated {
        Some(format!("module {key}'s manifest says hibernated: true"))
    } else if workspace_hibernated {
        Some(format!(
            "workspace {workspace_key}'s manifest says hibernated: true"
        ))
    } else {
        None
    };
    if action == OverrideAction::Resume
        && let Some(says) = manifest_says
    {
        return Err(ApiError::ManifestDecides(format!(
            "{says}; an override does not fight it: edit the manifest"
        )));
    }
    let now = Utc::now();
    let until = match (request.for_seconds, request.until) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give forSeconds or until, not both".into(),
            ));
        }
        (Some(0), None) => {
            return Err(ApiError::BadRequest(
                "forSeconds 0 would end at once: give at least 1".into(),
            ));
        }
        (Some(seconds), None) => Some(
            i64::try_from(seconds)
                .ok()
                .filter(|s| *s <= MAX_OVERRIDE_SECONDS)
                .and_then(chrono::Duration::try_seconds)
                .and_then(|d| now.checked_add_signed(d))
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "forSeconds {seconds} is longer than {MAX_OVERRIDE_SECONDS} (ten years)"
                    ))
                })?,
        ),
        (None, Some(until)) if until <= now => {
            return Err(ApiError::BadRequest(format!(
                "until {until} has passed already"
            )));
        }
        (None, Some(until)) if (until - now).num_seconds() > MAX_OVERRIDE_SECONDS => {
            return Err(ApiError::BadRequest(format!(
                "until {until} is more than {MAX_OVERRIDE_SECONDS} seconds (ten years) away"
            )));
        }
        (None, Some(until)) => Some(until),
        (None, None) => hibernation
            .workspaces
            .get(&workspace_key)
            .and_then(|w| w.next)
            .map(|(at, _)| at),
    };
    let value = Override { action, until };
    let stored = key.clone();
    let message = match until {
        Some(until) => format!("{} by hand until {until}", action.as_str()),
        None => format!("{} by hand until cleared", action.as_str()),
    };
    state
        .writes
        .run(move |store| {
            store.set_override(scope, &stored, &value)?;
            store.note(scope, &stored, EventReason::OverrideSet, &message)
        })
        .await?;
    tracing::info!(scope = scope.as_str(), object = %key, action = action.as_str(), until = ?until, "override set");
    state.overrides_changed.notify_one();
    Ok(Json(override_view(value)))
}

macro_rules! override_handler {
    ($name:ident, $path:literal, $scope:expr, $action:expr) => {
        #[utoipa::path(post, path = $path, tag = "hibernation", params(ObjectPath),
            request_body(content = Option<OverrideRequest>, description = "How long: forSeconds or until; neither: until the next scheduled transition"),
            responses((status = 200, description = "The override in force", body = OverrideView), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json"), (status = 409, description = "A manifest says hibernated: true", body = ProblemDetails, content_type = "application/problem+json")))]
        async fn $name(
            State(state): State<ApiState>,
            KeyPath(key): KeyPath,
            request: Option<Json<OverrideRequest>>,
        ) -> Result<Json<OverrideView>, ApiError> {
            let request = request.map(|Json(r)| r).unwrap_or_default();
            set_override(&state, $scope, key, $action, request).await
        }
    };
}

/// Ends a manual sleep or resume before its time: the manifests and
/// schedules decide again.
async fn clear_override(
    state: &ApiState,
    scope: Scope,
    key: ObjectKey,
) -> Result<StatusCode, ApiError> {
    let stored = key.clone();
    let deleted = state
        .writes
        .run(move |store| {
            let deleted = store.delete_override(scope, &stored)?;
            if deleted {
                let message = "cleared by hand: the manifests and schedule decide again";
                store.note(scope, &stored, EventReason::OverrideCleared, message)?;
            }
            Ok::<_, StoreError>(deleted)
        })
        .await?;
    if !deleted {
        return Err(ApiError::NoOverride { scope, key });
    }
    tracing::info!(scope = scope.as_str(), object = %key, "override cleared");
    state.overrides_changed.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/modules/{namespace}/{name}/override", tag = "hibernation", params(ObjectPath), responses((status = 204, description = "Cleared: the manifests and schedule decide again"), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn clear_module_override(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<StatusCode, ApiError> {
    clear_override(&state, Scope::Module, key).await
}

#[utoipa::path(delete, path = "/v1/workspaces/{namespace}/{name}/override", tag = "hibernation", params(ObjectPath), responses((status = 204, description = "Cleared: the manifests and schedule decide again"), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn clear_workspace_override(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<StatusCode, ApiError> {
    clear_override(&state, Scope::Workspace, key).await
}

override_handler!(
    sleep_module,
    "/v1/modules/{namespace}/{name}/sleep",
    Scope::Module,
    OverrideAction::Sleep
);
override_handler!(
    resume_module,
    "/v1/modules/{namespace}/{name}/resume",
    Scope::Module,
    OverrideAction::Resume
);
override_handler!(
    sleep_workspace,
    "/v1/workspaces/{namespace}/{name}/sleep",
    Scope::Workspace,
    OverrideAction::Sleep
);
override_handler!(
    resume_workspace,
    "/v1/workspaces/{namespace}/{name}/resume",
    Scope::Workspace,
    OverrideAction::Resume
);

/// Sends a command to the reconciler and waits for its answer.
async fn ask<T>(
    state: &ApiState,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (reply, answer) = oneshot::channel();
    state
        .commands
        .send(command(reply))
        .map_err(|_| ApiError::Stopping)?;
    answer.await.map_err(|_| ApiError::Stopping)
}

#[utoipa::path(post, path = "/v1/modules/{namespace}/{name}/retry", tag = "modules", params(ObjectPath), responses((status = 202, description = "The failed step is tried now"), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json")))]
async fn retry_module(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<StatusCode, ApiError> {
    if ask(&state, |reply| Command::Retry(key.clone(), reply)).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::NotFound {
            kind: Kind::Module,
            key,
        })
    }
}

/// Forgets a module whose manifest is gone without calling `/uninstall`
/// (`forklet delete --force`): its runner is removed, its record dropped.
#[utoipa::path(post, path = "/v1/modules/{namespace}/{name}/forget", tag = "modules", params(ObjectPath), responses((status = 204, description = "Forgotten; its runner removed without /uninstall"), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json"), (status = 409, description = "Its manifest still defines it", body = ProblemDetails, content_type = "application/problem+json"), (status = 500, description = "The runner could not be removed", body = ProblemDetails, content_type = "application/problem+json")))]
async fn forget_module(
    State(state): State<ApiState>,
    KeyPath(key): KeyPath,
) -> Result<StatusCode, ApiError> {
    match ask(&state, |reply| Command::ForceDelete(key.clone(), reply)).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(ForgetError::NotFound(key)) => Err(ApiError::NotFound {
            kind: Kind::Module,
            key,
        }),
        Err(err @ ForgetError::StillDefined { .. }) => Err(ApiError::StillDefined(err.to_string())),
        Err(err @ ForgetError::Failed { .. }) => Err(ApiError::Internal(err.to_string())),
    }
}

/// Fetches every `httpURL` definition in use again; modules whose
/// definition changed are installed again, as after any edit.
#[utoipa::path(post, path = "/v1/definitions/refresh", tag = "manifests", responses((status = 202, description = "Every httpURL definition is fetched again")))]
async fn refresh_definitions(State(state): State<ApiState>) -> StatusCode {
    let _ = state.refresh.send(());
    StatusCode::ACCEPTED
}

#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", responses((status = 200, description = "Names, namespaces and types; never a value", body = Vec<SecretView>)))]
async fn list_secrets(State(state): State<ApiState>) -> Result<Json<Vec<SecretView>>, ApiError> {
    let secrets = state.store.secret_names()?;
    Ok(Json(
        secrets
            .into_iter()
            .map(|s| SecretView {
                name: s.name,
                namespace: s.namespace,
                kind: s.kind,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/secrets", tag = "secrets", request_body = SecretCreate, responses((status = 201, description = "Stored (0600, never answered back)", body = SecretView), (status = 400, description = "A name, query or body is not acceptable", body = ProblemDetails, content_type = "application/problem+json"), (status = 409, description = "A secret of that name exists", body = ProblemDetails, content_type = "application/problem+json"), (status = 413, description = "More than 6 MiB", body = ProblemDetails, content_type = "application/problem+json")))]
async fn create_secret(
    State(state): State<ApiState>,
    Json(request): Json<SecretCreate>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let bad = |message: String| ApiError::BadRequest(message);
    check_dns_subdomain(&request.name).map_err(|e| bad(format!("secret name: {e}")))?;
    let namespace = request
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    check_dns_label(&namespace).map_err(|e| bad(format!("secret namespace: {e}")))?;
    let kind = request.kind;
    let name = request.name.clone();
    match kind {
        SecretType::DockerRegistry => {
            if request.server.trim().is_empty() || request.username.is_empty() {
                return Err(bad(
                    "a docker-registry secret needs a server and a username".into(),
                ));
            }
            // Credentials go in username and password, never in the
            // server, which is shown and logged.
            if request.server.contains('@') {
                return Err(bad(
                    "the registry server must not carry credentials (user@...): give them as username and password".into(),
                ));
            }
            let secret = RegistrySecret {
                name: request.name,
                server: request.server,
                username: request.username,
                password: request.password,
            };
            tracing::info!(secret = %secret.name, server = %secret.server, "secret created");
            state
                .writes
                .run(move |store| store.create_secret(&secret))
                .await?;
        }
        SecretType::Generic => {
            let secret = generic_secret(request, namespace.clone())?;
            state
                .writes
                .run(move |store| store.create_generic_secret(&secret))
                .await?;
            tracing::info!(secret = %name, "secret created");
        }
    }
    // A workspace may have been waiting for it.
    let _ = state.look_again.send(());
    Ok((
        StatusCode::CREATED,
        Json(SecretView {
            name,
            namespace,
            kind,
        }),
    ))
}

/// A generic secret's data, checked: keys as Kubernetes allows, base64
/// values, no more in all than a kubeconfig may hold.
fn generic_secret(request: SecretCreate, namespace: String) -> Result<GenericSecret, ApiError> {
    use base64::Engine;
    let bad = |message: String| ApiError::BadRequest(message);
    if request.data.is_empty() {
        return Err(bad(
            "a generic secret needs data (e.g. --from-file=kubeconfig=PATH)".into(),
        ));
    }
    let mut data = BTreeMap::new();
    let mut total = 0;
    for (key, value) in request.data {
        check_secret_key(&key).map_err(|e| bad(format!("secret data: {e}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_bytes())
            .map_err(|e| bad(format!("secret data {key}: not base64: {e}")))?;
        total += bytes.len();
        if total > KUBECONFIG_MAX as usize {
            return Err(bad(format!(
                "secret data: more than {} MiB in all",
                KUBECONFIG_MAX >> 20
            )));
        }
        data.insert(key, bytes);
    }
    Ok(GenericSecret {
        name: request.name,
        namespace,
        data,
    })
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct DeleteQuery {
    /// Delete even while a workspace or module names it.
    #[serde(default)]
    force: bool,
}

#[utoipa::path(delete, path = "/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path, description = "The secret's name"), DeleteQuery), responses((status = 204, description = "Deleted"), (status = 404, description = "No such object", body = ProblemDetails, content_type = "application/problem+json"), (status = 409, description = "A workspace or module still names it (without force)", body = ProblemDetails, content_type = "application/problem+json")))]
async fn delete_secret(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    axum::extract::Query(query): axum::extract::Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let referrers = referrers(&state.desired.borrow(), &name);
    if !referrers.is_empty() && !query.force {
        return Err(ApiError::SecretInUse(format!(
            "secret {name} is still used by {} (delete with --force to remove it anyway)",
            referrers.join(", ")
        )));
    }
    let stored = name.clone();
    if !state
        .writes
        .run(move |store| store.delete_secret(&stored))
        .await?
    {
        return Err(ApiError::NoSuchSecret(name));
    }
    tracing::info!(secret = %name, "secret deleted");
    let _ = state.look_again.send(());
    Ok(StatusCode::NO_CONTENT)
}

/// Workspaces whose kubeconfig and modules whose image pulls name a secret.
fn referrers(desired: &DesiredState, name: &str) -> Vec<String> {
    let workspaces = desired.workspaces.values().filter_map(|w| {
        let reference = w.spec.connection.secret_reference.as_ref()?;
        (reference.name == name).then(|| format!("workspace {}", w.key))
    });
    let modules = desired
        .modules
        .values()
        .filter(|m| m.runner.pull_secrets.iter().any(|s| s == name))
        .map(|m| format!("module {}", m.key));
    workspaces.chain(modules).collect()
}

fn joined<'a>(problems: impl Iterator<Item = &'a Problem>) -> Option<String> {
    let texts: Vec<String> = problems.map(Problem::short).collect();
    (!texts.is_empty()).then(|| texts.join("; "))
}
