//! The control API's OpenAPI 3.1 document, served at `/v1/openapi.json`.
//! It is generated from the routes themselves (see [`crate::api::routes`]),
//! so it says what the daemon serves.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "forkletd control API",
        description = "The local API of forkletd, on its Unix socket. Errors are RFC 9457 \
                       problem details (application/problem+json) with a stable `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "modules", description = "Modules: what runs, its phase, history and output"),
        (name = "workspaces", description = "Workspaces: schedules and clusters"),
        (name = "hibernation", description = "Manual sleep and resume"),
        (name = "events", description = "The history, and a stream of what happens next"),
        (name = "secrets", description = "Registry credentials and kubeconfigs; never answered back"),
        (name = "manifests", description = "Manifest problems and definitions"),
        (name = "daemon", description = "forkletd itself"),
    )
)]
pub struct Document;

/// Built once: the document never changes while the daemon runs.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut document = crate::api::routes().into_openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    for item in document.paths.paths.values_mut() {
        if let Some(post) = &mut item.post {
            let words = "The body is larger than the endpoint takes";
            let too_large = problem_response(words).into();
            post.responses
                .responses
                .entry("413".to_owned())
                .or_insert(too_large);
        }
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.delete,
            &mut item.put,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, words) in ANY_OPERATION {
                operation
                    .responses
                    .responses
                    .insert(status.to_owned(), problem_response(words).into());
            }
        }
    }
    document.to_pretty_json().expect("the document serializes")
});

/// What every operation may answer, whatever it does.
const ANY_OPERATION: [(&str, &str); 3] = [
    ("408", "The request took too long"),
    (
        "500",
        "forkletd failed (its log says why): a store or engine error",
    ),
    ("503", "forkletd is stopping"),
];

fn problem_response(description: &str) -> utoipa::openapi::Response {
    let schema = utoipa::openapi::Ref::from_schema_name("ProblemDetails");
    utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content(
            forklet_state::api::ProblemDetails::CONTENT_TYPE,
            utoipa::openapi::Content::new(Some(schema)),
        )
        .build()
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "daemon",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
