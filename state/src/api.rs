//! The control API's wire types, shared by forkletd and the forklet CLI.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::event::EventReason;
pub use crate::hibernation::{OverrideAction, SleepReason};
pub use crate::manifest::Kind;
pub use crate::operation::Operation;
pub use crate::schedule::Transition;
use crate::store::Phase;

/// One module as `forklet get` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModuleView {
    pub name: String,
    pub namespace: String,
    pub workspace: String,
    pub workspace_namespace: String,
    pub phase: ModulePhase,
    pub message: String,
    pub container_id: Option<String>,
    pub image: Option<String>,
    /// Whether the module should be asleep now, for whatever reason.
    pub hibernated: bool,
    /// Why it should be asleep: its manifest, its workspace's, an override,
    /// its workspace's schedule.
    #[serde(default)]
    pub sleep_reason: Option<SleepReason>,
    /// A manual sleep or resume of this module in force (`forklet
    /// sleep|resume`), even when another reason decides.
    #[serde(default, rename = "override")]
    pub manual_override: Option<OverrideView>,
    /// The manifest file that defines the module, when one does.
    pub file: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Map<String, Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub metadata: Map<String, Value>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    /// Failed attempts in a row at the current step.
    #[serde(default)]
    pub attempts: u32,
    /// When a failed step is tried again.
    #[serde(default)]
    pub next_retry: Option<DateTime<Utc>>,
    /// The lifecycle call under way, or the one that failed (`install`,
    /// `uninstall`, `sleep`, `resume`).
    #[serde(default)]
    pub operation: Option<Operation>,
    /// Newest last; only on single-module requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
    /// The definition's `metadata.name` and `version`, when the manifest resolves.
    #[serde(default)]
    pub definition: Option<String>,
    /// The Docker network the runner joins to reach its cluster (none: the
    /// default bridge).
    #[serde(default)]
    pub network: Option<String>,
    /// The runner container as the engine sees it now; only on
    /// single-module requests, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerView>,
}

/// A runner container, read from the engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RunnerView {
    /// The container's name (`forklet-...`).
    pub container: String,
    /// Where forkletd calls the module (loopback and the published port).
    pub endpoint: Option<String>,
    /// Docker's word: `running`, `exited`, `restarting`, ...
    pub state: String,
    pub started_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub at: DateTime<Utc>,
    pub reason: EventReason,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    pub name: String,
    pub namespace: String,
    pub phase: WorkspacePhase,
    pub message: String,
    pub connection: String,
    pub hibernated: bool,
    pub modules: usize,
    pub file: Option<String>,
    #[serde(default)]
    pub schedule: Option<ScheduleView>,
    /// The next scheduled sleep or wake.
    #[serde(default)]
    pub next_transition: Option<TransitionView>,
    #[serde(default, rename = "override")]
    pub manual_override: Option<OverrideView>,
    #[serde(default)]
    pub sleep_reason: Option<SleepReason>,
    /// How the workspace's modules reach its cluster (none: no module of
    /// it receives a kubeconfig).
    #[serde(default)]
    pub cluster: Option<ClusterView>,
    /// The workspace's own events (overrides, scheduled transitions),
    /// newest last; only on single-workspace requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventView>,
}

/// `GET /v1/workspaces/{namespace}/{name}/doctor`: the API server asked
/// for `/version` the way runners reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DoctorView {
    pub workspace: String,
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<CheckView>,
}

/// One step of `forklet doctor`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckView {
    pub name: CheckName,
    pub ok: bool,
    pub detail: String,
}

/// The way from runners to a workspace's API server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClusterView {
    /// The server the runners call.
    pub endpoint: Option<String>,
    /// `direct`, `network NAME`, `relay ADDRESS -> TARGET` or `host.docker.internal`.
    pub via: Option<String>,
    /// The Docker network the runners join.
    pub network: Option<String>,
    /// Why the cluster cannot be reached, when it cannot.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScheduleView {
    pub sleep: String,
    pub wake: Option<String>,
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionView {
    pub at: DateTime<Utc>,
    pub action: Transition,
}

/// A manual sleep or resume and how long it lasts (`until: null`: until
/// replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OverrideView {
    pub action: OverrideAction,
    pub until: Option<DateTime<Utc>>,
}

/// `POST .../sleep|resume`: at most one of the two; with neither, the
/// override lasts until the next scheduled transition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideRequest {
    pub for_seconds: Option<u64>,
    pub until: Option<DateTime<Utc>>,
}

