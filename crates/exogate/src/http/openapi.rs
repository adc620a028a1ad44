//! `GET /api/openapi.json`: the OpenAPI 3.1 description of the control plane, health and
//! metrics, generated from the handlers' `#[utoipa::path]` annotations and the types they take
//! and answer, as routed in `mod.rs` (what is routed there is what is described here).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::Value;
use utoipa::OpenApi as _;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr};

use super::error::ErrorBody;

/// The security scheme of the API key (`Authorization: Bearer <EXOGATE_API_KEY>`).
pub(crate) const API_KEY: &str = "bearer";
/// The console's session cookie (`POST /api/session`); writes also carry `X-CSRF-Token`.
const SESSION: &str = "session";
/// The security scheme of METRICS_TOKEN (`/metrics` only, when it is set).
const METRICS_TOKEN: &str = "metrics_token";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "exogate",
        version = env!("CARGO_PKG_VERSION"),
        description = "The control plane of exogate, a gateway between Exotel's Voicebot/Stream applets and voice \
            bots: placing calls, the call log, phones, agents and campaigns; and its health and metrics. Errors are \
            `{\"error\": \"…\"}` naming the problem (`ErrorBody`).",
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "calls", description = "Placing calls and the call log"),
        (name = "phones", description = "ExoPhones with their own Exotel account"),
        (name = "agents", description = "Agent definitions"),
        (name = "campaigns", description = "Outbound campaigns from a CSV"),
        (name = "health", description = "Health and metrics (no API key)"),
        (name = "console", description = "The web console's sign-in: a session cookie instead of the key"),
    ),
)]
struct ApiDoc;

/// The whole document: [`ApiDoc`]'s header and security schemes, and `parts`' operations and schemas.
pub(crate) fn document(parts: impl IntoIterator<Item = OpenApi>) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    for part in parts {
        doc.merge(part);
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "EXOGATE_API_KEY (or the generated key in exogate.api-key). Without one, on a loopback bind, \
                     the API answers only Host localhost, 127.0.0.1 or [::1]",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        SESSION,
        SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
            utoipa::openapi::security::ApiKeyValue::with_description(
                super::session::COOKIE,
                "The console's session cookie from POST /api/session; a write with it also needs the X-CSRF-Token \
                 header that POST /api/session answered",
            ),
        )),
    );
    components.add_security_scheme(
        METRICS_TOKEN,
        SecurityScheme::Http(
            Http::builder().scheme(HttpAuthScheme::Bearer).description(Some("METRICS_TOKEN, when it is set")).build(),
        ),
    );
    doc
}

/// Marks every operation of `doc` as needing the API key, with what the key check and the
/// database may answer instead of the handler (statuses a handler documents itself are kept).
pub(crate) fn key_protected(doc: &mut OpenApi) {
    let error = || Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))));
    let answers = [
        ("401", "No API key, or a wrong one (with `WWW-Authenticate: Bearer`)"),
        ("403", "No API key is set and the request's Host is not local (localhost, 127.0.0.1, [::1])"),
        (
            "429",
            "Too many wrong keys from this address (keys from it are checked again after `Retry-After` seconds), \
             or too many new connections from it in a second (`CONNS_PER_IP_PER_SEC`)",
        ),
        ("500", "Internal error (logged)"),
        ("503", "The database is unavailable; try again later"),
    ];
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            op.security = Some(vec![
                SecurityRequirement::new(API_KEY, Vec::<String>::new()),
                SecurityRequirement::new(SESSION, Vec::<String>::new()),
            ]);
            for (status, description) in answers {
                op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new().description(description).content("application/json", error()).build(),
                    )
                });
            }
        }
    }
}

/// Serialized once: the document is fixed for the life of the binary.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut doc = serde_json::to_value(super::document()).expect("the OpenAPI document serializes to JSON");
    camel_case_links(&mut doc);
    doc.to_string()
});

/// utoipa 5 writes a Link Object's fields in snake case (`operation_id`); OpenAPI spells them
/// `operationId`, `operationRef`, `requestBody`.
fn camel_case_links(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if let Some(Value::Object(links)) = o.get_mut("links") {
                for link in links.values_mut().filter_map(Value::as_object_mut) {
                    for (snake, camel) in [
                        ("operation_id", "operationId"),
                        ("operation_ref", "operationRef"),
                        ("request_body", "requestBody"),
                    ] {
                        if let Some(x) = link.remove(snake) {
                            link.insert(camel.into(), x);
                        }
                    }
                }
            }
            o.values_mut().for_each(camel_case_links);
        }
        Value::Array(a) => a.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", operation_id = "openapi", tag = "health", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 description of this API", body = Object)))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
