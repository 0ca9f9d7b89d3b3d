//! `GET /v1/events`: the modules' event history, and with `follow=true`
//! a Server-Sent Events stream of what happens next, resumable with
//! `Last-Event-ID`. `forklet events -w`, `get -w` and `wait` are built on
//! it: a store write wakes the stream, nothing polls.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use forklet_state::ObjectKey;
use forklet_state::api::{Kind, ProblemDetails, StreamEventView};
use forklet_state::store::{Store, StreamEvent};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::api::{ApiError, ApiState};

/// Events read from the store at once.
const BATCH: usize = 500;
/// Events a plain (not following) answer holds at most.
const HISTORY: i64 = 100;

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    #[serde(default)]
    follow: bool,
    /// Only after this event id; `now` for only what comes next. Default:
    /// the last 100 events.
    after: Option<String>,
    /// Only this module's (`namespace/name`).
    module: Option<String>,
    /// Only this workspace's own (`namespace/name`): its overrides and
    /// scheduled transitions.
    workspace: Option<String>,
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event (follow)")),
    responses(
        (status = 200, description = "Without follow: the last events, oldest first. With follow: a text/event-stream of the same objects, each with its id",
            content((Vec<StreamEventView> = "application/json"), (StreamEventView = "text/event-stream"))),
        (status = 400, description = "A query is not acceptable", body = ProblemDetails, content_type = "application/problem+json")))]
pub async fn events(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<EventsQuery>,
) -> Result<Response, ApiError> {
    let object = match (&query.module, &query.workspace) {
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "give module or workspace, not both".into(),
            ));
        }
        (Some(text), None) => Some((Kind::Module, text)),
        (None, Some(text)) => Some((Kind::Workspace, text)),
        (None, None) => None,
    };
    let object = match object {
        Some((kind, text)) => Some((
            kind,
            ObjectKey::parse(text)
                .ok_or_else(|| ApiError::BadRequest(format!("{text:?} is not namespace/name")))?,
        )),
        None => None,
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let last = state.store.last_event_id()?;
    let after = match resume.or(query.after.clone()).as_deref() {
        Some("now") => last,
        Some(id) => id
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("event id {id:?} is not a number")))?,
        None => (last - HISTORY).max(0),
    };
    if !query.follow {
        // An object's own history: its last events, however busy the others.
        let after = match (&object, query.after.is_none()) {
            (Some(_), true) => 0,
            _ => after,
        };
        let mut events = state
            .store
            .events_after(after, usize::MAX >> 1, filter(&object))?;
        let keep = events.len().saturating_sub(HISTORY as usize);
        let views: Vec<StreamEventView> = events.drain(keep..).map(view).collect();
        return Ok(Json(views).into_response());
    }
    let (tx, rx) = mpsc::channel(64);
    state.clone().spawn_stream(follow(state, after, object, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        Some((Ok::<_, Infallible>(event), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// Sends every event after `after` on `out`, and then each new one, until
/// the client goes away or the daemon stops.
async fn follow(
    state: ApiState,
    mut after: i64,
    object: Option<(Kind, ObjectKey)>,
    out: mpsc::Sender<Event>,
) {
    let mut written = state.writes.written();
    loop {
        written.borrow_and_update();
        let batch = match read(&state.store, after, filter(&object)) {
            Ok(batch) => batch,
            Err(err) => {
                tracing::warn!(error = %err, "event stream: cannot read events");
                return;
            }
        };
        let full = batch.len() == BATCH;
        for event in batch {
            after = event.id;
            let id = event.id.to_string();
            // The SSE event type: what the data describes.
            let kind = event.kind.noun();
            let Ok(data) = serde_json::to_string(&view(event)) else {
                continue;
            };
            if out
                .send(Event::default().id(id).event(kind).data(data))
                .await
                .is_err()
            {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = out.closed() => return,
            changed = written.changed() => if changed.is_err() { return },
        }
    }
}

fn read(
    store: &Arc<Store>,
    after: i64,
    object: Option<(Kind, &ObjectKey)>,
) -> Result<Vec<StreamEvent>, ApiError> {
    Ok(store.events_after(after, BATCH, object)?)
}

fn filter(object: &Option<(Kind, ObjectKey)>) -> Option<(Kind, &ObjectKey)> {
    object.as_ref().map(|(kind, key)| (*kind, key))
}

fn view(event: StreamEvent) -> StreamEventView {
    StreamEventView {
        id: event.id,
        kind: event.kind,
        namespace: event.object.namespace().to_owned(),
        name: event.object.name().to_owned(),
        at: event.at,
        reason: event.reason,
        message: event.message,
    }
}
