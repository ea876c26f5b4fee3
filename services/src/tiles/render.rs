//! Pixels of XYZ tiles, computed as `gdal2tiles.py` computes them (resampling `average`, its
//! default): the tile's window of the warped raster is read with nearest neighbour into a
//! query buffer of 4x the tile size, then each tile pixel is the rounded mean of its 4x4
//! query pixels, band by band, alpha included, and the colour stored under transparent
//! pixels included (gdal2tiles' `RegenerateOverview(..., "average")` on its query buffer has
//! no mask: it averages the stored values). Lower zooms average 2x2 pixels of the four child
//! tiles the same way (missing children count as transparent black). `near` reads straight
//! into the tile.
//!
//! Everything here is CPU work on plain buffers: no GDAL call per tile.

use serde::{Deserialize, Serialize};

use super::mercator::{Query, TileRange, geo_query, tile_bounds};
use super::warp::Warped;

/// Tile resampling, as gdal2tiles names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resampling {
    Average,
    Near,
}

impl Resampling {
    /// Query buffer size for a tile of `tile_size` pixels.
    pub fn query_size(self, tile_size: u32) -> i64 {
        match self {
            Resampling::Average => 4 * i64::from(tile_size),
            Resampling::Near => i64::from(tile_size),
        }
    }
}

/// A window of the warped raster as RGBA planes.
pub struct Window {
    pub x: i64,
    pub y: i64,
    pub width: usize,
    pub height: usize,
    /// R, G, B, A planes, row-major.
    planes: [Vec<u8>; 4],
}

impl Window {
    /// Read `(x, y, width, height)` of the warped raster: its data bands (8-bit after
    /// [`super::warp::to_web_mercator`]) and, as alpha, the mask band of band 1, as
    /// gdal2tiles reads them. The colour under transparent pixels is kept as stored: gdal2tiles
    /// averages it too.
    pub fn read(
        warped: &Warped,
        (x, y, width, height): (i64, i64, usize, usize),
    ) -> Result<Window, String> {
        let window = (x as isize, y as isize, width, height);
        let n = width * height;
        let mut data = Vec::with_capacity(warped.data_bands);
        for i in 0..warped.data_bands {
            data.push(read_band(warped, Some(i + 1), window)?);
        }
        let alpha = read_band(warped, None, window)?;
        let planes = if data.len() >= 3 {
            let mut it = data.into_iter();
            [
                it.next().unwrap_or_else(|| vec![0; n]),
                it.next().unwrap_or_else(|| vec![0; n]),
                it.next().unwrap_or_else(|| vec![0; n]),
                alpha,
            ]
        } else {
            let gray = data.pop().unwrap_or_else(|| vec![0; n]);
            [gray.clone(), gray.clone(), gray, alpha]
        };
        Ok(Window {
            x,
            y,
            width,
            height,
            planes,
        })
    }
}

/// One band of a window of the warped raster as bytes; `None`: the mask band of band 1.
fn read_band(
    warped: &Warped,
    band: Option<usize>,
    (x, y, width, height): (isize, isize, usize, usize),
) -> Result<Vec<u8>, String> {
    let what = match band {
        Some(b) => format!("band {b}"),
        None => "the mask band".to_owned(),
    };
    let err = |e: gdal::errors::GdalError| format!("reading {what} of the warped raster: {e}");
    let size = (width, height);
    let first = warped.vrt.rasterband(band.unwrap_or(1)).map_err(err)?;
    let read = match band {
        Some(_) => first.read_as::<u8>((x, y), size, size, None),
        None => first
            .open_mask_band()
            .map_err(err)?
            .read_as::<u8>((x, y), size, size, None),
    };
    Ok(read.map_err(err)?.into_shape_and_vec().1)
}

/// Sub-samples of one output pixel along one axis: (index into the window, how many).
#[derive(Clone, Copy, Default)]
struct Taps {
    len: u8,
    taps: [(u32, u8); 4],
}

