//! The browser side of tessera, embedded in the binary: the dashboard (served by `tessera
//! serve` at `/` and `/jobs/{id}`), and Leaflet (npm, installed at build time) for its map and
//! for the viewer `tiled_raster` writes beside its tiles. Nothing is loaded from a CDN.

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

/// The dashboard's page (one page for every dashboard URL: the script routes).
pub const DASHBOARD_HTML: &[u8] = include_bytes!("../dashboard/index.html");

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
];

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

    #[test]
    fn nothing_is_loaded_from_elsewhere() {
        let page = std::str::from_utf8(DASHBOARD_HTML).unwrap();
        for a in ASSETS.iter().filter(|a| !a.path.starts_with("leaflet")) {
            let text = std::str::from_utf8(a.bytes).unwrap();
            assert!(
                !text.contains("https://"),
                "{} loads from the network",
                a.path
            );
        }
        assert!(
            !page.contains("https://"),
            "the page loads from the network"
        );
    }
}
