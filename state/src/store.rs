//! The SQLite store: for each module its phase, metadata and history.
//!
//! Every change is one transaction, committed before the daemon takes the
//! next step, so a crash loses at most the step that was in flight.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::api::SecretType;
use crate::event::EventReason;
use crate::hibernation::{Override, OverrideAction, Scope};
use crate::manifest::{Kind, ObjectKey};
use crate::operation::Operation;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("state database holds a corrupt {what} for module {key}: {detail}")]
    Corrupt {
        key: String,
        what: &'static str,
        detail: String,
    },
    #[error(
        "state database was written by a newer forklet (schema {found}, this one knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("secret {0} already exists")]
    SecretExists(String),
    #[error("state database holds a corrupt secret {name}: {detail}")]
    CorruptSecret { name: String, detail: String },
}

/// The phases users and tools know from the Forkspacer operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Installing,
    Ready,
    Sleeping,
    Sleeped,
    Resuming,
    Uninstalling,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Installing => "installing",
            Phase::Ready => "ready",
            Phase::Sleeping => "sleeping",
            Phase::Sleeped => "sleeped",
            Phase::Resuming => "resuming",
            Phase::Uninstalling => "uninstalling",
            Phase::Failed => "failed",
        }
    }
}

impl FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "installing" => Phase::Installing,
            "ready" => Phase::Ready,
            "sleeping" => Phase::Sleeping,
            "sleeped" => Phase::Sleeped,
            "resuming" => Phase::Resuming,
            "uninstalling" => Phase::Uninstalling,
            "failed" => Phase::Failed,
            other => return Err(format!("unknown phase {other:?}")),
        })
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What forklet knows of one module beyond its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRecord {
    pub key: ObjectKey,
    pub workspace: ObjectKey,
    pub phase: Phase,
    pub message: String,
    pub container_id: Option<String>,
    /// How the runner was set up; kept so it can be recreated to call
    /// `/uninstall` after its manifest is gone.
    pub runner: RunnerSettings,
    /// The config last sent to the module.
    pub config: Map<String, Value>,
    /// What the module returned; sent back on every later call.
    pub metadata: Map<String, Value>,
    /// The desired state's install hash at the last successful `/install`.
    pub installed_hash: Option<String>,
    /// Whether the last successful lifecycle call left the module asleep.
    pub asleep: bool,
    /// The lifecycle call started and not known to have succeeded: in
    /// flight, interrupted, or failed. Its effect is unknown until the call
    /// that reaches what the manifest asks now succeeds.
    pub operation: Option<Operation>,
    /// Failed attempts in a row at the current step; 0 once one succeeds.
    pub attempts: u32,
    /// When the failed step is tried again.
    pub next_retry: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
}

impl ModuleRecord {
    pub fn new(
        key: ObjectKey,
        workspace: ObjectKey,
        runner: RunnerSettings,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            key,
            workspace,
            phase: Phase::Installing,
            message: String::new(),
            container_id: None,
            runner,
            config: Map::new(),
            metadata: Map::new(),
            installed_hash: None,
            asleep: false,
            operation: None,
            attempts: 0,
            next_retry: None,
            created_at: now,
            last_activity: now,
        }
    }
}

/// What a runner container is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSettings {
    pub image: String,
    /// A runner labelled with another hash is replaced.
    pub runner_hash: String,
    /// Whether the workspace kubeconfig is mounted (`workspace` permission).
    pub kubeconfig: bool,
    pub cpu_shares: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// Names of the registry secrets to pull the image with.
    #[serde(default)]
    pub pull_secrets: Vec<String>,
    /// Whether the runner gets the control API (`controller` permission).
    #[serde(default)]
    pub controller: bool,
    /// The Docker network the runner joins to reach its workspace's
    /// cluster (`None`: Docker's default bridge). Set by the daemon, from
    /// what the engine shows; not part of the runner hash.
    #[serde(default)]
    pub network: Option<String>,
}

/// Credentials for a private registry (`kubectl create secret docker-registry`).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrySecret {
    pub name: String,
    pub server: String,
    pub username: String,
    pub password: String,
}

/// Never prints the password, so no log line or panic message can leak it.
impl std::fmt::Debug for RegistrySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrySecret")
            .field("name", &self.name)
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

pub const DOCKER_REGISTRY: &str = "docker-registry";
pub const GENERIC: &str = "generic";

/// Keys and their bytes (`kubectl create secret generic`): a workspace's
/// `connection.secretReference` reads its kubeconfig from one.
#[derive(Clone, PartialEq, Eq)]
pub struct GenericSecret {
    pub name: String,
    pub namespace: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Keys only: the values are credentials.
impl std::fmt::Debug for GenericSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericSecret")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What may be shown of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSummary {
    pub name: String,
    pub namespace: String,
    pub kind: SecretType,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: DateTime<Utc>,
    pub reason: EventReason,
    pub message: String,
}