impl Taps {
    fn push(&mut self, index: u32) {
        if self.len > 0 && self.taps[self.len as usize - 1].0 == index {
            self.taps[self.len as usize - 1].1 += 1;
        } else {
            self.taps[self.len as usize] = (index, 1);
            self.len += 1;
        }
    }
    fn iter(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.taps[..self.len as usize]
            .iter()
            .map(|(i, w)| (*i as usize, u32::from(*w)))
    }
}

/// For each of `tile_size` output pixels, its taps: query pixels `[write_off, write_off +
/// write_size)` come from window indices `read_off + floor((q - write_off + 0.5) * read_size
/// / write_size)` (GDAL's nearest-neighbour RasterIO), the rest are transparent.
fn axis_taps(
    read_off: i64,
    read_size: i64,
    write_off: i64,
    write_size: i64,
    factor: i64,
    tile_size: usize,
) -> Vec<Taps> {
    let scale = read_size as f64 / write_size.max(1) as f64;
    (0..tile_size as i64)
        .map(|p| {
            let mut taps = Taps::default();
            for s in 0..factor {
                let q = p * factor + s;
                if q < write_off || q >= write_off + write_size {
                    continue;
                }
                let src = (((q - write_off) as f64 + 0.5) * scale + 1e-10).floor() as i64;
                taps.push((read_off + src.clamp(0, read_size - 1)) as u32);
            }
            taps
        })
        .collect()
}

/// One tile's RGBA pixels from `window`, for the gdal2tiles query `q`.
pub fn render_tile(window: &Window, q: &Query, resampling: Resampling, tile_size: u32) -> Vec<u8> {
    let ts = tile_size as usize;
    let mut out = vec![0u8; ts * ts * 4];
    if q.is_empty() {
        return out;
    }
    let factor = resampling.query_size(tile_size) / i64::from(tile_size);
    let (rx, ry, rxsize, rysize) = q.read;
    let (wx, wy, wxsize, wysize) = q.write;
    let xs = axis_taps(rx - window.x, rxsize, wx, wxsize, factor, ts);
    let ys = axis_taps(ry - window.y, rysize, wy, wysize, factor, ts);
    let area = (factor * factor) as u32;
    for (py, ty) in ys.iter().enumerate() {
        if ty.len == 0 {
            continue;
        }
        for (px, tx) in xs.iter().enumerate() {
            if tx.len == 0 {
                continue;
            }
            let o = (py * ts + px) * 4;
            for (c, plane) in window.planes.iter().enumerate() {
                let mut sum = 0u32;
                for (iy, wy) in ty.iter() {
                    let row = iy * window.width;
                    for (ix, wx) in tx.iter() {
                        sum += wx * wy * u32::from(plane[row + ix]);
                    }
                }
                out[o + c] = ((sum + area / 2) / area) as u8;
            }
        }
    }
    out
}

/// The window of the warped raster that the tiles of `block` read, or `None` if none reads.
pub fn block_window(
    warped: &Warped,
    block: &TileRange,
    resampling: Resampling,
    tile_size: u32,
) -> Option<(i64, i64, usize, usize)> {
    let gt = warped.geo_transform();
    let size = warped.size();
    let qs = resampling.query_size(tile_size);
    let (mut x0, mut y0, mut x1, mut y1) = (i64::MAX, i64::MAX, i64::MIN, i64::MIN);
    for (x, y) in block.tiles() {
        let q = geo_query(&gt, size, tile_bounds(block.z, x, y, tile_size), qs);
        if q.is_empty() {
            continue;
        }
        x0 = x0.min(q.read.0);
        y0 = y0.min(q.read.1);
        x1 = x1.max(q.read.0 + q.read.2);
        y1 = y1.max(q.read.1 + q.read.3);
    }
    (x0 < x1 && y0 < y1).then(|| (x0, y0, (x1 - x0) as usize, (y1 - y0) as usize))
}

