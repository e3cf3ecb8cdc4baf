//! The console's static files, embedded in the binary: it works offline and loads nothing from
//! elsewhere. They change only with the binary, so browsers may keep them for a day.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use super::Console;

const STYLE: &str = include_str!("../../assets/style.css");
const CARD: &str = include_str!("../../assets/card.css");
const SCRIPT: &str = include_str!("../../assets/app.js");

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
}

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(
            "/assets/card.css",
            get(|| async { asset("text/css; charset=utf-8", CARD) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
}
