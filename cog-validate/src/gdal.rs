//! GDAL's view of a TIFF file, as the script can observe it: `GTiffDataset::OpenOffset()` on
//! each directory (bands, data type, block size, GDAL's one-row blocks for tall single-strip
//! images), `ScanDirectories()` (which IFDs are overviews and masks), the mask bands
//! (`GetMaskFlags()` / `GetMaskBand()`) and the side-car `.ovr` and `.msk` files.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::libtiff::*;
use crate::tiff::{OpenError, Source, Tiff};

// `GetMaskFlags()` values.
const GMF_ALL_VALID: u32 = 0x01;
pub(crate) const GMF_PER_DATASET: u32 = 0x02;
const GMF_ALPHA: u32 = 0x04;
const GMF_NODATA: u32 = 0x08;

pub(crate) struct Overview {
    pub(crate) image: Image,
    pub(crate) mask: Option<Image>,
}

pub(crate) struct Dataset {
    pub(crate) main: Image,
    pub(crate) main_mask: Option<Image>,
    pub(crate) overviews: Vec<Overview>,
}

impl Dataset {
    /// Open a side-car file the way `GDALDataset::Open` would; `None` if GDAL could not.
    pub(crate) fn load_path(path: &Path) -> Option<Dataset> {
        let mut src = Source::open(path).ok()?;
        Dataset::load(&mut src).ok()
    }

    /// `GTiffDataset::Open` followed by `ScanDirectories()`.
    pub(crate) fn load(src: &mut Source) -> Result<Dataset, OpenError> {
        let mut tiff = Tiff::open(src)?;
        let first = tiff.first_ifd;
        let main_dir = tiff
            .read_directory(first)
            .map_err(|e| OpenError::Malformed(format!("IFD at offset {first}: {e}")))?;
        let main = gdal_open(&main_dir)
            .map_err(|e| OpenError::Malformed(format!("IFD at offset {first}: {e}")))?;
        let mut ds_overviews: Vec<Overview> = Vec::new();
        let mut main_mask: Option<Image> = None;

        let mut seen = HashSet::from([first]);
        let mut dir_index = 0u32;
        let mut top = main_dir;
        loop {
            dir_index += 1;
            let n_sub = top.subifds.as_ref().map_or(0, Vec::len);
            if dir_index == 1 && n_sub == 0 && top.next == 0 {
                break;
            }
            for i_sub in 0..=n_sub {
                if i_sub > 0 && dir_index > 1 {
                    break;
                }
                let sub_dir;
                let dir = if i_sub == 0 {
                    &top
                } else {
                    let offset = top.subifds.as_ref().expect("subifds")[i_sub - 1];
                    match tiff.read_directory(offset) {
                        Ok(d) => {
                            sub_dir = d;
                            &sub_dir
                        }
                        Err(_) => break,
                    }
                };
                if !((n_sub == 0 && dir_index != 1) || i_sub > 0) {
                    continue;
                }
                let reduced = dir.subfile_type & FILETYPE_REDUCEDIMAGE != 0;
                let is_mask = dir.subfile_type & FILETYPE_MASK != 0;
                if reduced && !is_mask && ds_overviews.len() < 30 {
                    // An overview of the main image.
                    if let Ok(image) = gdal_open(dir)
                        && image.nbands == main.nbands
                    {
                        ds_overviews.push(Overview { image, mask: None });
                    }
                } else if is_mask && !reduced && main_mask.is_none() {
                    // The mask of the main image.
                    if let Ok(m) = gdal_open(dir)
                        && (m.nbands == 1 || m.nbands == main.nbands)
                        && m.width == main.width
                        && m.height == main.height
                        && m.data_type == DataType::Byte
                    {
                        main_mask = Some(m);
                    }
                } else if reduced
                    && is_mask
                    && let Ok(m) = gdal_open(dir)
                    && m.data_type == DataType::Byte
                {
                    // The mask of the first overview of its size without one.
                    let target = ds_overviews.iter_mut().find(|o| {
                        o.mask.is_none()
                            && o.image.width == m.width
                            && o.image.height == m.height
                            && (m.nbands == 1 || m.nbands == main.nbands)
                    });
                    if let Some(o) = target {
                        o.mask = Some(m);
                    }
                }
            }
            // TIFFReadDirectory(): the next IFD of the chain, stopping on loops and on IFDs
            // libtiff cannot read.
            let next = top.next;
            if next == 0 || !seen.insert(next) {
                break;
            }
            match tiff.read_directory(next) {
                Ok(d) => top = d,
                Err(_) => break,
            }
        }

        // Overviews take the color interpretation of the main image.
        for o in &mut ds_overviews {
            o.image.alpha_band = main.alpha_band;
        }
        Ok(Dataset {
            main,
            main_mask,
            overviews: ds_overviews,
        })
    }

