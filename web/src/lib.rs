//! The browser side of tessera, embedded in the binary: the dashboard (served by `tessera
//! serve` at `/` and `/jobs/{id}`), and from npm, installed at build time: Leaflet for its map
//! and for the viewer `tiled_raster` writes beside its tiles, and a world basemap (Natural
//! Earth 1:110m as TopoJSON, `world-atlas`, with `topojson-client` to read it). Nothing is
//! loaded from a CDN; OpenStreetMap tiles are an opt-in layer of the map.

/// One embedded file.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! npm {
    ($file:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/npm/node_modules/", $file))
    };
}

/// Leaflet's script and style sheet (BSD-2-Clause, `LEAFLET_LICENSE`).
pub const LEAFLET_JS: &[u8] = npm!("leaflet/dist/leaflet.js");
pub const LEAFLET_CSS: &[u8] = npm!("leaflet/dist/leaflet.css");
pub const LEAFLET_LICENSE: &[u8] = npm!("leaflet/LICENSE");

/// The world basemap: Natural Earth 1:110m countries and land (public domain) as TopoJSON,
/// redistributed by `world-atlas` (ISC, `WORLD_ATLAS_LICENSE`).
pub const WORLD_110M: &[u8] = npm!("world-atlas/countries-110m.json");
pub const WORLD_ATLAS_LICENSE: &[u8] = npm!("world-atlas/LICENSE");
/// TopoJSON to GeoJSON in the browser (ISC, `TOPOJSON_LICENSE`).
pub const TOPOJSON_JS: &[u8] = npm!("topojson-client/dist/topojson-client.min.js");
pub const TOPOJSON_LICENSE: &[u8] = npm!("topojson-client/LICENSE");

/// The dashboard's page (one page for every dashboard URL: the script routes).
pub const DASHBOARD_HTML: &[u8] = include_bytes!("../dashboard/index.html");

/// `/favicon.ico` (a 32 x 32 PNG in an ICO; `favicon.svg` is the same mosaic, linked by the
/// page).
pub const FAVICON_ICO: &[u8] = include_bytes!("../dashboard/favicon.ico");

/// Files under `/assets/`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        path: "dag.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../dashboard/dag.js"),
    },
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../dashboard/style.css"),
    },
    Asset {
        path: "leaflet.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: LEAFLET_JS,
    },
    Asset {
        path: "leaflet.css",
        content_type: "text/css; charset=utf-8",
        bytes: LEAFLET_CSS,
    },
    Asset {
        path: "LEAFLET_LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: LEAFLET_LICENSE,
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("../dashboard/favicon.svg"),
    },
    Asset {
        path: "world-110m.json",
        content_type: "application/json",
        bytes: WORLD_110M,
    },
    Asset {
        path: "WORLD_ATLAS_LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: WORLD_ATLAS_LICENSE,
    },
    Asset {
        path: "topojson-client.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: TOPOJSON_JS,
    },
    Asset {
        path: "TOPOJSON_LICENSE.txt",
        content_type: "text/plain; charset=utf-8",
        bytes: TOPOJSON_LICENSE,
    },
];

/// The one address on another origin the dashboard may load from: OpenStreetMap's tiles,
/// an optional layer of the map that is off until the user turns it on.
pub const OSM_TILES: &str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png";

/// The asset at `path` (relative to `/assets/`).
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaflet_is_embedded_whole() {
        let js = std::str::from_utf8(LEAFLET_JS).unwrap();
        assert!(js.contains("Leaflet 1.9.4"), "the pinned version");
        assert!(LEAFLET_CSS.starts_with(b"/* required styles */"));
        for a in ASSETS {
            assert!(!a.bytes.is_empty(), "{}", a.path);
            assert!(asset(a.path).is_some());
        }
        assert!(asset("../Cargo.toml").is_none());
    }

    /// Our own files name no other origin but the opt-in OpenStreetMap layer (the browser
    /// test checks that no request leaves the origin while it is off). The npm packages' files
    /// name their projects' sites in comments only.
    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        let page = std::str::from_utf8(DASHBOARD_HTML).unwrap();
        let ours = ["app.js", "dag.js", "style.css", "favicon.svg"];
        for a in ASSETS.iter().filter(|a| ours.contains(&a.path)) {
            let text = std::str::from_utf8(a.bytes).unwrap();
            let elsewhere = text
                .replace(OSM_TILES, "")
                .replace("http://www.w3.org/", "");
            assert!(
                !elsewhere.contains("https://") && !elsewhere.contains("http://"),
                "{} loads from the network",
                a.path
            );
        }
        assert!(
            !page.contains("https://") && !page.contains("http://"),
            "the page loads from the network"
        );
    }

    #[test]
    fn the_basemap_is_natural_earth_110m() {
        let world: serde_json::Value = serde_json::from_slice(WORLD_110M).unwrap();
        assert_eq!(world["type"], "Topology");
        assert!(world["objects"]["land"].is_object());
        assert!(
            world["objects"]["countries"]["geometries"]
                .as_array()
                .unwrap()
                .len()
                > 150
        );
        assert!(WORLD_110M.len() < 200 * 1024, "a small basemap");
        assert!(
            std::str::from_utf8(TOPOJSON_JS)
                .unwrap()
                .contains("topojson-client v3.1.0")
        );
        assert_eq!(&FAVICON_ICO[..4], &[0, 0, 1, 0], "an ICO header");
    }
}