/// Each entry moves the schema one version up; never edit a shipped entry.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE modules (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        workspace_namespace TEXT NOT NULL,
        workspace_name TEXT NOT NULL,
        phase TEXT NOT NULL,
        message TEXT NOT NULL,
        container_id TEXT,
        runner TEXT NOT NULL,
        config TEXT NOT NULL,
        metadata TEXT NOT NULL,
        installed_hash TEXT,
        asleep INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_retry TEXT,
        created_at TEXT NOT NULL,
        last_activity TEXT NOT NULL,
        PRIMARY KEY (namespace, name)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        at TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_module ON events (namespace, name, id);
    CREATE TABLE manifests (path TEXT PRIMARY KEY, text TEXT NOT NULL);
    CREATE TABLE fetched_definitions (url TEXT PRIMARY KEY, text TEXT NOT NULL, fetched_at TEXT NOT NULL);
    CREATE TABLE overrides (
        scope TEXT NOT NULL,
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        action TEXT NOT NULL,
        until TEXT,
        PRIMARY KEY (scope, namespace, name)
    );
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        server TEXT NOT NULL,
        username TEXT NOT NULL,
        password TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
", "
    ALTER TABLE modules ADD COLUMN operation TEXT;
    UPDATE modules SET operation = CASE phase
        WHEN 'installing' THEN 'install'
        WHEN 'uninstalling' THEN 'uninstall'
        WHEN 'sleeping' THEN 'sleep'
        WHEN 'resuming' THEN 'resume'
    END;
", "
    ALTER TABLE secrets ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE secrets ADD COLUMN data TEXT NOT NULL DEFAULT '{}';
", "
    ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'Module';
    CREATE INDEX events_by_object ON events (kind, namespace, name, id);
    DROP INDEX events_by_module;
"];

/// How many `Deleted` events (of modules gone) are kept.
const TOMBSTONES_KEPT: i64 = 1000;

/// One event of the stream: which object, when, why.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub id: i64,
    pub kind: Kind,
    pub object: ObjectKey,
    pub at: DateTime<Utc>,
    pub reason: EventReason,
    pub message: String,
}

/// Each connection's page cache, in KiB as SQLite takes it (negative).
/// Reads of a few rows (the common case) need little, and the kernel's page
/// cache holds the rest: SQLite's default of 2 MiB a connection would be a
/// good part of the daemon's memory.
const CACHE_KIB: i64 = -512;

/// How many events a module keeps; older ones are dropped as new ones come.
const EVENTS_KEPT: i64 = 200;