    /// `GetMaskFlags()` / `GetMaskBand()` of band 1 of the main image, and the overviews of
    /// that mask band.
    fn base_mask_with_overviews<'a>(
        &'a self,
        msk: Option<&'a Dataset>,
    ) -> (MaskInfo<'a>, Vec<BandRef<'a>>) {
        if let Some(m) = &self.main_mask {
            let flags = if m.nbands == 1 { GMF_PER_DATASET } else { 0 };
            let overviews = self
                .overviews
                .iter()
                .filter_map(|o| o.mask.as_ref())
                .map(|m| BandRef::new(m, 1))
                .collect();
            return (
                MaskInfo {
                    flags,
                    band: Some(BandRef::new(m, 1)),
                },
                overviews,
            );
        }
        // A .msk file is a mask only if it says which flags it has (GDAL writes
        // INTERNAL_MASK_FLAGS_<band> in its metadata).
        if let Some((d, flags)) = msk.and_then(|d| Some((d, d.main.msk_flags?))) {
            let overviews = d
                .overviews
                .iter()
                .map(|o| BandRef::new(&o.image, 1))
                .collect();
            return (
                MaskInfo {
                    flags,
                    band: Some(BandRef::new(&d.main, 1)),
                },
                overviews,
            );
        }
        let mask = own_mask(&self.main);
        let overviews = match mask.band {
            Some(b) => self
                .overviews
                .iter()
                .map(|o| BandRef::new(&o.image, b.band))
                .collect(),
            None => Vec::new(),
        };
        (mask, overviews)
    }

    pub(crate) fn base_mask<'a>(&'a self, msk: Option<&'a Dataset>) -> MaskInfo<'a> {
        self.base_mask_with_overviews(msk).0
    }

    /// `GetMaskFlags()` / `GetMaskBand()` of band 1 of internal overview `i`.
    pub(crate) fn overview_mask<'a>(&'a self, i: usize, msk: Option<&'a Dataset>) -> MaskInfo<'a> {
        let ovr = &self.overviews[i];
        if let Some(m) = &ovr.mask {
            let flags = if m.nbands == 1 { GMF_PER_DATASET } else { 0 };
            return MaskInfo {
                flags,
                band: Some(BandRef::new(m, 1)),
            };
        }
        // An overview without a mask of its own reports the main band's flags, and the
        // overview of the main mask band that has its size.
        let (base, base_overviews) = self.base_mask_with_overviews(msk);
        let band = base_overviews
            .into_iter()
            .find(|b| b.image.width == ovr.image.width && b.image.height == ovr.image.height)
            .or_else(|| own_mask(&ovr.image).band);
        MaskInfo {
            flags: base.flags,
            band,
        }
    }
}

/// `GDALRasterBand::GetMaskBand()` for band 1 of an image without internal or `.msk` mask:
/// nodata, then alpha band, then all valid.
fn own_mask(image: &Image) -> MaskInfo<'_> {
    if let Some(nodata) = image.nodata
        && image.data_type.nodata_in_range(nodata)
    {
        return MaskInfo {
            flags: GMF_NODATA,
            band: None,
        };
    }
    if let Some(alpha) = image.alpha_band
        && ((image.nbands == 2 && alpha == 2) || (image.nbands == 4 && alpha == 4))
    {
        match image.data_type {
            DataType::Byte => {
                return MaskInfo {
                    flags: GMF_ALPHA | GMF_PER_DATASET,
                    band: Some(BandRef::new(image, alpha)),
                };
            }
            // A rescaled copy of the alpha band: no block offsets.
            DataType::UInt16 => {
                return MaskInfo {
                    flags: GMF_ALPHA | GMF_PER_DATASET,
                    band: None,
                };
            }
            _ => {}
        }
    }
    MaskInfo {
        flags: GMF_ALL_VALID,
        band: None,
    }
}

