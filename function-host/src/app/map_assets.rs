//! The map page's browser assets: the binary embeds Leaflet (the `web` crate, from npm at build
//! time) and hands it to the geospatial handlers, so that `services` itself builds without npm.

/// Leaflet's script and style sheet, for the map page `tiled_raster` writes beside its tiles.
pub fn map_assets() -> services::MapAssets {
    services::MapAssets {
        leaflet_js: web::LEAFLET_JS,
        leaflet_css: web::LEAFLET_CSS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use services::tiles::publish::map_page;
    use services::tiles::tasks::TiledRasterParams;

    /// The page works offline: Leaflet is inside it, nothing is loaded from a CDN.
    #[test]
    fn the_map_page_carries_leaflet_inline() {
        let p: TiledRasterParams = serde_json::from_value(serde_json::json!({
            "container": "in", "blob": "a/RGB.byte.tif", "output_container": "tiles",
            "output_prefix": "RGB.byte", "min_zoom": 7, "max_zoom": 9, "tile_size": 256,
            "resampling": "average"
        }))
        .unwrap();
        let page = map_page(&p, [-78.0, 23.0, -77.0, 24.0], "j", "t", &map_assets()).unwrap();
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
