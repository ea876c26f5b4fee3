//! What `publish_tiles` writes besides the tiles: the map page and the STAC item of the COG.

use std::fmt;

use engine::{HandlerError, TaskContext};
use serde_json::Value;

use super::tasks::TiledRasterParams;
use crate::Services;
use crate::raster::RasterInfo;
use crate::stac;

/// The browser assets the map page inlines: Leaflet's script and style sheet. The host supplies
/// them ([`crate::Services::with_map_assets`]; the `tessera` binary embeds them from npm, `web`
/// crate), so that building this crate needs no npm. Empty by default: a map page without
/// them is refused ([`map_page`]).
#[derive(Clone, Copy, Default)]
pub struct MapAssets {
    pub leaflet_js: &'static [u8],
    pub leaflet_css: &'static [u8],
}

impl fmt::Debug for MapAssets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapAssets")
            .field(
                "leaflet_js",
                &format_args!("{} bytes", self.leaflet_js.len()),
            )
            .field(
                "leaflet_css",
                &format_args!("{} bytes", self.leaflet_css.len()),
            )
            .finish()
    }
}

/// A self-contained page showing the tiles on a Leaflet map: Leaflet itself is inlined (the
/// host's [`MapAssets`]), and tile URLs are relative, so the page works from the output folder
/// as it is, served or opened from disk (`file://`), with no network.
/// OpenStreetMap is an optional basemap under the tiles: without a network it stays blank and
/// the tiles show all the same.
/// The page records the job and task that wrote it in `<meta>` tags.
/// Without Leaflet (a host that supplied no assets) the page would show nothing: it is refused
/// with `NO_MAP_ASSETS`.
pub fn map_page(
    p: &TiledRasterParams,
    bbox: [f64; 4],
    job_id: &str,
    task_id: &str,
    assets: &MapAssets,
) -> Result<String, HandlerError> {
    if assets.leaflet_js.is_empty() || assets.leaflet_css.is_empty() {
        return Err(HandlerError::permanent(
            "NO_MAP_ASSETS",
            "the map page needs Leaflet's script and style sheet, which this worker's host did \
             not supply (Services::with_map_assets)",
        ));
    }
    let [w, s, e, n] = bbox;
    let title = html_escape(&p.stem());
    Ok(format!(
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
        leaflet_css = String::from_utf8_lossy(assets.leaflet_css),
        leaflet_js = String::from_utf8_lossy(assets.leaflet_js),
        min = p.min_zoom,
        max = p.max_zoom,
        max_view = p.max_zoom + 2,
    ))
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

    fn params() -> TiledRasterParams {
        serde_json::from_value(serde_json::json!({
            "container": "in", "blob": "a/RGB.byte.tif", "output_container": "tiles",
            "output_prefix": "RGB.byte", "min_zoom": 7, "max_zoom": 9, "tile_size": 256,
            "resampling": "average"
        }))
        .unwrap()
    }

    /// The page inlines the assets the host gives, as they are (the real Leaflet is checked by
    /// `the_map_page_carries_leaflet_inline` in function-host, which supplies it).
    #[test]
    fn the_map_page_inlines_the_hosts_assets() {
        let assets = MapAssets {
            leaflet_js: b"/* stand-in script */",
            leaflet_css: b"/* stand-in style */",
        };
        let page = map_page(&params(), [-78.0, 23.0, -77.0, 24.0], "j", "t", &assets).unwrap();
        assert!(page.contains("<script>/* stand-in script */</script>"));
        assert!(page.contains("<style>/* stand-in style */</style>"));
        assert!(page.contains(r#"<meta name="tessera:job_id" content="j">"#));
        assert!(page.contains("L.tileLayer('{z}/{x}/{y}.png'"));
    }

    /// A host that supplied no assets gets an error naming them, not a page that shows nothing.
    #[test]
    fn without_the_hosts_assets_the_map_page_is_refused() {
        for assets in [
            MapAssets::default(),
            MapAssets {
                leaflet_js: b"x",
                ..MapAssets::default()
            },
        ] {
            let err =
                map_page(&params(), [-78.0, 23.0, -77.0, 24.0], "j", "t", &assets).unwrap_err();
            assert_eq!(err.code, "NO_MAP_ASSETS");
            assert!(err.message.contains("Services::with_map_assets"), "{err:?}");
        }
    }
}
