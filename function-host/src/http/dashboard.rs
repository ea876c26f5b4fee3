//! The dashboard, same origin as the API: one page for `/` (jobs) and `/jobs/{id}` (a job)
//! whose script routes by the URL, its assets (Leaflet included, from npm at build time),
//! and the data store's files (`/data/{container}/{path}`: tiles, COGs, STAC, TileJSON) that
//! the map shows. Nothing comes from a CDN.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::problem::ApiError;
use crate::app::App;
use crate::app::error::{AppError, ErrorKind, codes};

fn html() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        web::DASHBOARD_HTML,
    )
        .into_response()
}

/// `GET /`: the jobs list.
pub async fn jobs_page() -> Response {
    html()
}

/// `GET /jobs/{id}`: a job (the script reads the ID from the URL and asks the API). The same
/// page answers 404 when `id` cannot be a job ID (64 hexadecimal digits): the script says so.
/// Whether a well-formed ID exists is the API's to say, behind the keys: the page holds no
/// data.
pub async fn job_page(Path(id): Path<String>) -> Response {
    let mut page = html();
    if !(id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())) {
        *page.status_mut() = StatusCode::NOT_FOUND;
    }
    page
}

/// `GET /favicon.ico`: the browser asks for it on every page (the dashboard's page links
/// `/assets/favicon.svg`; others, e.g. a JSON document opened in a tab, do not).
pub async fn favicon() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/x-icon"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        web::FAVICON_ICO,
    )
        .into_response()
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let asset = web::asset(&file).ok_or_else(|| {
        AppError::new(
            ErrorKind::NotFound,
            codes::NOT_FOUND,
            format!("no asset {file:?}"),
        )
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            ),
        ],
        asset.bytes,
    )
        .into_response())
}

fn content_type(path: &str) -> &'static str {
    match path
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
    {
        Some(ext) => match ext.as_str() {
            "png" => "image/png",
            "jpg" | "jpeg" => "image/jpeg",
            "webp" => "image/webp",
            "json" => "application/json",
            "tif" | "tiff" => "image/tiff",
            "html" => "text/html; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "txt" => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        },
        None => "application/octet-stream",
    }
}

/// `GET /data/{container}/{*path}`: a file of the data store. The files are the jobs' data,
/// not the dashboard's, yet they are served on the dashboard's origin, where a browser keeps
/// the API key: `nosniff` keeps each to its declared type, and `Content-Security-Policy:
/// sandbox allow-scripts` gives a page opened from there an opaque origin of its own, so its
/// scripts (the standalone map page's Leaflet) run but cannot reach the dashboard's storage
/// or call the API as the dashboard.
pub async fn data(
    State(app): State<Arc<App>>,
    Path((container, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = app.data(&container, &path).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(content_type(&path)),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(DATA_CSP),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The policy of every `/data` file.
pub const DATA_CSP: &str = "sandbox allow-scripts";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        for (path, want) in [
            ("t/3/4/5.png", "image/png"),
            ("a.PNG", "image/png"),
            ("out/x.cog.tif", "image/tiff"),
            ("tiles/tilejson.json", "application/json"),
            ("tiles/index.html", "text/html; charset=utf-8"),
            ("noextension", "application/octet-stream"),
        ] {
            assert_eq!(content_type(path), want, "{path}");
        }
    }
}
