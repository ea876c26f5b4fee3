//! Web Mercator (EPSG:3857) tile arithmetic, computed exactly as `gdal2tiles.py` (GDAL 3.6,
//! `GlobalMercator`, mercator profile) does, so that the same raster gives the same tile set.
//!
//! Tile coordinates here are XYZ (y from the north) unless a name says TMS.

use serde::{Deserialize, Serialize};

/// Half the Web Mercator world width, in metres.
pub const ORIGIN_SHIFT: f64 = 2.0 * std::f64::consts::PI * 6_378_137.0 / 2.0;

/// Metres per pixel at `zoom` for `tile_size`-pixel tiles.
pub fn resolution(zoom: u32, tile_size: u32) -> f64 {
    2.0 * std::f64::consts::PI * 6_378_137.0 / f64::from(tile_size) / 2f64.powi(zoom as i32)
}

/// gdal2tiles' `MetersToTile` (TMS: y from the south), before clipping to the world.
fn meters_to_tile_tms(mx: f64, my: f64, zoom: u32, tile_size: u32) -> (i64, i64) {
    let res = resolution(zoom, tile_size);
    let px = (mx + ORIGIN_SHIFT) / res;
    let py = (my + ORIGIN_SHIFT) / res;
    let ts = f64::from(tile_size);
    ((px / ts).ceil() as i64 - 1, (py / ts).ceil() as i64 - 1)
}

/// An inclusive rectangle of XYZ tiles at one zoom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileRange {
    pub z: u32,
    pub min_x: u32,
    pub min_y: u32,
    pub max_x: u32,
    pub max_y: u32,
}

impl TileRange {
    pub fn count(&self) -> u64 {
        u64::from(self.max_x - self.min_x + 1) * u64::from(self.max_y - self.min_y + 1)
    }
    pub fn contains(&self, x: u32, y: u32) -> bool {
        (self.min_x..=self.max_x).contains(&x) && (self.min_y..=self.max_y).contains(&y)
    }
    /// The tiles of the range, row by row.
    pub fn tiles(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        (self.min_y..=self.max_y).flat_map(move |y| (self.min_x..=self.max_x).map(move |x| (x, y)))
    }
    /// The part of the range inside `other` (same zoom), if any.
    pub fn intersect(&self, other: &TileRange) -> Option<TileRange> {
        let r = TileRange {
            z: self.z,
            min_x: self.min_x.max(other.min_x),
            min_y: self.min_y.max(other.min_y),
            max_x: self.max_x.min(other.max_x),
            max_y: self.max_y.min(other.max_y),
        };
        (r.min_x <= r.max_x && r.min_y <= r.max_y).then_some(r)
    }
    /// The tiles at zoom `z - levels` that cover this range.
    pub fn parent_range(&self, levels: u32) -> TileRange {
        TileRange {
            z: self.z - levels,
            min_x: self.min_x >> levels,
            min_y: self.min_y >> levels,
            max_x: self.max_x >> levels,
            max_y: self.max_y >> levels,
        }
    }
}

/// The tile range gdal2tiles writes at `zoom` for a raster whose EPSG:3857 bounds (of the
/// warped dataset: origin and pixel size from `GDALAutoCreateWarpedVRT`) are
/// [min x, min y, max x, max y].
pub fn tile_range(bounds: [f64; 4], zoom: u32, tile_size: u32) -> TileRange {
    let [ominx, ominy, omaxx, omaxy] = bounds;
    let (tminx, tminy) = meters_to_tile_tms(ominx, ominy, zoom, tile_size);
    let (tmaxx, tmaxy) = meters_to_tile_tms(omaxx, omaxy, zoom, tile_size);
    let last = (1i64 << zoom) - 1;
    let clamp = |v: i64| v.clamp(0, last) as u32;
    let (tminx, tminy, tmaxx, tmaxy) = (clamp(tminx), clamp(tminy), clamp(tmaxx), clamp(tmaxy));
    // TMS rows count from the south; XYZ rows from the north.
    let flip = |ty: u32| last as u32 - ty;
    TileRange {
        z: zoom,
        min_x: tminx,
        min_y: flip(tmaxy),
        max_x: tmaxx,
        max_y: flip(tminy),
    }
}

/// Bounds of an XYZ tile in EPSG:3857: [min x, min y, max x, max y].
pub fn tile_bounds(z: u32, x: u32, y: u32, tile_size: u32) -> [f64; 4] {
    let res = resolution(z, tile_size);
    let ts = f64::from(tile_size);
    let tms_y = (1u64 << z) - 1 - u64::from(y);
    let minx = f64::from(x) * ts * res - ORIGIN_SHIFT;
    let miny = tms_y as f64 * ts * res - ORIGIN_SHIFT;
    [minx, miny, minx + ts * res, miny + ts * res]
}