/// One event of `GET /v1/events`: a module's phase change, call, failure,
/// progress, or its deletion (`reason: Deleted`); a workspace's override or
/// scheduled transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StreamEventView {
    pub id: i64,
    /// Older daemons sent only modules' events.
    #[serde(default = "module_kind")]
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub reason: EventReason,
    pub message: String,
}

/// The control API's version: what `/v1/...` paths and these types are.
pub const API_VERSION: &str = "v1";

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    /// forkletd's release.
    pub version: String,
    pub api: String,
}

/// `POST /v1/secrets`: the password or data travels once, inbound, and is
/// never sent back by any endpoint.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretCreate {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SecretType,
    /// `default` when not given.
    #[serde(default)]
    pub namespace: Option<String>,
    /// docker-registry only.
    #[serde(default)]
    pub server: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// generic only: each key's bytes, base64 (as a Kubernetes secret's `data`).
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretCreate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretCreate")
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("server", &self.server)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecretView {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: SecretType,
}

/// A module's phase as the API shows it: the operator's phases, and
/// `pending` while a manifest names a module forklet has not started yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModulePhase {
    Pending,
    Installing,
    Ready,
    Sleeping,
    Sleeped,
    Resuming,
    Uninstalling,
    Failed,
    /// A phase this release does not know (sent by a newer forkletd): the
    /// rest of the answer still reads.
    #[serde(other)]
    Unknown,
}

impl ModulePhase {
    pub const ALL: [ModulePhase; 8] = [
        ModulePhase::Pending,
        ModulePhase::Installing,
        ModulePhase::Ready,
        ModulePhase::Sleeping,
        ModulePhase::Sleeped,
        ModulePhase::Resuming,
        ModulePhase::Uninstalling,
        ModulePhase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ModulePhase::Pending => "pending",
            ModulePhase::Installing => "installing",
            ModulePhase::Ready => "ready",
            ModulePhase::Sleeping => "sleeping",
            ModulePhase::Sleeped => "sleeped",
            ModulePhase::Resuming => "resuming",
            ModulePhase::Uninstalling => "uninstalling",
            ModulePhase::Failed => "failed",
            ModulePhase::Unknown => "unknown",
        }
    }
}

impl From<Phase> for ModulePhase {
    fn from(phase: Phase) -> Self {
        match phase {
            Phase::Installing => ModulePhase::Installing,
            Phase::Ready => ModulePhase::Ready,
            Phase::Sleeping => ModulePhase::Sleeping,
            Phase::Sleeped => ModulePhase::Sleeped,
            Phase::Resuming => ModulePhase::Resuming,
            Phase::Uninstalling => ModulePhase::Uninstalling,
            Phase::Failed => ModulePhase::Failed,
        }
    }
}

impl fmt::Display for ModulePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for ModulePhase {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|phase| phase.as_str() == text)
            .ok_or_else(|| format!("unknown phase {text:?}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum WorkspacePhase {
    Ready,
    Hibernated,
    /// Its manifest has a problem.
    Failed,
    /// A phase this release does not know (sent by a newer forkletd).
    #[serde(other)]
    Unknown,
}

impl fmt::Display for WorkspacePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            WorkspacePhase::Ready => "ready",
            WorkspacePhase::Hibernated => "hibernated",
            WorkspacePhase::Failed => "failed",
            WorkspacePhase::Unknown => "unknown",
        })
    }
}

/// The steps of `forklet doctor`, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum CheckName {
    /// The workspace can be checked: it exists, and a module of it gets
    /// its kubeconfig.
    Workspace,
    /// The workspace's kubeconfig reads and names a server.
    Kubeconfig,
    /// Where the runners' traffic goes.
    Route,
    Connect,
    Tls,
    /// `GET /version` with the kubeconfig's credentials.
    Version,
    /// A step this release does not know (sent by a newer forkletd).
    #[serde(other)]
    Unknown,
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            CheckName::Workspace => "workspace",
            CheckName::Kubeconfig => "kubeconfig",
            CheckName::Route => "route",
            CheckName::Connect => "connect",
            CheckName::Tls => "tls",
            CheckName::Version => "version",
            CheckName::Unknown => "unknown",
        })
    }
}

/// The secret types of `kubectl create secret`, as far as forklet uses them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum SecretType {
    /// Registry credentials, for `imagePullSecrets`.
    #[default]
    DockerRegistry,
    /// Keys and bytes, e.g. a kubeconfig for `secretReference`.
    Generic,
}

impl SecretType {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretType::DockerRegistry => crate::store::DOCKER_REGISTRY,
            SecretType::Generic => crate::store::GENERIC,
        }
    }
}

