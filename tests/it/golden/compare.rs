//! Tile sets compared pixel by pixel, and a STAC item compared with `gdalinfo -json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use services::stac::ring_bbox as bounds_of;
use services::tiles::render::decode_png;

/// Per tile: the share of pixels that differ in any channel (RGBA, 0-255) and the mean
/// absolute difference per channel value. Thresholds of docs/geospatial.md.
pub const MAX_DIFFERING_SHARE: f64 = 0.001;
pub const MAX_MEAN_ABS_DIFF: f64 = 0.01;

/// What two tiles differ by.
#[derive(Debug, Clone, Copy, Default)]
pub struct TileDiff {
    pub pixels: u64,
    pub differing: u64,
    pub abs_sum: u64,
    pub max_abs: u8,
}

impl TileDiff {
    pub fn of(a: &[u8], b: &[u8]) -> TileDiff {
        let mut d = TileDiff {
            pixels: (a.len() / 4) as u64,
            ..TileDiff::default()
        };
        for (pa, pb) in a.chunks(4).zip(b.chunks(4)) {
            if pa != pb {
                d.differing += 1;
            }
            for (x, y) in pa.iter().zip(pb) {
                let diff = x.abs_diff(*y);
                d.abs_sum += u64::from(diff);
                d.max_abs = d.max_abs.max(diff);
            }
        }
        d
    }
    pub fn share(&self) -> f64 {
        self.differing as f64 / self.pixels.max(1) as f64
    }
    pub fn mean_abs(&self) -> f64 {
        self.abs_sum as f64 / (4 * self.pixels.max(1)) as f64
    }
    fn add(&mut self, o: &TileDiff) {
        self.pixels += o.pixels;
        self.differing += o.differing;
        self.abs_sum += o.abs_sum;
        self.max_abs = self.max_abs.max(o.max_abs);
    }
}