pub struct Store {
    conn: Mutex<Connection>,
    reader: Option<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating, mode 0600) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        // Create it ourselves so it is never world-readable, not even briefly.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(open_err)?;
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed phase change survives power loss, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        let mut store = Self {
            conn: Mutex::new(conn),
            reader: None,
        };
        store.migrate()?;
        // A second connection for reads: with WAL it sees the last commit
        // without waiting for one in progress (and its fsync).
        let reader = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        reader.busy_timeout(std::time::Duration::from_secs(5))?;
        reader.pragma_update(None, "cache_size", CACHE_KIB)?;
        store.reader = Some(Mutex::new(reader));
        Ok(store)
    }

    /// Opens an existing database to read, never to write: nothing is made
    /// or migrated under a daemon that may be using it (`forklet export
    /// --include-secrets`).
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        Ok(Self {
            conn: Mutex::new(conn),
            reader: None,
        })
    }

    /// The connection for reads that change nothing.
    fn read(&self) -> MutexGuard<'_, Connection> {
        self.reader
            .as_ref()
            .unwrap_or(&self.conn)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets modules and overrides whose names are not Kubernetes names:
    /// an earlier forklet accepted them, and nothing can address them now.
    /// Their runners become orphans and are removed as such. Returns the
    /// `namespace/name` of each, for the daemon to say so.
    pub fn drop_unaddressable(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut dropped = Vec::new();
        for table in ["modules", "overrides"] {
            let names: Vec<(String, String)> = tx
                .prepare(&format!("SELECT DISTINCT namespace, name FROM {table}"))?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (namespace, name) in names {
                if ObjectKey::new(&namespace, &name).is_ok() {
                    continue;
                }
                for from in [table, "events"] {
                    tx.execute(
                        &format!("DELETE FROM {from} WHERE namespace = ?1 AND name = ?2"),
                        params![namespace, name],
                    )?;
                }
                dropped.push(format!("{namespace}/{name}"));
            }
        }
        tx.commit()?;
        Ok(dropped)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-done
        // transaction behind (rusqlite rolls back on drop), so go on.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", index as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// A setting, created with `init` on first use (e.g. the instance id).
    pub fn setting_or_init(
        &self,
        key: &str,
        init: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        let conn = self.lock();
        let found: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()?;
        if let Some(value) = found {
            return Ok(value);
        }
        let value = init();
        conn.execute(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(value)
    }

    pub fn modules(&self) -> Result<Vec<ModuleRecord>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare(&format!("{SELECT_MODULE} ORDER BY namespace, name"))?;
        let rows = stmt.query_map([], RawRecord::from_row)?;
        rows.map(|row| row?.decode()).collect()
    }

    /// How many modules are in each phase.
    pub fn phase_counts(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare("SELECT phase, COUNT(*) FROM modules GROUP BY phase")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)?.unsigned_abs()))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Recorded modules whose runners get the workspace kubeconfig, each
    /// with its workspace (names that are not Kubernetes names are left out).
    pub fn kubeconfig_modules(&self) -> Result<Vec<(ObjectKey, ObjectKey)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare(
            "SELECT workspace_namespace, workspace_name, namespace, name FROM modules
             WHERE json_extract(runner, '$.kubeconfig')",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok([
                row.get::<_, String>(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
            ])
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let [ws_namespace, ws_name, namespace, name] = row?;
            if let (Ok(workspace), Ok(module)) = (
                ObjectKey::new(ws_namespace, ws_name),
                ObjectKey::new(namespace, name),
            ) {
                keys.push((workspace, module));
            }
        }
        Ok(keys)
    }

    /// Every recorded module's key (names that are not Kubernetes names are
    /// left out).
    pub fn module_keys(&self) -> Result<std::collections::HashSet<ObjectKey>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare("SELECT namespace, name FROM modules")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut keys = std::collections::HashSet::new();
        for row in rows {
            let (namespace, name) = row?;
            keys.extend(ObjectKey::new(namespace, name).ok());
        }
        Ok(keys)
    }

    pub fn module(&self, key: &ObjectKey) -> Result<Option<ModuleRecord>, StoreError> {
        let conn = self.read();
        let raw = conn
            .query_row(
                &format!("{SELECT_MODULE} WHERE namespace = ?1 AND name = ?2"),
                params![key.namespace(), key.name()],
                RawRecord::from_row,
            )
            .optional()?;
        raw.map(RawRecord::decode).transpose()
    }

    /// Updates only the message of a module, for progress on long work.
    pub fn set_message(&self, key: &ObjectKey, message: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE modules SET message = ?3 WHERE namespace = ?1 AND name = ?2",
            params![key.namespace(), key.name(), message],
        )?;
        Ok(())
    }

    /// Writes `record` and, in the same transaction, an event for its history.
    pub fn save(
        &self,
        record: &ModuleRecord,
        reason: EventReason,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO modules (namespace, name, workspace_namespace, workspace_name, phase, message,
                 container_id, runner, config, metadata, installed_hash, asleep, attempts, next_retry,
                 created_at, last_activity, operation)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
             ON CONFLICT (namespace, name) DO UPDATE SET
                 workspace_namespace = excluded.workspace_namespace, workspace_name = excluded.workspace_name,
                 phase = excluded.phase, message = excluded.message, container_id = excluded.container_id,
                 runner = excluded.runner, config = excluded.config, metadata = excluded.metadata,
                 installed_hash = excluded.installed_hash, asleep = excluded.asleep,
                 attempts = excluded.attempts, next_retry = excluded.next_retry,
                 last_activity = excluded.last_activity, operation = excluded.operation",
            params![
                record.key.namespace(),
                record.key.name(),
                record.workspace.namespace(),
                record.workspace.name(),
                record.phase.as_str(),
                record.message,
                record.container_id,
                serde_json::to_string(&record.runner).expect("runner settings serialize"),
                Value::Object(record.config.clone()).to_string(),
                Value::Object(record.metadata.clone()).to_string(),
                record.installed_hash,
                record.asleep,
                record.attempts,
                record.next_retry.map(|t| t.to_rfc3339()),
                record.created_at.to_rfc3339(),
                record.last_activity.to_rfc3339(),
                record.operation.map(Operation::as_str),
            ],
        )?;
        let key = (Kind::Module, &record.key);
        insert_event(&tx, key, record.last_activity, reason, message)?;
        tx.commit()?;
        Ok(())
    }

    /// Adds an event to a recorded module's history; `false` (and nothing
    /// written) when forklet has no record of the module.
    pub fn add_event(
        &self,
        key: &ObjectKey,
        reason: EventReason,
        message: &str,
    ) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM modules WHERE namespace = ?1 AND name = ?2)",
            params![key.namespace(), key.name()],
            |row| row.get(0),
        )?;
        if known {
            insert_event(&tx, (Kind::Module, key), Utc::now(), reason, message)?;
        }
        tx.commit()?;
        Ok(known)
    }

    /// An event in the history of the module or workspace `scope` names.
    pub fn note(
        &self,
        scope: Scope,
        key: &ObjectKey,
        reason: EventReason,
        message: &str,
    ) -> Result<(), StoreError> {
        match scope {
            Scope::Module => self.add_event(key, reason, message).map(drop),
            Scope::Workspace => self.add_workspace_event(key, reason, message),
        }
    }

    /// Adds an event to a workspace's history (kept whether or not the
    /// workspace's manifest stays: its last [`EVENTS_KEPT`] events).
    pub fn add_workspace_event(
        &self,
        key: &ObjectKey,
        reason: EventReason,
        message: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        insert_event(&tx, (Kind::Workspace, key), Utc::now(), reason, message)?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a module; its history goes with it.
    pub fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        // Event ids only grow, whatever is deleted: followers of the
        // stream resume after the last id they saw.
        let next: i64 = tx.query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM events", [], |row| {
            row.get(0)
        })?;
        let existed = tx.execute(
            "DELETE FROM modules WHERE namespace = ?1 AND name = ?2",
            params![key.namespace(), key.name()],
        )? > 0;
        if !existed {
            return Ok(());
        }
        tx.execute(
            "DELETE FROM events WHERE kind = 'Module' AND namespace = ?1 AND name = ?2",
            params![key.namespace(), key.name()],
        )?;
        // The last word on a module: what the event stream tells followers
        // (`forklet wait --for=delete`). Tombstones are bounded in all.
        tx.execute(
            "INSERT INTO events (id, namespace, name, at, reason, message) VALUES (?1, ?2, ?3, ?4, 'Deleted', 'forgotten')",
            params![next, key.namespace(), key.name(), Utc::now().to_rfc3339()],
        )?;
        tx.execute(
            "DELETE FROM events WHERE reason = 'Deleted' AND id NOT IN
                 (SELECT id FROM events WHERE reason = 'Deleted' ORDER BY id DESC LIMIT ?1)",
            [TOMBSTONES_KEPT],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every object's (or only `object`'s) events after `after` (an event
    /// id), oldest first, at most `limit`.
    pub fn events_after(
        &self,
        after: i64,
        limit: usize,
        object: Option<(Kind, &ObjectKey)>,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare(
            "SELECT id, kind, namespace, name, at, reason, message FROM events WHERE id > ?1
                 AND (?3 IS NULL OR (kind = ?3 AND namespace = ?4 AND name = ?5))
             ORDER BY id LIMIT ?2",
        )?;
        let kind = object.map(|(kind, _)| kind.to_string());
        let (namespace, name) = (
            object.map(|(_, key)| key.namespace()),
            object.map(|(_, key)| key.name()),
        );
        let rows = stmt.query_map(params![after, limit as i64, kind, namespace, name], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, String>(5)?,
                row.get::<_, String>(6)?,
            ))
        })?;
        let mut events = Vec::new();
        for row in rows {
            let (id, kind, namespace, name, at, reason, message) = row?;
            let (Ok(object), Ok(at)) = (
                ObjectKey::new(namespace, name),
                DateTime::parse_from_rfc3339(&at),
            ) else {
                continue;
            };
            events.push(StreamEvent {
                id,
                kind: event_kind(&kind),
                object,
                at: at.with_timezone(&Utc),
                reason: reason.parse().unwrap_or(EventReason::Unknown),
                message,
            });
        }
        Ok(events)
    }

    /// The newest event's id (0: none yet).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = self
            .read()
            .query_row("SELECT MAX(id) FROM events", [], |row| row.get(0))?;
        Ok(id.unwrap_or(0))
    }

    /// The last text of each manifest file that parsed cleanly: what stands
    /// in for a file that is broken when the daemon starts.
    pub fn last_good_manifest(&self, path: &Path) -> Result<Option<String>, StoreError> {
        let conn = self.read();
        let text = conn
            .query_row(
                "SELECT text FROM manifests WHERE path = ?1",
                [path.to_string_lossy()],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text)
    }

    pub fn save_last_good_manifest(&self, path: &Path, text: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO manifests (path, text) VALUES (?1, ?2) ON CONFLICT (path) DO UPDATE SET text = excluded.text",
            params![path.to_string_lossy(), text],
        )?;
        Ok(())
    }

    /// Keeps the last good text only of the files in `present`: a file
    /// deleted while the daemon was down is gone, and a new file of that
    /// name later never brings its old objects back.
    pub fn keep_manifests(&self, present: &[std::path::PathBuf]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let paths: Vec<String> = tx
            .prepare("SELECT path FROM manifests")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        for path in paths {
            if !present.iter().any(|p| p.to_string_lossy() == path.as_str()) {
                tx.execute("DELETE FROM manifests WHERE path = ?1", [&path])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn forget_manifest(&self, path: &Path) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM manifests WHERE path = ?1",
            [path.to_string_lossy()],
        )?;
        Ok(())
    }

    /// A definition fetched from `url`, kept so that restarts and lifecycle
    /// calls never need the network again.
    pub fn fetched_definition(&self, url: &str) -> Result<Option<String>, StoreError> {
        let conn = self.read();
        let text = conn
            .query_row(
                "SELECT text FROM fetched_definitions WHERE url = ?1",
                [url],
                |row| row.get(0),
            )
            .optional()?;
        Ok(text)
    }

    pub fn save_fetched_definition(&self, url: &str, text: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO fetched_definitions (url, text, fetched_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (url) DO UPDATE SET text = excluded.text, fetched_at = excluded.fetched_at",
            params![url, text, Utc::now().to_rfc3339()],
        )?;
        Ok(())
    }

    pub fn create_secret(&self, secret: &RegistrySecret) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO secrets (name, type, server, username, password, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name) DO NOTHING",
            params![
                secret.name,
                DOCKER_REGISTRY,
                secret.server,
                secret.username,
                secret.password,
                Utc::now().to_rfc3339()
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::SecretExists(secret.name.clone()));
        }
        Ok(())
    }

    pub fn create_generic_secret(&self, secret: &GenericSecret) -> Result<(), StoreError> {
        use base64::Engine;
        let data: BTreeMap<&str, String> = secret
            .data
            .iter()
            .map(|(key, bytes)| {
                let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
                (key.as_str(), encoded)
            })
            .collect();
        let inserted = self.lock().execute(
            "INSERT INTO secrets (name, type, server, username, password, created_at, namespace, data)
             VALUES (?1, ?2, '', '', '', ?3, ?4, ?5) ON CONFLICT (name) DO NOTHING",
            params![
                secret.name,
                GENERIC,
                Utc::now().to_rfc3339(),
                secret.namespace,
                serde_json::to_string(&data).map_err(|e| StoreError::CorruptSecret {
                    name: secret.name.clone(),
                    detail: e.to_string(),
                })?
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::SecretExists(secret.name.clone()));
        }
        Ok(())
    }

    /// A generic secret (`None` for none, or a secret of another type).
    pub fn generic_secret(&self, name: &str) -> Result<Option<GenericSecret>, StoreError> {
        use base64::Engine;
        let conn = self.read();
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT namespace, data FROM secrets WHERE name = ?1 AND type = ?2",
                params![name, GENERIC],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((namespace, data)) = row else {
            return Ok(None);
        };
        let corrupt = |detail: String| StoreError::CorruptSecret {
            name: name.to_owned(),
            detail,
        };
        let encoded: BTreeMap<String, String> =
            serde_json::from_str(&data).map_err(|e| corrupt(e.to_string()))?;
        let mut decoded = BTreeMap::new();
        for (key, value) in encoded {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .map_err(|e| corrupt(format!("key {key}: {e}")))?;
            decoded.insert(key, bytes);
        }
        Ok(Some(GenericSecret {
            name: name.to_owned(),
            namespace,
            data: decoded,
        }))
    }

    /// A registry secret (`None` for none, or a secret of another type).
    pub fn secret(&self, name: &str) -> Result<Option<RegistrySecret>, StoreError> {
        let conn = self.read();
        let secret = conn
            .query_row(
                "SELECT name, server, username, password FROM secrets WHERE name = ?1 AND type = ?2",
                params![name, DOCKER_REGISTRY],
                |row| {
                    Ok(RegistrySecret {
                        name: row.get(0)?,
                        server: row.get(1)?,
                        username: row.get(2)?,
                        password: row.get(3)?,
                    })
                },
            )
            .optional()?;
        Ok(secret)
    }

    /// Names, namespaces and types only: what may be shown.
    pub fn secret_names(&self) -> Result<Vec<SecretSummary>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare("SELECT name, namespace, type FROM secrets ORDER BY name")?;
        let rows = stmt.query_map([], |row| {
            let kind: String = row.get(2)?;
            Ok(SecretSummary {
                name: row.get(0)?,
                namespace: row.get(1)?,
                kind: match kind.as_str() {
                    GENERIC => SecretType::Generic,
                    _ => SecretType::DockerRegistry,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `false` when there was no such secret.
    pub fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM secrets WHERE name = ?1", [name])?
            > 0)
    }

    /// Sets (or replaces) the manual override of a module or workspace.
    pub fn set_override(
        &self,
        scope: Scope,
        key: &ObjectKey,
        value: &Override,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO overrides (scope, namespace, name, action, until) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope, namespace, name) DO UPDATE SET action = excluded.action, until = excluded.until",
            params![scope.as_str(), key.namespace(), key.name(), value.action.as_str(), value.until.map(|t| t.to_rfc3339())],
        )?;
        Ok(())
    }

    /// Removes the override of one object; `false` when it had none.
    pub fn delete_override(&self, scope: Scope, key: &ObjectKey) -> Result<bool, StoreError> {
        let deleted = self.lock().execute(
            "DELETE FROM overrides WHERE scope = ?1 AND namespace = ?2 AND name = ?3",
            params![scope.as_str(), key.namespace(), key.name()],
        )?;
        Ok(deleted > 0)
    }

    /// Which objects have an override, expired or not; reads only.
    pub fn override_keys(&self) -> Result<Vec<(Scope, ObjectKey)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare("SELECT scope, namespace, name FROM overrides")?;
        let rows = stmt.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, stored_key(row, 1)?))
        })?;
        let mut keys = Vec::new();
        for row in rows {
            let (scope, key) = row?;
            let scope = match scope.as_str() {
                "module" => Scope::Module,
                "workspace" => Scope::Workspace,
                other => {
                    return Err(StoreError::Corrupt {
                        key: key.to_string(),
                        what: "override",
                        detail: format!("scope {other:?}"),
                    });
                }
            };
            keys.push((scope, key));
        }
        Ok(keys)
    }

    /// Drops the overrides that expired before `now`.
    pub fn delete_expired_overrides(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM overrides WHERE until IS NOT NULL AND until <= ?1",
            [now.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Every override still in force at `now`; reads only.
    pub fn overrides(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Scope, ObjectKey, Override)>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare(
            "SELECT scope, namespace, name, action, until FROM overrides
             WHERE until IS NULL OR until > ?1",
        )?;
        let rows = stmt.query_map([now.to_rfc3339()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                stored_key(row, 1)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (scope, key, action, until) = row?;
            let corrupt = |detail: String| StoreError::Corrupt {
                key: key.to_string(),
                what: "override",
                detail,
            };
            let scope = match scope.as_str() {
                "module" => Scope::Module,
                "workspace" => Scope::Workspace,
                other => return Err(corrupt(format!("scope {other:?}"))),
            };
            let action = match action.as_str() {
                "sleep" => OverrideAction::Sleep,
                "resume" => OverrideAction::Resume,
                other => return Err(corrupt(format!("action {other:?}"))),
            };
            let until = until.as_deref().map(|t| parse_time(&key, t)).transpose()?;
            out.push((scope, key, Override { action, until }));
        }
        Ok(out)
    }

    /// The newest `limit` events of a module or workspace, oldest first.
    pub fn events(
        &self,
        kind: Kind,
        key: &ObjectKey,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let conn = self.read();
        let mut stmt = conn.prepare(
            "SELECT at, reason, message FROM (
                 SELECT id, at, reason, message FROM events
                     WHERE kind = ?4 AND namespace = ?1 AND name = ?2 AND reason != 'Deleted'
                 ORDER BY id DESC LIMIT ?3
             ) ORDER BY id",
        )?;
        let params = params![key.namespace(), key.name(), limit as i64, kind.to_string()];
        let rows = stmt.query_map(params, |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
            ))
        })?;
        rows.map(|row| {
            let (at, reason, message) = row?;
            Ok(Event {
                at: parse_time(key, &at)?,
                reason: reason.parse().unwrap_or(EventReason::Unknown),
                message,
            })
        })
        .collect()
    }
}

fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    (kind, key): (Kind, &ObjectKey),
    at: DateTime<Utc>,
    reason: EventReason,
    message: &str,
) -> Result<(), StoreError> {
    let kind = kind.to_string();
    tx.execute(
        "INSERT INTO events (kind, namespace, name, at, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            kind,
            key.namespace(),
            key.name(),
            at.to_rfc3339(),
            reason.as_str(),
            message
        ],
    )?;
    tx.execute(
        "DELETE FROM events WHERE kind = ?1 AND namespace = ?2 AND name = ?3 AND id <= (
             SELECT id FROM events WHERE kind = ?1 AND namespace = ?2 AND name = ?3
             ORDER BY id DESC LIMIT 1 OFFSET ?4)",
        params![kind, key.namespace(), key.name(), EVENTS_KEPT],
    )?;
    Ok(())
}

/// The kind column of an event row (rows from before it existed are modules').
fn event_kind(text: &str) -> Kind {
    match text {
        "Workspace" => Kind::Workspace,
        _ => Kind::Module,
    }
}

const SELECT_MODULE: &str = "SELECT namespace, name, workspace_namespace, workspace_name, phase, message,
    container_id, runner, config, metadata, installed_hash, asleep, attempts, next_retry, created_at, last_activity,
    operation
    FROM modules";