/// Web Mercator metres to longitude/latitude degrees.
pub fn meters_to_lon_lat(mx: f64, my: f64) -> (f64, f64) {
    let lon = mx / ORIGIN_SHIFT * 180.0;
    let lat = (my / ORIGIN_SHIFT * 180.0).to_radians();
    let lat = (2.0 * lat.exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    (lon, lat)
}

/// Where a tile's pixels come from in the warped raster: gdal2tiles' `geo_query`. `read` is
/// the window of the warped raster (x, y, width, height) and `write` where it lands in the
/// query buffer of `query_size` pixels (x, y, width, height); `None` when nothing is inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub read: (i64, i64, i64, i64),
    pub write: (i64, i64, i64, i64),
}

pub fn geo_query(
    gt: &[f64; 6],
    raster: (usize, usize),
    bounds: [f64; 4],
    query_size: i64,
) -> Query {
    let [ulx, lry, lrx, uly] = bounds;
    // Python's int() truncates toward zero.
    let mut rx = ((ulx - gt[0]) / gt[1] + 0.001).trunc() as i64;
    let mut ry = ((uly - gt[3]) / gt[5] + 0.001).trunc() as i64;
    let mut rxsize = (((lrx - ulx) / gt[1] + 0.5).trunc() as i64).max(1);
    let mut rysize = (((lry - uly) / gt[5] + 0.5).trunc() as i64).max(1);
    let (mut wxsize, mut wysize) = (query_size, query_size);
    let (width, height) = (raster.0 as i64, raster.1 as i64);
    let mut wx = 0;
    if rx < 0 {
        let rxshift = rx.abs();
        wx = (wxsize as f64 * (rxshift as f64 / rxsize as f64)) as i64;
        wxsize -= wx;
        rxsize -= (rxsize as f64 * (rxshift as f64 / rxsize as f64)) as i64;
        rx = 0;
    }
    if rx + rxsize > width {
        wxsize = (wxsize as f64 * ((width - rx) as f64 / rxsize as f64)) as i64;
        rxsize = width - rx;
    }
    let mut wy = 0;
    if ry < 0 {
        let ryshift = ry.abs();
        wy = (wysize as f64 * (ryshift as f64 / rysize as f64)) as i64;
        wysize -= wy;
        rysize -= (rysize as f64 * (ryshift as f64 / rysize as f64)) as i64;
        ry = 0;
    }
    if ry + rysize > height {
        wysize = (wysize as f64 * ((height - ry) as f64 / rysize as f64)) as i64;
        rysize = height - ry;
    }
    Query {
        read: (rx, ry, rxsize, rysize),
        write: (wx, wy, wxsize, wysize),
    }
}

impl Query {
    /// Whether the tile gets any pixels.
    pub fn is_empty(&self) -> bool {
        self.read.2 <= 0 || self.read.3 <= 0 || self.write.2 <= 0 || self.write.3 <= 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn world_at_zoom_zero_and_one() {
        let world = [-ORIGIN_SHIFT, -ORIGIN_SHIFT, ORIGIN_SHIFT, ORIGIN_SHIFT];
        assert_eq!(tile_range(world, 0, 256).count(), 1);
        let z1 = tile_range(world, 1, 256);
        assert_eq!((z1.min_x, z1.min_y, z1.max_x, z1.max_y), (0, 0, 1, 1));
    }

    #[test]
    fn tile_bounds_round_trip() {
        // Tile 7/36/55 (XYZ) covers part of the Bahamas.
        let b = tile_bounds(7, 36, 55, 256);
        let (lon, lat) = meters_to_lon_lat(b[0], b[3]);
        assert!((lon - -78.75).abs() < 1e-9, "{lon}");
        assert!((lat - 24.527).abs() < 1e-3, "{lat}");
        let r = tile_range([b[0] + 1.0, b[1] + 1.0, b[2] - 1.0, b[3] - 1.0], 7, 256);
        assert_eq!((r.min_x, r.min_y, r.max_x, r.max_y), (36, 55, 36, 55));
    }

    #[test]
    fn geo_query_clips_like_gdal2tiles() {
        // A 100x100 raster of 10 m pixels at (0, 1000); a query hanging off its top-left.
        let gt = [0.0, 10.0, 0.0, 1000.0, 0.0, -10.0];
        let q = geo_query(&gt, (100, 100), [-500.0, 500.0, 500.0, 1500.0], 1024);
        // Python's int() truncates -49.999 to -49: gdal2tiles reads 51 pixels, not 50.
        assert_eq!(q.read, (0, 0, 51, 51));
        assert_eq!(q.write, (501, 501, 523, 523));
        let inside = geo_query(&gt, (100, 100), [100.0, 100.0, 200.0, 200.0], 1024);
        assert_eq!(inside.read, (10, 80, 10, 10));
        assert_eq!(inside.write, (0, 0, 1024, 1024));
    }

    #[test]
    fn parent_ranges_cover_children() {
        let r = TileRange {
            z: 13,
            min_x: 2290,
            min_y: 3550,
            max_x: 2346,
            max_y: 3601,
        };
        let p = r.parent_range(3);
        assert_eq!((p.z, p.min_x, p.max_x), (10, 286, 293));
        assert_eq!(r.count(), 57 * 52);
    }
}