impl fmt::Display for SecretType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

fn module_kind() -> Kind {
    Kind::Module
}

/// Every error answer: RFC 9457 problem details
/// (`Content-Type: application/problem+json`), with a stable `code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProblemDetails {
    /// `urn:forklet:problem:CODE`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The same for every answer with this code.
    pub title: String,
    pub status: u16,
    /// What went wrong this time, in words for people.
    pub detail: String,
    pub code: ErrorCode,
    /// The detail again, as forklet 0.1 CLIs before problem details read it.
    #[serde(default)]
    pub error: String,
}

impl ProblemDetails {
    pub const CONTENT_TYPE: &str = "application/problem+json";

    pub fn new(code: ErrorCode, status: u16, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            kind: format!("urn:forklet:problem:{}", code.as_str()),
            title: code.title().to_owned(),
            status,
            error: detail.clone(),
            detail,
            code,
        }
    }
}

/// Why a request failed, for programs: stable across releases of API v1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 404: no such module, workspace, secret or override.
    NotFound,
    /// 400: a name, query or body is not acceptable.
    InvalidRequest,
    /// 413.
    TooLarge,
    /// 409: a secret of that name exists.
    SecretExists,
    /// 409: a workspace or module still names the secret.
    SecretInUse,
    /// 409: a manifest says `hibernated: true`; an override does not fight it.
    ManifestDecides,
    /// 409: the module's manifest still defines it.
    StillDefined,
    /// 409: the workspace has nothing to check.
    NothingToCheck,
    /// 404: no such path; 405: not with this method.
    NoRoute,
    /// 503: forkletd is shutting down.
    Stopping,
    /// 408: the request took too long (60 s).
    Timeout,
    /// 500.
    Internal,
    /// A code this release does not know (sent by a newer forkletd).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "not_found",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::SecretExists => "secret_exists",
            ErrorCode::SecretInUse => "secret_in_use",
            ErrorCode::ManifestDecides => "manifest_decides",
            ErrorCode::StillDefined => "still_defined",
            ErrorCode::NothingToCheck => "nothing_to_check",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::Stopping => "stopping",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "Not found",
            ErrorCode::InvalidRequest => "Invalid request",
            ErrorCode::TooLarge => "Request too large",
            ErrorCode::SecretExists => "Secret exists",
            ErrorCode::SecretInUse => "Secret in use",
            ErrorCode::ManifestDecides => "The manifest decides",
            ErrorCode::StillDefined => "Still defined by a manifest",
            ErrorCode::NothingToCheck => "Nothing to check",
            ErrorCode::NoRoute => "No such endpoint or method",
            ErrorCode::Stopping => "forkletd is stopping",
            ErrorCode::Timeout => "Request timed out",
            ErrorCode::Internal => "Internal error",
            ErrorCode::Unknown => "Unknown error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_store_phase_has_the_same_word_on_the_wire() {
        for phase in [
            Phase::Installing,
            Phase::Ready,
            Phase::Sleeped,
            Phase::Failed,
        ] {
            assert_eq!(ModulePhase::from(phase).as_str(), phase.as_str());
            let wire = serde_json::to_value(ModulePhase::from(phase)).unwrap();
            assert_eq!(wire, phase.as_str());
        }
    }

    #[test]
    fn an_answer_from_a_newer_daemon_still_reads() {
        let phase: ModulePhase = serde_json::from_str("\"updating\"").unwrap();
        assert_eq!(phase, ModulePhase::Unknown);
        assert!(
            "unknown".parse::<ModulePhase>().is_err(),
            "not a phase to wait for"
        );
        let phase: WorkspacePhase = serde_json::from_str("\"draining\"").unwrap();
        assert_eq!(phase, WorkspacePhase::Unknown);
        let check: CheckName = serde_json::from_str("\"dns\"").unwrap();
        assert_eq!(check, CheckName::Unknown);
    }

    #[test]
    fn a_problem_names_its_code_in_type_and_code() {
        let problem = ProblemDetails::new(ErrorCode::SecretInUse, 409, "workspace default/dev");
        let wire = serde_json::to_value(&problem).unwrap();
        assert_eq!(wire["type"], "urn:forklet:problem:secret_in_use");
        assert_eq!(wire["code"], "secret_in_use");
        assert_eq!(wire["status"], 409);
        assert_eq!(wire["detail"], "workspace default/dev");
        let back: ProblemDetails = serde_json::from_value(wire).unwrap();
        assert_eq!(back, problem);
    }
}