const FILETYPE_REDUCEDIMAGE: u32 = 0x1;
const FILETYPE_MASK: u32 = 0x4;

/// The GDAL data type classes that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    Byte,
    UInt16,
    Int16,
    UInt32,
    Int32,
    Float32,
    Float64,
    /// 64-bit integers and complex types.
    Other,
}

impl DataType {
    /// `GDALNoDataMaskBand::IsNoDataInRange()`.
    fn nodata_in_range(self, v: f64) -> bool {
        match self {
            DataType::Byte => (0.0..=255.0).contains(&v),
            DataType::UInt16 | DataType::UInt32 => (0.0..=f64::from(u32::MAX)).contains(&v),
            DataType::Int16 | DataType::Int32 => {
                (f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&v)
            }
            DataType::Float32 => {
                v.is_nan()
                    || v.is_infinite()
                    || (-f64::from(f32::MAX)..=f64::from(f32::MAX)).contains(&v)
            }
            DataType::Float64 | DataType::Other => true,
        }
    }
}

/// One IFD as GDAL opened it (`GTiffDataset::OpenOffset`), with libtiff's strile arrays.
#[derive(Debug)]
pub(crate) struct Image {
    pub(crate) ifd_offset: u64,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) nbands: u32,
    pub(crate) data_type: DataType,
    pub(crate) planar_separate: bool,
    /// Band block size (`GetBlockSize()`).
    pub(crate) block_w: u32,
    pub(crate) block_h: u32,
    pub(crate) blocks_per_row: u64,
    pub(crate) blocks_per_col: u64,
    /// Dataset blocks per band (offset of band `n`'s blocks when planar is separate).
    pub(crate) blocks_per_band: u64,
    pub(crate) nstrips: u64,
    pub(crate) striles: Striles,
    /// The band whose color interpretation is alpha (from ExtraSamples), if any.
    pub(crate) alpha_band: Option<u32>,
    pub(crate) nodata: Option<f64>,
    /// `INTERNAL_MASK_FLAGS_1` of the GDAL metadata (what a `.msk` file says of itself).
    pub(crate) msk_flags: Option<u32>,
}

impl Image {
    /// Offset and byte count of a strile, when it exists (byte count not zero).
    pub(crate) fn strile(&self, id: u64) -> Option<(u64, u64)> {
        if id >= self.nstrips {
            return None;
        }
        let (offset, count) = self.striles.get(id);
        (count != 0).then_some((offset, count))
    }
}

// ---------------------------------------------------------------------------------------------
// GDAL: GTiffDataset::OpenOffset() and the band objects it creates.

