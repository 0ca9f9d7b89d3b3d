//! The control API's wire types, shared by forkletd and the forklet CLI.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One module as `forklet get` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleView {
    pub name: String,
    pub namespace: String,
    pub workspace: String,
    pub workspace_namespace: String,
    /// `installing`, `ready`, `sleeping`, `sleeped`, `resuming`,
    /// `uninstalling`, `failed`; `pending` while a manifest names a module
    /// forklet has not started yet.
    pub phase: String,
    pub message: String,
    pub container_id: Option<String>,
    pub image: Option<String>,
    /// Whether the module should be asleep now, for whatever reason.
    pub hibernated: bool,
    /// Why it should be asleep: its manifest, its workspace's, an override,
    /// its workspace's schedule.
    #[serde(default)]
    pub sleep_reason: Option<String>,
    /// A manual sleep or resume of this module in force (`forklet
    /// sleep|resume`), even when another reason decides.
    #[serde(default, rename = "override")]
    pub manual_override: Option<OverrideView>,
    /// The manifest file that defines the module, when one does.
    pub file: Option<String>,
    pub config: Map<String, Value>,
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
    pub operation: Option<crate::operation::Operation>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub at: DateTime<Utc>,
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    pub name: String,
    pub namespace: String,
    /// `ready`, `hibernated` or `failed`.
    pub phase: String,
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
    pub sleep_reason: Option<String>,
    /// How the workspace's modules reach its cluster (none: no module of
    /// it receives a kubeconfig).
    #[serde(default)]
    pub cluster: Option<ClusterView>,
}

/// `GET /v1/workspaces/{namespace}/{name}/doctor`: the API server asked
/// for `/version` the way runners reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorView {
    pub workspace: String,
    /// Every check passed.
    pub ok: bool,
    pub checks: Vec<CheckView>,
}

/// One step: `route`, `connect`, `tls`, `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// The way from runners to a workspace's API server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
pub struct ScheduleView {
    pub sleep: String,
    pub wake: Option<String>,
    pub timezone: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionView {
    pub at: DateTime<Utc>,
    /// `sleep` or `wake`.
    pub action: String,
}

/// A manual sleep or resume and how long it lasts (`until: null`: until
/// replaced).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideView {
    pub action: String,
    pub until: Option<DateTime<Utc>>,
}

/// `POST .../sleep|resume`: at most one of the two; with neither, the
/// override lasts until the next scheduled transition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OverrideRequest {
    pub for_seconds: Option<u64>,
    pub until: Option<DateTime<Utc>>,
}

/// One event of `GET /v1/events`: a module's phase change, call, failure,
/// progress, or its deletion (`reason: Deleted`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamEventView {
    pub id: i64,
    pub namespace: String,
    pub name: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub message: String,
}

/// The control API's version: what `/v1/...` paths and these types are.
pub const API_VERSION: &str = "v1";

/// `GET /v1/version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionView {
    /// forkletd's release.
    pub version: String,
    pub api: String,
}

/// Every error response carries this body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// `POST /v1/secrets`: the password or data travels once, inbound, and is
/// never sent back by any endpoint.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretCreate {
    pub name: String,
    /// `docker-registry` or `generic`.
    #[serde(rename = "type")]
    pub kind: String,
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
pub struct SecretView {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(rename = "type")]
    pub kind: String,
}