/// Every `z/x/y.png` under `root`, by (z, x, y).
pub fn tiles_under(root: &Path) -> BTreeMap<(u32, u32, u32), PathBuf> {
    let mut out = BTreeMap::new();
    let entries = |p: &Path| {
        std::fs::read_dir(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .flatten()
    };
    for z in entries(root) {
        let Ok(zn) = z.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for x in entries(&z.path()) {
            let Ok(xn) = x.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            for y in entries(&x.path()) {
                let name = y.file_name().to_string_lossy().into_owned();
                if let Some(Ok(yn)) = name.strip_suffix(".png").map(str::parse::<u32>) {
                    out.insert((zn, xn, yn), y.path());
                }
            }
        }
    }
    out
}

/// The difference of each tile, by (z, x, y), and the totals per zoom.
pub type Differences = (BTreeMap<(u32, u32, u32), TileDiff>, BTreeMap<u32, TileDiff>);

/// Compare two tile folders: the tile sets must be equal.
pub fn compare_tiles(ours: &Path, theirs: &Path) -> Differences {
    let (a, b) = (tiles_under(ours), tiles_under(theirs));
    assert!(
        !b.is_empty(),
        "gdal2tiles wrote no tile in {}",
        theirs.display()
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "tile sets differ"
    );
    let (mut per_tile, mut per_zoom) = (BTreeMap::new(), BTreeMap::<u32, TileDiff>::new());
    for (key, path) in &b {
        let read = |p: &Path| {
            decode_png(&std::fs::read(p).unwrap(), 256)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        };
        let d = TileDiff::of(&read(&a[key]), &read(path));
        per_zoom.entry(key.0).or_default().add(&d);
        per_tile.insert(*key, d);
    }
    (per_tile, per_zoom)
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

fn points(v: &Value) -> Vec<[f64; 2]> {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// How far the item's bbox lies from the reference's, in degrees (largest side).
pub fn bbox_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The STAC item's projection fields against `gdalinfo -json` of the same raster, and its
/// bbox and geometry against `wgs84` (gdalinfo's `wgs84Extent` corners, or for a raster
/// whose corners do not project, gdalwarp's footprint bounds): returns the bbox distance.
pub fn check_stac(item: &Value, info: &Value, wgs84: &Wgs84) -> f64 {
    let props = &item["properties"];
    let size = numbers(&info["size"]);
    assert_eq!(
        numbers(&props["proj:shape"]),
        vec![size[1], size[0]],
        "proj:shape is [rows, cols]"
    );
    let gt = numbers(&info["geoTransform"]);
    assert!(
        close(
            &numbers(&props["proj:transform"]),
            &[gt[1], gt[2], gt[0], gt[4], gt[5], gt[3]],
            1e-9
        ),
        "proj:transform {} vs gdalinfo's {gt:?}",
        props["proj:transform"]
    );
    match info["stac"]["proj:epsg"].as_i64() {
        Some(code) => assert_eq!(props["proj:code"], format!("EPSG:{code}")),
        None => assert!(
            props["proj:wkt2"].as_str().is_some_and(|w| !w.is_empty()),
            "no EPSG code: proj:wkt2 expected"
        ),
    }
    // gdalinfo's cornerCoordinates are rounded to 3 decimals: the exact corners from its
    // geoTransform and size, checked against them.
    let corner = |px: f64, py: f64| {
        [
            gt[0] + px * gt[1] + py * gt[2],
            gt[3] + px * gt[4] + py * gt[5],
        ]
    };
    let corners = [
        corner(0.0, 0.0),
        corner(0.0, size[1]),
        corner(size[0], size[1]),
        corner(size[0], 0.0),
    ];
    let c = &info["cornerCoordinates"];
    for (name, exact) in ["upperLeft", "lowerLeft", "lowerRight", "upperRight"]
        .iter()
        .zip(&corners)
    {
        assert!(close(&numbers(&c[*name]), exact, 1e-3), "{name}: {exact:?}");
    }
    assert!(
        close(&numbers(&props["proj:bbox"]), &bounds_of(&corners), 1e-6),
        "proj:bbox {} vs gdalinfo's corners {corners:?}",
        props["proj:bbox"]
    );
    let bbox = numbers(&item["bbox"]);
    let ring = points(&item["geometry"]["coordinates"][0]);
    assert_eq!(item["geometry"]["type"], "Polygon");
    assert_eq!(ring.first(), ring.last(), "the ring is closed");
    assert!(
        close(&bbox, &bounds_of(&ring), 1e-9),
        "bbox {bbox:?} is not the ring's bounds"
    );
    let [w, s, e, n] = [bbox[0], bbox[1], bbox[2], bbox[3]];
    assert!(
        (-180.0..=180.0).contains(&w)
            && (-180.0..=180.0).contains(&e)
            && (-90.0..=90.0).contains(&s)
            && (-90.0..=90.0).contains(&n)
            && w <= e
            && s <= n,
        "not a WGS 84 bbox: {bbox:?}"
    );
    let area: f64 = ring
        .windows(2)
        .map(|p| p[0][0] * p[1][1] - p[1][0] * p[0][1])
        .sum();
    assert!(area > 0.0, "the ring is not counter-clockwise: {ring:?}");
    match wgs84 {
        Wgs84::Corners(corners) => {
            // gdalinfo's corners (lon, lat) are vertices of the footprint; the densified
            // edges may bulge out of their bounds where the grid's edges curve.
            for corner in corners {
                assert!(
                    ring.iter().any(|p| close(p, corner, 1e-6)),
                    "gdalinfo corner {corner:?} is not a vertex of {ring:?}"
                );
            }
            let reference = bounds_of(corners);
            let d = bbox_distance(&bbox, &reference);
            assert!(
                d <= BBOX_TOLERANCE,
                "bbox {bbox:?} vs gdalinfo's wgs84Extent {reference:?}: {d} degrees"
            );
            d
        }
        Wgs84::Bounds(reference, tol) => {
            let d = bbox_distance(&bbox, reference);
            assert!(
                d <= *tol,
                "bbox {bbox:?} vs gdalwarp's footprint {reference:?}: {d} degrees"
            );
            d
        }
    }
}

/// Largest distance (degrees) between an item's bbox and the bounds of gdalinfo's corners:
/// the bulge of densified edges between the corners.
pub const BBOX_TOLERANCE: f64 = 0.05;

/// The reference footprint.
pub enum Wgs84 {
    /// gdalinfo's `wgs84Extent` ring (its four corners).
    Corners(Vec<[f64; 2]>),
    /// Bounds and the tolerance they are known to.
    Bounds([f64; 4], f64),
}

impl Wgs84 {
    /// From `gdalinfo -json`, if it has a `wgs84Extent` with corners.
    pub fn from_gdalinfo(info: &Value) -> Option<Wgs84> {
        let ring = points(&info["wgs84Extent"]["coordinates"][0]);
        (ring.len() >= 4).then(|| Wgs84::Corners(ring[..4].to_vec()))
    }
}