fn gdal_open(dir: &Dir) -> Result<Image, String> {
    let (width, height) = (dir.width, dir.height);
    if width == 0 || height == 0 {
        return Err("zero image size".into());
    }
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err("too large image size".into());
    }
    if dir.compression != COMPRESSION_NONE && !codec_configured(dir.compression) {
        return Err(format!("missing codec of code {}", dir.compression));
    }
    let mut nbands = u32::from(dir.spp);
    let bits = dir.bits;
    let (block_w, mut block_h) = if dir.tiled {
        (dir.tile_w, dir.tile_h)
    } else {
        (width, dir.rows_per_strip.unwrap_or(height).min(height))
    };
    if block_w == 0 || block_h == 0 || block_w > i32::MAX as u32 || block_h > i32::MAX as u32 {
        return Err("bad block size".into());
    }
    let blocks_per_row = u64::from(width).div_ceil(u64::from(block_w));
    let blocks_per_col = u64::from(height).div_ceil(u64::from(block_h));
    if blocks_per_col > i32::MAX as u64 / blocks_per_row {
        return Err("too many blocks".into());
    }
    let blocks_per_band = blocks_per_row * blocks_per_col;
    if dir.planar_separate && blocks_per_band > i32::MAX as u64 / u64::from(nbands) {
        return Err("too many blocks".into());
    }

    let bitmap = bits == 1 && nbands == 1;
    let split_bitmap = bitmap
        && !dir.tiled
        && block_h == height
        && height > 2000
        && dir.compression != COMPRESSION_JBIG;
    let rgba = !bitmap
        && bits <= 8
        && (matches!(
            dir.photometric,
            PHOTOMETRIC_CIELAB | PHOTOMETRIC_LOGL | PHOTOMETRIC_LOGLUV | PHOTOMETRIC_SEPARATED
        ) || (dir.photometric == PHOTOMETRIC_YCBCR && dir.compression != COMPRESSION_JPEG));
    if rgba {
        nbands = if dir.photometric == PHOTOMETRIC_YCBCR {
            3
        } else {
            4
        };
    }
    if dir.compression == COMPRESSION_OJPEG && !rgba {
        return Err("Old-JPEG compression only supported through the RGBA interface".into());
    }
    let split = !dir.tiled && bits == 8 && block_h == height && height > 2000 && !rgba;
    if split || split_bitmap {
        block_h = 1;
    }
    if dir.sample_format == SAMPLEFORMAT_IEEEFP && !matches!(bits, 16 | 24 | 32 | 64) {
        return Err(format!("SampleFormat=IEEEFP and BitsPerSample={bits}"));
    }
    let data_type = if rgba || bits <= 8 {
        DataType::Byte
    } else {
        match (dir.sample_format, bits) {
            (SAMPLEFORMAT_IEEEFP, 16 | 24 | 32) => DataType::Float32,
            (SAMPLEFORMAT_IEEEFP, 64) => DataType::Float64,
            (SAMPLEFORMAT_INT, 9..=16) => DataType::Int16,
            (SAMPLEFORMAT_INT, 17..=32) => DataType::Int32,
            (SAMPLEFORMAT_COMPLEXINT | SAMPLEFORMAT_COMPLEXIEEEFP, _) => DataType::Other,
            (_, 9..=16) => DataType::UInt16,
            (_, 17..=32) => DataType::UInt32,
            (_, 33..=64) => DataType::Other,
            _ => return Err(format!("unsupported BitsPerSample={bits}")),
        }
    };

    // Color interpretation: a band is alpha when its extra sample says so.
    let alpha_band = if rgba {
        None
    } else {
        let count = dir.extra_samples.len() as u32;
        let base = u32::from(dir.spp).saturating_sub(count);
        (1..=nbands).find(|&b| {
            b > base
                && b - base - 1 < count
                && matches!(dir.extra_samples[(b - base - 1) as usize], 1 | 2)
        })
    };
    Ok(Image {
        ifd_offset: dir.offset,
        width,
        height,
        nbands,
        data_type,
        planar_separate: dir.planar_separate,
        block_w,
        block_h,
        blocks_per_row,
        blocks_per_col: u64::from(height).div_ceil(u64::from(block_h)),
        blocks_per_band,
        nstrips: dir.nstrips,
        striles: dir.striles.clone(),
        alpha_band,
        nodata: dir.nodata,
        msk_flags: dir.msk_flags,
    })
}

// ---------------------------------------------------------------------------------------------
// Bands and their masks.

/// One band as the script sees it: band `band` (1-based) of an image.
#[derive(Clone, Copy)]
pub(crate) struct BandRef<'a> {
    pub(crate) image: &'a Image,
    pub(crate) band: u32,
}

impl<'a> BandRef<'a> {
    pub(crate) fn new(image: &'a Image, band: u32) -> Self {
        Self { image, band }
    }

    pub(crate) fn block_size(&self) -> (u32, u32) {
        (self.image.block_w, self.image.block_h)
    }