/// A row as stored, before its text columns are decoded.
struct RawRecord {
    key: ObjectKey,
    workspace: ObjectKey,
    phase: String,
    message: String,
    container_id: Option<String>,
    runner: String,
    config: String,
    metadata: String,
    installed_hash: Option<String>,
    asleep: bool,
    attempts: u32,
    next_retry: Option<String>,
    created_at: String,
    last_activity: String,
    operation: Option<String>,
}

impl RawRecord {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            key: stored_key(row, 0)?,
            workspace: stored_key(row, 2)?,
            phase: row.get(4)?,
            message: row.get(5)?,
            container_id: row.get(6)?,
            runner: row.get(7)?,
            config: row.get(8)?,
            metadata: row.get(9)?,
            installed_hash: row.get(10)?,
            asleep: row.get(11)?,
            attempts: row.get(12)?,
            next_retry: row.get(13)?,
            created_at: row.get(14)?,
            last_activity: row.get(15)?,
            operation: row.get(16)?,
        })
    }

    fn decode(self) -> Result<ModuleRecord, StoreError> {
        let key = self.key;
        let corrupt = |what, detail: String| StoreError::Corrupt {
            key: key.to_string(),
            what,
            detail,
        };
        let object = |what, text: &str| match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(corrupt(what, format!("not a JSON object: {other}"))),
            Err(err) => Err(corrupt(what, err.to_string())),
        };
        Ok(ModuleRecord {
            phase: self.phase.parse().map_err(|e| corrupt("phase", e))?,
            config: object("config", &self.config)?,
            metadata: object("metadata", &self.metadata)?,
            next_retry: self
                .next_retry
                .as_deref()
                .map(|t| parse_time(&key, t))
                .transpose()?,
            attempts: self.attempts,
            created_at: parse_time(&key, &self.created_at)?,
            last_activity: parse_time(&key, &self.last_activity)?,
            workspace: self.workspace,
            message: self.message,
            container_id: self.container_id,
            runner: serde_json::from_str(&self.runner)
                .map_err(|e| corrupt("runner", e.to_string()))?,
            installed_hash: self.installed_hash,
            asleep: self.asleep,
            operation: self
                .operation
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e| corrupt("operation", e))?,
            key,
        })
    }
}

