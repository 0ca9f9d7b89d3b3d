//! Every error answer of the control API as RFC 9457 problem details, also
//! those axum writes itself (a body that does not parse, an unknown path,
//! a wrong method, a body too large): a client reads one shape, always.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use forklet_state::api::{ErrorCode, ProblemDetails};

/// The longest plain error text of axum's taken into a problem's detail.
const DETAIL_MAX: usize = 4096;

pub fn problem(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Response {
    let body = ProblemDetails::new(code, status.as_u16(), detail);
    let json = serde_json::to_vec(&body).expect("problem details serialize");
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ProblemDetails::CONTENT_TYPE),
        )],
        json,
    )
        .into_response()
}

/// Middleware: an error answer that is not problem details yet (axum's
/// rejections are plain text, its 404 and 405 empty) becomes one, its text
/// kept as the detail.
pub async fn as_problems(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == ProblemDetails::CONTENT_TYPE.as_bytes());
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => ErrorCode::NoRoute,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
        s if s.is_client_error() => ErrorCode::InvalidRequest,
        _ => ErrorCode::Internal,
    };
    // A body that does not parse, whether as JSON (400), as the type (422)
    // or for want of a content type (415), is one thing to a client.
    let status = match status {
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            StatusCode::BAD_REQUEST
        }
        other => other,
    };
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, DETAIL_MAX)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let detail = match (text.is_empty(), status) {
        (false, _) => text,
        (true, StatusCode::NOT_FOUND) => "no such endpoint".to_owned(),
        (true, StatusCode::METHOD_NOT_ALLOWED) => "this endpoint does not take that method".into(),
        (true, s) => s.canonical_reason().unwrap_or("error").to_owned(),
    };
    let mut answer = problem(status, code, detail);
    // What else axum said stays said: `Allow` on a 405, above all.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    answer
}

/// The answer to a path no route serves.
pub async fn no_route() -> Response {
    problem(
        StatusCode::NOT_FOUND,
        ErrorCode::NoRoute,
        "no such endpoint",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    async fn body_of(response: Response) -> ProblemDetails {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_plain_text_rejection_becomes_a_problem_with_its_text() {
        let plain = (StatusCode::UNPROCESSABLE_ENTITY, "missing field `name`").into_response();
        let response = as_problems(plain).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = body_of(response).await;
        assert_eq!(body.code, ErrorCode::InvalidRequest);
        assert_eq!(body.detail, "missing field `name`");
    }

    #[tokio::test]
    async fn success_and_problems_pass_unchanged() {
        let ok = Response::new(Body::from("fine"));
        assert_eq!(as_problems(ok).await.status(), StatusCode::OK);
        let mine = problem(StatusCode::CONFLICT, ErrorCode::SecretInUse, "used");
        let body = body_of(as_problems(mine).await).await;
        assert_eq!(
            (body.code, body.detail.as_str()),
            (ErrorCode::SecretInUse, "used")
        );
    }
}