    pub(crate) fn block_index(&self, x: u64, y: u64) -> Option<u64> {
        let im = self.image;
        if x >= im.blocks_per_row || y >= im.blocks_per_col {
            return None;
        }
        let mut id = y.checked_mul(im.blocks_per_row)?.checked_add(x)?;
        if im.planar_separate {
            id = id.checked_add(u64::from(self.band - 1).checked_mul(im.blocks_per_band)?)?;
        }
        Some(id)
    }

    /// `BLOCK_OFFSET_x_y` and `BLOCK_SIZE_x_y` of the TIFF metadata domain: present when the
    /// block's byte count is not zero.
    pub(crate) fn block(&self, x: u64, y: u64) -> Option<(u64, u64)> {
        let id = self.block_index(x, y)?;
        self.image.strile(id)
    }

    /// The script's `get_block_offset()`: offset of the first existing block in row-major
    /// order, 0 when there is none.
    pub(crate) fn first_block_offset(&self) -> u64 {
        let im = self.image;
        let Some(start) = self.block_index(0, 0) else {
            return 0;
        };
        // Block ids of one band are consecutive in row-major order.
        let count = im.blocks_per_row.saturating_mul(im.blocks_per_col);
        let end = start
            .saturating_add(count)
            .min(im.nstrips)
            .min(im.striles.known_len());
        (start..end)
            .find_map(|id| im.strile(id))
            .map_or(0, |(offset, _)| offset)
    }
}

/// A mask band: its `GetMaskFlags()` value and, when it is a band of a TIFF file, that band
/// (nodata and all-valid masks have the parent's block size and no block offsets).
#[derive(Clone)]
pub(crate) struct MaskInfo<'a> {
    pub(crate) flags: u32,
    pub(crate) band: Option<BandRef<'a>>,
}

// ---------------------------------------------------------------------------------------------
// Side-car files and GDAL's metadata.

/// GDAL's side-car lookup (`CPLCheckForFile` on the directory listing): the first file named
/// `path.<ext>` in any case; without a usable listing (more than 1000 files), `path.<ext>`
/// then `path.<EXT>`.
pub(crate) fn find_sibling(path: &Path, ext: &str) -> Option<PathBuf> {
    let mut exact = path.as_os_str().to_os_string();
    exact.push(".");
    exact.push(ext);
    let exact = PathBuf::from(exact);
    let listed = (|| {
        let name = exact.file_name()?.to_str()?.to_string();
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let names: Vec<_> = std::fs::read_dir(&dir)
            .ok()?
            .take(1001)
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        // GDAL does not use listings of more than 1000 files.
        if names.len() > 1000 {
            return None;
        }
        let found = names
            .iter()
            .find(|n| n.to_str().is_some_and(|n| n.eq_ignore_ascii_case(&name)))
            .map(|n| exact.with_file_name(n));
        Some(found)
    })();
    match listed {
        Some(found) => found,
        None => find_side_car_without_listing(path, ext),
    }
}

/// GDAL's side-car lookup without a directory listing: `path.<ext>`, then `path.<EXT>`.
pub(crate) fn find_side_car_without_listing(path: &Path, ext: &str) -> Option<PathBuf> {
    [ext.to_string(), ext.to_ascii_uppercase()]
        .into_iter()
        .map(|e| {
            let mut p = path.as_os_str().to_os_string();
            p.push(".");
            p.push(e);
            PathBuf::from(p)
        })
        .find(|p| p.exists())
}

/// The value of the `INTERNAL_MASK_FLAGS_1` item of a GDAL_METADATA XML document, as `atoi`
/// reads it.
pub(crate) fn internal_mask_flags(xml: &[u8]) -> Option<u32> {
    let key = b"\"INTERNAL_MASK_FLAGS_1\"";
    let at = xml.windows(key.len()).position(|w| w == key)? + key.len();
    let start = at + xml[at..].iter().position(|&b| b == b'>')? + 1;
    let text: String = xml[start..]
        .iter()
        .take_while(|&&b| b != b'<')
        .map(|&b| char::from(b))
        .collect();
    let t = text.trim_start();
    let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
    Some(digits.parse::<u32>().unwrap_or(0))
}
