//! What `publish_tiles` writes besides the tiles: the map page and the STAC item of the COG.

use engine::{HandlerError, TaskContext};
use serde_json::Value;

use super::tasks::TiledRasterParams;
use crate::Services;
use crate::raster::RasterInfo;
use crate::stac;

/// A self-contained page showing the tiles on a Leaflet map: Leaflet itself is inlined (from
/// npm at build time, `web` crate), and tile URLs are relative, so the page works from the
/// output folder as it is, served or opened from disk (`file://`), with no network.
/// OpenStreetMap is an optional basemap under the tiles: without a network it stays blank and
/// the tiles show all the same.
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
<style>{leaflet_css}</style>
<script>{leaflet_js}</script>
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
        leaflet_css = String::from_utf8_lossy(web::LEAFLET_CSS),
        leaflet_js = String::from_utf8_lossy(web::LEAFLET_JS),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The page works offline: Leaflet is inside it, nothing is loaded from a CDN.
    #[test]
    fn the_map_page_carries_leaflet_inline() {
        let p: TiledRasterParams = serde_json::from_value(serde_json::json!({
            "container": "in", "blob": "a/RGB.byte.tif", "output_container": "tiles",
            "output_prefix": "RGB.byte", "min_zoom": 7, "max_zoom": 9, "tile_size": 256,
            "resampling": "average"
        }))
        .unwrap();
        let page = map_page(&p, [-78.0, 23.0, -77.0, 24.0], "j", "t");
        assert!(!page.contains("unpkg.com"), "no CDN");
        assert!(page.contains("Leaflet 1.9.4"), "the script is inline");
        assert!(
            page.contains(".leaflet-container"),
            "the style sheet is inline"
        );
        // An inline script ends at the first `</script>`: Leaflet must not contain one.
        assert_eq!(page.matches("</script>").count(), 2);
        assert!(
            page.contains("L.tileLayer('{z}/{x}/{y}.png'"),
            "tiles relative to the page"
        );
    }
}