/// A tile of zoom z-1 from its four children at zoom z (XYZ: `children[dy][dx]` is child
/// (2x + dx, 2y + dy)), each RGBA or missing; 2x2 mean, rounded.
pub fn downsample(children: [[Option<&[u8]>; 2]; 2], tile_size: u32) -> Vec<u8> {
    let ts = tile_size as usize;
    let half = ts / 2;
    let mut out = vec![0u8; ts * ts * 4];
    for (dy, row) in children.iter().enumerate() {
        for (dx, child) in row.iter().enumerate() {
            let Some(child) = child else { continue };
            for y in 0..half {
                for x in 0..half {
                    let o = ((dy * half + y) * ts + dx * half + x) * 4;
                    let i0 = ((2 * y) * ts + 2 * x) * 4;
                    let i1 = i0 + ts * 4;
                    for c in 0..4 {
                        let sum = u32::from(child[i0 + c])
                            + u32::from(child[i0 + 4 + c])
                            + u32::from(child[i1 + c])
                            + u32::from(child[i1 + 4 + c]);
                        out[o + c] = ((sum + 2) / 4) as u8;
                    }
                }
            }
        }
    }
    out
}

/// PNG bytes of an RGBA tile, with the producing job and task in text chunks.
pub fn encode_png(
    rgba: &[u8],
    tile_size: u32,
    provenance: &[(&str, &str)],
) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::with_capacity(rgba.len() / 4);
    {
        let mut encoder = png::Encoder::new(&mut out, tile_size, tile_size);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        for (key, value) in provenance {
            encoder.add_text_chunk((*key).to_owned(), (*value).to_owned())?;
        }
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgba)?;
        writer.finish()?;
    }
    Ok(out)
}

/// RGBA pixels of a PNG tile of `tile_size` (gray, gray+alpha and RGB are expanded).
pub fn decode_png(bytes: &[u8], tile_size: u32) -> Result<Vec<u8>, String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let size = reader.output_buffer_size().ok_or("PNG too large")?;
    let mut buf = vec![0; size];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    if info.width != tile_size || info.height != tile_size || info.bit_depth != png::BitDepth::Eight
    {
        return Err(format!(
            "tile is {}x{} {:?}, expected {tile_size}x{tile_size} 8-bit",
            info.width, info.height, info.bit_depth
        ));
    }
    let data = &buf[..info.buffer_size()];
    Ok(match info.color_type {
        png::ColorType::Rgba => data.to_vec(),
        png::ColorType::Rgb => data
            .chunks(3)
            .flat_map(|c| [c[0], c[1], c[2], 255])
            .collect(),
        png::ColorType::GrayscaleAlpha => data
            .chunks(2)
            .flat_map(|c| [c[0], c[0], c[0], c[1]])
            .collect(),
        png::ColorType::Grayscale => data.iter().flat_map(|g| [*g, *g, *g, 255]).collect(),
        png::ColorType::Indexed => return Err("indexed PNG not expanded".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_follow_nearest_neighbour() {
        // 2 window pixels spread over a 1024 query: the first 512 come from pixel 0.
        let taps = axis_taps(0, 2, 0, 1024, 4, 256);
        assert_eq!(taps[0].iter().collect::<Vec<_>>(), vec![(0, 4)]);
        assert_eq!(taps[127].iter().collect::<Vec<_>>(), vec![(0, 4)]);
        assert_eq!(taps[128].iter().collect::<Vec<_>>(), vec![(1, 4)]);
        // Outside the written part of the query: no taps (transparent).
        let edge = axis_taps(0, 10, 512, 512, 4, 256);
        assert_eq!(edge[0].len, 0);
        assert_eq!(edge[128].iter().map(|t| t.1).sum::<u32>(), 4);
    }

    #[test]
    fn downsample_averages_and_keeps_quadrants() {
        let ts = 4u32;
        let white = vec![255u8; 64];
        let out = downsample([[Some(&white), None], [None, None]], ts);
        assert_eq!(&out[0..4], &[255, 255, 255, 255]);
        // The top-right quadrant (child 1,0) is missing: transparent.
        assert_eq!(&out[8..12], &[0, 0, 0, 0]);
    }

    #[test]
    fn png_round_trip() {
        let rgba: Vec<u8> = (0..256 * 256 * 4).map(|i| (i % 251) as u8).collect();
        let png = encode_png(&rgba, 256, &[("tessera:job_id", "abc")]).unwrap();
        assert_eq!(decode_png(&png, 256).unwrap(), rgba);
    }
}
