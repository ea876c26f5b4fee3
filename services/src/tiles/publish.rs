//! What `publish_tiles` writes besides the tiles: the map page and the STAC item of the COG.

use engine::{HandlerError, TaskContext};
use serde_json::Value;

use super::tasks::TiledRasterParams;
use crate::Services;
use crate::raster::RasterInfo;
use crate::stac;

/// A self-contained page showing the tiles on a Leaflet map over OpenStreetMap (both loaded
/// from their public CDNs by the viewer's browser); tile URLs are relative, so the page works
/// from the output folder as it is, served or opened from disk.
/// The page records the job and task that wrote it in `<meta>` tags.
pub fn map_page(p: &TiledRasterParams, bbox: [f64; 4], job_id: &str, task_id: &str) -> String {
    let [w, s, e, n] = bbox;
    let title = html_escape(&p.stem());
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Tessera tiles</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="tessera:job_id" content="{job_id}">
<meta name="tessera:task_id" content="{task_id}">
<link rel="stylesheet" href="https://unpkg.com/leaflet@1.9.4/dist/leaflet.css">
<script src="https://unpkg.com/leaflet@1.9.4/dist/leaflet.js"></script>
<style>html, body, #map {{ height: 100%; margin: 0; }}</style>
</head>
<body>
<div id="map"></div>
<script>
const map = L.map('map');
L.tileLayer('https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png', {{
  maxZoom: 19, attribution: '&copy; OpenStreetMap contributors'
}}).addTo(map);
L.tileLayer('{{z}}/{{x}}/{{y}}.png', {{
  minZoom: {min}, maxNativeZoom: {max}, maxZoom: {max_view}, opacity: 0.9, attribution: 'Tessera'
}}).addTo(map);
map.fitBounds([[{s}, {w}], [{n}, {e}]]);
</script>
</body>
</html>
"#,
        min = p.min_zoom,
        max = p.max_zoom,
        max_view = p.max_zoom + 2,
    )
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The STAC item of the COG written by `source_cog`, with the tiles as a second asset.
pub async fn stac_item(
    services: &Services,
    ctx: &TaskContext,
    p: &TiledRasterParams,
) -> Result<Value, HandlerError> {
    let path = services
        .blobs
        .local_path(&p.output_container, &p.cog_blob())
        .await
        .map_err(crate::failure::blob_failure)?;
    let (id, href) = (p.stem(), format!("./{}.cog.tif", p.stem()));
    let (job_id, task_id) = (ctx.job_id.to_string(), ctx.task_id.to_string());
    let mut item = services
        .gdal(move || {
            let info = RasterInfo::read(&path)?;
            stac::stac_item(
                &info,
                &id,
                &href,
                true,
                &job_id,
                &task_id,
                chrono::Utc::now(),
            )
            .map_err(|e| HandlerError::permanent(e.code(), e.to_string()))
        })
        .await??;
    item.assets.insert(
        "tiles".to_owned(),
        stac::Asset {
            href: "./tilejson.json".to_owned(),
            media_type: "application/json".to_owned(),
            title: Some(format!(
                "XYZ tiles, zooms {}-{} (TileJSON)",
                p.min_zoom, p.max_zoom
            )),
            roles: vec!["tiles".to_owned()],
            raster_bands: Vec::new(),
        },
    );
    serde_json::to_value(item).map_err(|e| HandlerError::permanent("STAC", e.to_string()))
}