/// The key in columns `at` (namespace) and `at + 1` (name). Only checked
/// keys are written, and unchecked ones from before are dropped at start
/// ([`Store::drop_unaddressable`]): a bad one means tampering.
fn stored_key(row: &Row<'_>, at: usize) -> rusqlite::Result<ObjectKey> {
    ObjectKey::new(row.get::<_, String>(at)?, row.get::<_, String>(at + 1)?).map_err(|err| {
        rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(err))
    })
}

fn parse_time(key: &ObjectKey, text: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|err| StoreError::Corrupt {
            key: key.to_string(),
            what: "timestamp",
            detail: err.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    fn record() -> ModuleRecord {
        let runner = RunnerSettings {
            image: "img:1".into(),
            runner_hash: "r".into(),
            kubeconfig: true,
            cpu_shares: None,
            memory_reservation: Some(1 << 20),
            pull_secrets: vec!["reg".into()],
            controller: false,
            network: Some("kind".into()),
        };
        let mut record = ModuleRecord::new(
            ObjectKey::new("default", "app").unwrap(),
            ObjectKey::new("default", "dev").unwrap(),
            runner,
            Utc::now(),
        );
        record.metadata = json!({"installs": 1}).as_object().unwrap().clone();
        record
    }

    #[test]
    fn a_saved_module_survives_reopening_and_the_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut saved = record();
        saved.phase = Phase::Ready;
        saved.installed_hash = Some("h".into());
        saved.attempts = 2;
        saved.next_retry = Some(Utc::now());
        {
            let store = Store::open(&path).unwrap();
            store.save(&saved, EventReason::Installed, "ok").unwrap();
        }
        let store = Store::open(&path).unwrap();
        let loaded = store.module(&saved.key).unwrap().unwrap();
        // RFC 3339 keeps nanoseconds, so the round trip is exact.
        assert_eq!(loaded, saved);
        assert_eq!(store.modules().unwrap(), vec![saved.clone()]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn history_is_kept_per_module_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let record = record();
        for i in 0..(EVENTS_KEPT + 5) {
            store
                .save(&record, EventReason::Installing, &format!("step {i}"))
                .unwrap();
        }
        let events = store.events(Kind::Module, &record.key, 1000).unwrap();
        assert_eq!(events.len() as i64, EVENTS_KEPT);
        assert_eq!(
            events.last().unwrap().message,
            format!("step {}", EVENTS_KEPT + 4)
        );
        assert_eq!(store.events(Kind::Module, &record.key, 2).unwrap().len(), 2);
        assert!(
            store
                .add_event(&record.key, EventReason::ManifestProblem, "by hand")
                .unwrap()
        );
        let newest = &store.events(Kind::Module, &record.key, 1).unwrap()[0];
        assert_eq!(newest.reason, EventReason::ManifestProblem);
        store.delete(&record.key).unwrap();
        assert!(
            !store
                .add_event(&record.key, EventReason::ManifestFixed, "gone")
                .unwrap(),
            "no history for unknown modules"
        );
        assert_eq!(store.module(&record.key).unwrap(), None);
        assert!(
            store
                .events(Kind::Module, &record.key, 10)
                .unwrap()
                .is_empty(),
            "a module made again under this name starts with no history"
        );
    }

    #[test]
    fn last_good_manifests_are_kept_per_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let path = Path::new("/m/a.yaml");
        assert_eq!(store.last_good_manifest(path).unwrap(), None);
        store.save_last_good_manifest(path, "one").unwrap();
        store.save_last_good_manifest(path, "two").unwrap();
        assert_eq!(
            store.last_good_manifest(path).unwrap().as_deref(),
            Some("two")
        );
        store.forget_manifest(path).unwrap();
        assert_eq!(store.last_good_manifest(path).unwrap(), None);
    }

    #[test]
    fn fetched_definitions_are_cached_by_url() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let url = "http://127.0.0.1/d.yaml";
        assert_eq!(store.fetched_definition(url).unwrap(), None);
        store.save_fetched_definition(url, "kind: Custom").unwrap();
        assert_eq!(
            store.fetched_definition(url).unwrap().as_deref(),
            Some("kind: Custom")
        );
        // A refresh saves over the copy it had.
        store
            .save_fetched_definition(url, "kind: Custom # v2")
            .unwrap();
        assert_eq!(
            store.fetched_definition(url).unwrap().as_deref(),
            Some("kind: Custom # v2")
        );
    }

    #[test]
    fn secrets_are_kept_listed_by_name_and_never_debug_printed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let secret = RegistrySecret {
            name: "reg".into(),
            server: "127.0.0.1:5000".into(),
            username: "u".into(),
            password: "hunter2".into(),
        };
        store.create_secret(&secret).unwrap();
        assert!(
            matches!(store.create_secret(&secret), Err(StoreError::SecretExists(name)) if name == "reg")
        );
        assert_eq!(store.secret("reg").unwrap(), Some(secret.clone()));
        assert_eq!(
            store.secret_names().unwrap(),
            vec![SecretSummary {
                name: "reg".into(),
                namespace: "default".into(),
                kind: SecretType::DockerRegistry
            }]
        );
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(store.generic_secret("reg").unwrap(), None, "not generic");
        assert!(store.delete_secret("reg").unwrap());
        assert!(!store.delete_secret("reg").unwrap());
        assert_eq!(store.secret("reg").unwrap(), None);
    }

    #[test]
    fn a_deleted_module_leaves_one_event_newer_than_any_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let record = record();
        store.save(&record, EventReason::Installed, "ok").unwrap();
        store.save(&record, EventReason::Slept, "ok").unwrap();
        let seen = store.last_event_id().unwrap();
        store.delete(&record.key).unwrap();
        let after = store.events_after(seen, 10, None).unwrap();
        assert_eq!(after.len(), 1, "{after:?}");
        assert_eq!(
            (after[0].reason, after[0].kind, &after[0].object),
            (EventReason::Deleted, Kind::Module, &record.key)
        );
        assert!(
            store
                .events(Kind::Module, &record.key, 10)
                .unwrap()
                .is_empty()
        );
        store.delete(&record.key).unwrap();
        assert!(
            store.events_after(seen, 10, None).unwrap().len() == 1,
            "nothing to delete: no second word"
        );
    }

    #[test]
    fn a_workspace_keeps_its_own_history_apart_from_a_module_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let module = record();
        store.save(&module, EventReason::Installed, "ok").unwrap();
        let seen = store.last_event_id().unwrap();
        // The workspace is named like the module on purpose.
        let workspace = module.key.clone();
        store
            .add_workspace_event(&workspace, EventReason::ScheduledSleep, "22:00")
            .unwrap();
        let ws = store.events(Kind::Workspace, &workspace, 10).unwrap();
        assert_eq!(ws.len(), 1);
        assert_eq!(ws[0].reason, EventReason::ScheduledSleep);
        let of_module = store.events(Kind::Module, &module.key, 10).unwrap();
        assert_eq!(of_module.len(), 1);
        assert_eq!(of_module[0].reason, EventReason::Installed);
        let followed = store
            .events_after(seen, 10, Some((Kind::Workspace, &workspace)))
            .unwrap();
        assert_eq!(followed.len(), 1);
        assert_eq!(followed[0].kind, Kind::Workspace);
        // Forgetting the module forgets its history, not the workspace's.
        store.delete(&module.key).unwrap();
        assert_eq!(store.events(Kind::Workspace, &workspace, 10).unwrap(), ws);
    }

    #[test]
    fn generic_secrets_keep_their_bytes_and_never_debug_print_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let secret = GenericSecret {
            name: "kind-dev".into(),
            namespace: "team".into(),
            data: BTreeMap::from([("kubeconfig".to_owned(), b"token: s3cret\n\xff".to_vec())]),
        };
        store.create_generic_secret(&secret).unwrap();
        assert!(matches!(
            store.create_generic_secret(&secret),
            Err(StoreError::SecretExists(_))
        ));
        assert_eq!(
            store.generic_secret("kind-dev").unwrap(),
            Some(secret.clone())
        );
        assert_eq!(
            store.secret("kind-dev").unwrap(),
            None,
            "not a registry secret"
        );
        assert_eq!(store.secret_names().unwrap()[0].kind, SecretType::Generic);
        assert_eq!(store.secret_names().unwrap()[0].namespace, "team");
        assert!(!format!("{secret:?}").contains("s3cret"));
    }

    #[test]
    fn overrides_are_replaced_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let now = Utc::now();
        let key = ObjectKey::new("default", "dev").unwrap();
        let sleep = Override {
            action: OverrideAction::Sleep,
            until: Some(now + chrono::Duration::hours(1)),
        };
        store.set_override(Scope::Workspace, &key, &sleep).unwrap();
        assert_eq!(
            store.overrides(now).unwrap(),
            vec![(Scope::Workspace, key.clone(), sleep)]
        );
        let resume = Override {
            action: OverrideAction::Resume,
            until: None,
        };
        store.set_override(Scope::Workspace, &key, &resume).unwrap();
        assert_eq!(
            store.overrides(now).unwrap(),
            vec![(Scope::Workspace, key.clone(), resume)]
        );
        let brief = Override {
            action: OverrideAction::Sleep,
            until: Some(now + chrono::Duration::seconds(1)),
        };
        store.set_override(Scope::Module, &key, &brief).unwrap();
        assert_eq!(
            store
                .overrides(now + chrono::Duration::seconds(2))
                .unwrap()
                .len(),
            1,
            "the expired one is gone"
        );
    }

    #[test]
    fn an_override_can_be_deleted_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let key = ObjectKey::new("default", "dev").unwrap();
        let sleep = Override {
            action: OverrideAction::Sleep,
            until: None,
        };
        store.set_override(Scope::Workspace, &key, &sleep).unwrap();
        assert!(!store.delete_override(Scope::Module, &key).unwrap());
        assert!(store.delete_override(Scope::Workspace, &key).unwrap());
        assert!(!store.delete_override(Scope::Workspace, &key).unwrap());
        assert!(store.overrides(Utc::now()).unwrap().is_empty());
    }

    #[test]
    fn settings_are_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        assert_eq!(
            store.setting_or_init("instance", || "a".into()).unwrap(),
            "a"
        );
        assert_eq!(
            store.setting_or_init("instance", || "b".into()).unwrap(),
            "a"
        );
    }

    #[test]
    fn a_database_from_the_first_schema_keeps_what_was_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            for (name, phase) in [("a", "sleeping"), ("b", "ready"), ("c", "uninstalling")] {
                conn.execute(
                    "INSERT INTO modules VALUES ('default', ?1, 'default', 'dev', ?2, '', NULL,
                     '{\"image\":\"i\",\"runnerHash\":\"r\",\"kubeconfig\":false,\"cpuShares\":null,\"memoryReservation\":null}',
                     '{}', '{\"installs\":1}', 'h', 0, 0, NULL,
                     '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
                    params![name, phase],
                )
                .unwrap();
            }
        }
        let store = Store::open(&path).unwrap();
        let operations: Vec<_> = store
            .modules()
            .unwrap()
            .into_iter()
            .map(|m| m.operation)
            .collect();
        assert_eq!(
            operations,
            vec![Some(Operation::Sleep), None, Some(Operation::Uninstall)]
        );
        assert_eq!(store.modules().unwrap()[0].metadata["installs"], 1);
    }

    #[test]
    fn names_an_earlier_forklet_accepted_are_dropped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = Store::open(&path).unwrap();
        store.save(&record(), EventReason::Installed, "ok").unwrap();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute(
                "INSERT INTO modules SELECT namespace, 'my_app', workspace_namespace, workspace_name, phase,
                 message, container_id, runner, config, metadata, installed_hash, asleep, attempts,
                 next_retry, created_at, last_activity, operation FROM modules",
                [],
            )
            .unwrap();
        }
        assert!(store.modules().is_err(), "one bad row spoils the list");
        assert_eq!(store.drop_unaddressable().unwrap(), vec!["default/my_app"]);
        let kept: Vec<_> = store
            .modules()
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(kept, vec![ObjectKey::new("default", "app").unwrap()]);
    }

    #[test]
    fn a_database_from_a_newer_forklet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let err = Store::open(&path).err().expect("refused");
        assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    }
}
