//! libtiff: `TIFFReadDirectory()` as far as it decides what GDAL sees: which tags it reads and
//! how (the first of repeated tags wins, RowsPerStrip giving a default tile size, on-demand
//! loading of offsets in 4 KiB pages), the strip and tile counts, its estimate of missing or
//! bogus strip byte counts and its splitting of a single uncompressed strip into ~8 KiB strips.

use crate::gdal::internal_mask_flags;
use crate::numbers::atof;
use crate::tiff::*;

/// libtiff's strip/tile offsets and byte counts.
#[derive(Debug, Clone)]
pub(crate) enum Striles {
    /// As stored (missing entries read as 0).
    Stored { offsets: Vec<u64>, counts: Vec<u64> },
    /// A single uncompressed strip (or contiguous big strips) cut into `n` strips of
    /// `strip_bytes` (libtiff's `allocChoppedUpStripArrays`).
    Chopped {
        offset: u64,
        total: u64,
        strip_bytes: u64,
        n: u64,
    },
}

impl Striles {
    pub(crate) fn get(&self, id: u64) -> (u64, u64) {
        match self {
            Striles::Stored { offsets, counts } => {
                let at = |v: &[u64]| usize::try_from(id).ok().and_then(|i| v.get(i).copied());
                (at(offsets).unwrap_or(0), at(counts).unwrap_or(0))
            }
            Striles::Chopped {
                offset,
                total,
                strip_bytes,
                n,
            } => {
                if id >= *n {
                    return (0, 0);
                }
                let before = id.saturating_mul(*strip_bytes);
                let count = (*strip_bytes).min(total.saturating_sub(before));
                let off = if count > 0 { offset + before } else { 0 };
                (off, count)
            }
        }
    }

    /// Striles at or after this index have a zero byte count.
    pub(crate) fn known_len(&self) -> u64 {
        match self {
            Striles::Stored { counts, .. } => counts.len() as u64,
            Striles::Chopped { n, .. } => *n,
        }
    }
}

pub(crate) const COMPRESSION_NONE: u16 = 1;
pub(crate) const COMPRESSION_OJPEG: u16 = 6;
pub(crate) const COMPRESSION_JPEG: u16 = 7;
pub(crate) const COMPRESSION_JBIG: u16 = 34661;

pub(crate) const PHOTOMETRIC_MINISWHITE: u16 = 0;
pub(crate) const PHOTOMETRIC_MINISBLACK: u16 = 1;
pub(crate) const PHOTOMETRIC_RGB: u16 = 2;
pub(crate) const PHOTOMETRIC_SEPARATED: u16 = 5;
pub(crate) const PHOTOMETRIC_YCBCR: u16 = 6;
pub(crate) const PHOTOMETRIC_CIELAB: u16 = 8;
pub(crate) const PHOTOMETRIC_LOGL: u16 = 32844;
pub(crate) const PHOTOMETRIC_LOGLUV: u16 = 32845;

pub(crate) const SAMPLEFORMAT_UINT: u16 = 1;
pub(crate) const SAMPLEFORMAT_INT: u16 = 2;
pub(crate) const SAMPLEFORMAT_IEEEFP: u16 = 3;
pub(crate) const SAMPLEFORMAT_COMPLEXINT: u16 = 5;
pub(crate) const SAMPLEFORMAT_COMPLEXIEEEFP: u16 = 6;

/// libtiff's `STRIP_SIZE_DEFAULT`.
const STRIP_SIZE_DEFAULT: u64 = 8192;

/// A directory as libtiff read it.
#[derive(Debug, Clone)]
pub(crate) struct Dir {
    pub(crate) offset: u64,
    pub(crate) next: u64,
    pub(crate) subfile_type: u32,
    pub(crate) subifds: Option<Vec<u64>>,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) spp: u16,
    pub(crate) bits: u16,
    pub(crate) sample_format: u16,
    pub(crate) compression: u16,
    pub(crate) photometric: u16,
    pub(crate) planar_separate: bool,
    pub(crate) tiled: bool,
    pub(crate) tile_w: u32,
    pub(crate) tile_h: u32,
    /// Set only when the RowsPerStrip tag was read (or set by strip chopping).
    pub(crate) rows_per_strip: Option<u32>,
    pub(crate) extra_samples: Vec<u16>,
    pub(crate) nstrips: u64,
    pub(crate) striles: Striles,
    pub(crate) nodata: Option<f64>,
    pub(crate) msk_flags: Option<u32>,
}

impl Dir {
    fn samples_in_row(&self) -> u64 {
        if self.planar_separate {
            1
        } else {
            u64::from(self.spp)
        }
    }

    /// Whether libtiff sizes rows in YCbCr sampling blocks.
    fn ycbcr_subsampled(&self) -> bool {
        !self.planar_separate && self.photometric == PHOTOMETRIC_YCBCR && self.spp == 3
    }

    /// `TIFFScanlineSize64()` (0 for an invalid YCbCr subsampling).
    fn scanline_size(&self, sub: (u16, u16)) -> u64 {
        let bits = u64::from(self.bits);
        if self.ycbcr_subsampled() {
            if !valid_subsampling(sub) {
                return 0;
            }
            let (h, v) = (u64::from(sub.0.max(1)), u64::from(sub.1.max(1)));
            let block_samples = h * v + 2;
            let blocks_hor = u64::from(self.width).div_ceil(h);
            let row_size = (blocks_hor * block_samples * bits).div_ceil(8);
            row_size / v
        } else {
            (u64::from(self.width) * self.samples_in_row() * bits).div_ceil(8)
        }
    }

    /// `TIFFVStripSize64(nrows)` (and `TIFFVTileSize64` for a strip as wide as the image).
    fn vstrip_size(&self, nrows: u64, sub: (u16, u16)) -> u64 {
        self.vsize(u64::from(self.width), nrows, sub)
    }

    fn vsize(&self, width: u64, nrows: u64, sub: (u16, u16)) -> u64 {
        let bits = u64::from(self.bits);
        if self.ycbcr_subsampled() {
            if !valid_subsampling(sub) {
                return 0;
            }
            let (h, v) = (u64::from(sub.0.max(1)), u64::from(sub.1.max(1)));
            let block_samples = h * v + 2;
            let blocks_hor = width.div_ceil(h);
            let blocks_ver = nrows.div_ceil(v);
            (blocks_hor * block_samples * bits)
                .div_ceil(8)
                .saturating_mul(blocks_ver)
        } else {
            nrows.saturating_mul((width * self.samples_in_row() * bits).div_ceil(8))
        }
    }
}

impl Tiff<'_> {
    /// Strip/tile offsets or byte counts, loaded the way libtiff's deferred loading does:
    /// unreadable or badly typed values read as 0, extra values are ignored.
    fn strile_array(&mut self, e: Option<&Entry>, nstrips: u64) -> Vec<u64> {
        let Some(e) = e else {
            return Vec::new();
        };
        let lazy = e.count > 4;
        let ok_type = if lazy {
            matches!(e.typ, 3 | 4 | 16 | 17)
        } else {
            matches!(e.typ, 1 | 3 | 4 | 6 | 8 | 9 | 13 | 16 | 17 | 18)
        };
        if !ok_type {
            return Vec::new();
        }
        let Some(size) = type_size(e.typ) else {
            return Vec::new();
        };
        let Some(bytes) = self.entry_bytes(e, nstrips) else {
            return Vec::new();
        };
        let decoded = bytes
            .chunks_exact(size as usize)
            .map(|c| self.decode(e.typ, c).unwrap_or(0));
        if !lazy {
            // An array read in one go loads completely or not at all.
            let values: Option<Vec<u64>> = decoded.map(|v| u64::try_from(v).ok()).collect();
            return match values {
                Some(v) if v.len() as u64 == e.count.min(nstrips) => v,
                _ => Vec::new(),
            };
        }
        // On-demand loading (`_TIFFPartialReadStripArray`): a value is read with the rest of
        // its 4 KiB page (clipped to the array) and is 0 when that read falls short.
        let base = if self.big {
            self.u64(&e.field)
        } else {
            u64::from(self.u32(&e.field))
        };
        if base > i64::MAX as u64 {
            return Vec::new();
        }
        let file_len = self.src.len;
        let array_end = base.saturating_add(nstrips.saturating_mul(size));
        decoded
            .enumerate()
            .map(|(i, v)| {
                let at = base + size * i as u64;
                let page = at / 4096 * 4096;
                let mut end = page + 4096;
                if at + size > end {
                    end += 4096;
                }
                let end = end.min(array_end);
                if page >= end || end > file_len {
                    0
                } else {
                    v as u64
                }
            })
            .collect()
    }

    /// `TIFFReadDirectory()`.
    pub(crate) fn read_directory(&mut self, offset: u64) -> Result<Dir, String> {
        let (entries, next) = self.fetch_directory(offset)?;
        // libtiff ignores the repeats of a tag: the first entry wins.
        let find = |tag: u16| entries.iter().find(|e| e.tag == tag).copied();

        let spp = match find(TAG_SAMPLES_PER_PIXEL) {
            Some(e) => {
                let v = self
                    .scalar(&e, 0xFFFF)
                    .ok_or("cannot read SamplesPerPixel")?;
                if v == 0 {
                    return Err("SamplesPerPixel is 0".into());
                }
                v as u16
            }
            None => 1,
        };
        // One value, or one per sample (all equal).
        let compression = match find(TAG_COMPRESSION) {
            Some(e) => self
                .per_sample_short(&e, spp)
                .ok_or("cannot read Compression")?,
            None => COMPRESSION_NONE,
        };
        let read_u32 = |tiff: &mut Self, tag: u16, name: &str| -> Result<Option<u32>, String> {
            match find(tag) {
                Some(e) => tiff
                    .scalar(&e, u64::from(u32::MAX))
                    .map(|v| Some(v as u32))
                    .ok_or_else(|| format!("cannot read {name}")),
                None => Ok(None),
            }
        };
        let width = read_u32(self, TAG_IMAGE_WIDTH, "ImageWidth")?.unwrap_or(0);
        let height = read_u32(self, TAG_IMAGE_LENGTH, "ImageLength")?
            .ok_or("missing required ImageLength")?;
        let tile_w_tag = read_u32(self, TAG_TILE_WIDTH, "TileWidth")?;
        let tile_h_tag = read_u32(self, TAG_TILE_LENGTH, "TileLength")?;
        let planar_separate = match find(TAG_PLANAR_CONFIG) {
            Some(e) => match self.scalar(&e, 0xFFFF) {
                Some(1) => false,
                Some(2) => true,
                _ => return Err("bad PlanarConfiguration".into()),
            },
            None => false,
        };
        let rows_per_strip = read_u32(self, TAG_ROWS_PER_STRIP, "RowsPerStrip")?;
        if rows_per_strip == Some(0) {
            return Err("RowsPerStrip is 0".into());
        }
        let mut extra_samples = match find(TAG_EXTRA_SAMPLES) {
            Some(e) => {
                let v = self.entry_ints(&e).ok_or("cannot read ExtraSamples")?;
                if v.len() > usize::from(spp) {
                    return Err("bad ExtraSamples count".into());
                }
                v.into_iter()
                    .map(|s| match s {
                        0..=2 => Ok(s as u16),
                        999 => Ok(2),
                        _ => Err("bad ExtraSamples value".to_string()),
                    })
                    .collect::<Result<Vec<u16>, String>>()?
            }
            None => Vec::new(),
        };
        let bits = match find(TAG_BITS_PER_SAMPLE) {
            Some(e) => self
                .per_sample_short(&e, spp)
                .ok_or("cannot read BitsPerSample")?,
            None => 1,
        };
        let sample_format = match find(TAG_SAMPLE_FORMAT) {
            Some(e) => {
                let v = self
                    .per_sample_short(&e, spp)
                    .ok_or("cannot read SampleFormat")?;
                if !(1..=6).contains(&v) {
                    return Err("bad SampleFormat".into());
                }
                v
            }
            None => SAMPLEFORMAT_UINT,
        };
        let photometric = match find(TAG_PHOTOMETRIC) {
            Some(e) => self
                .scalar(&e, 0xFFFF)
                .unwrap_or(u64::from(PHOTOMETRIC_MINISBLACK)) as u16,
            None => PHOTOMETRIC_MINISBLACK,
        };
        let subfile_type = find(TAG_NEW_SUBFILE_TYPE)
            .and_then(|e| self.scalar(&e, u64::from(u32::MAX)))
            .unwrap_or(0) as u32;
        let subifds = match find(TAG_SUB_IFDS) {
            Some(e) if e.count <= 0xFFFF => self.entry_ints(&e).map(|v| {
                v.into_iter()
                    .map(|x| u64::try_from(x).unwrap_or(0))
                    .collect()
            }),
            _ => None,
        };
        let sub = match find(TAG_YCBCR_SUBSAMPLING) {
            Some(e) if e.count == 2 => match self.entry_ints(&e).as_deref() {
                Some(&[h, v]) => (h.clamp(0, 0xFFFF) as u16, v.clamp(0, 0xFFFF) as u16),
                _ => (2, 2),
            },
            _ => (2, 2),
        };
        let nodata = find(TAG_GDAL_NODATA).and_then(|e| {
            if e.typ != 2 {
                return None;
            }
            let bytes = self.entry_bytes(&e, e.count)?;
            let text: String = bytes
                .iter()
                .take_while(|&&b| b != 0)
                .map(|&b| char::from(b))
                .collect();
            (!text.is_empty()).then(|| atof(&text))
        });
        let msk_flags = find(TAG_GDAL_METADATA).and_then(|e| {
            let xml = self.entry_bytes(&e, e.count)?;
            internal_mask_flags(&xml)
        });

        // Non-color channels are extra samples.
        let color_channels: u16 = match photometric {
            PHOTOMETRIC_MINISWHITE | PHOTOMETRIC_MINISBLACK | 3 | 4 | PHOTOMETRIC_LOGL => 1,
            PHOTOMETRIC_RGB | PHOTOMETRIC_YCBCR | PHOTOMETRIC_CIELAB | 9 | 10
            | PHOTOMETRIC_LOGLUV => 3,
            PHOTOMETRIC_SEPARATED => 4,
            _ => 0,
        };
        if color_channels > 0 && spp.saturating_sub(extra_samples.len() as u16) > color_channels {
            extra_samples.resize(usize::from(spp - color_channels), 0);
        }

        // The tile size, as libtiff sets it tag by tag in directory order: RowsPerStrip sets
        // a strip-shaped tile size (image width x rows) unless a tile tag came first, and a
        // TileWidth or TileLength tag makes the image tiled.
        let (mut tile_w, mut tile_h, mut tiled, mut width_so_far) = (0u32, 0u32, false, 0u32);
        let first_index = |tag: u16| entries.iter().position(|e| e.tag == tag);
        for (i, e) in entries.iter().enumerate() {
            if first_index(e.tag) != Some(i) {
                continue;
            }
            match e.tag {
                TAG_IMAGE_WIDTH => width_so_far = width,
                TAG_ROWS_PER_STRIP if !tiled => {
                    tile_h = rows_per_strip.unwrap_or(0);
                    tile_w = width_so_far;
                }
                TAG_TILE_WIDTH => {
                    tile_w = tile_w_tag.unwrap_or(0);
                    tiled = true;
                }
                TAG_TILE_LENGTH => {
                    tile_h = tile_h_tag.unwrap_or(0);
                    tiled = true;
                }
                _ => {}
            }
        }
        // TIFFNumberOfTiles() / TIFFNumberOfStrips(), 0 on 32-bit overflow.
        let howmany = |x: u32, y: u32| -> Option<u32> {
            (y != 0 && x < u32::MAX - (y - 1)).then(|| x.div_ceil(y))
        };
        let planes = if planar_separate { u32::from(spp) } else { 1 };
        let nstrips = if tiled {
            let dim = |d: u32, full: u32| if d == u32::MAX { full } else { d };
            let (dx, dy) = (dim(tile_w, width), dim(tile_h, height));
            if dx == 0 || dy == 0 {
                None
            } else {
                howmany(width, dx)
                    .zip(howmany(height, dy))
                    .and_then(|(a, b)| a.checked_mul(b))
                    .and_then(|n| n.checked_mul(planes))
            }
        } else {
            match rows_per_strip {
                None | Some(u32::MAX) => Some(1),
                Some(r) => howmany(height, r),
            }
            .and_then(|n| n.checked_mul(planes))
        };
        let nstrips = u64::from(nstrips.unwrap_or(0));
        if nstrips == 0 {
            return Err("zero number of strips/tiles".into());
        }
        // libtiff keeps strip and tile offsets (and byte counts) in the same field: of the
        // first StripOffsets and the first TileOffsets entries, the later one wins.
        let last_of = |a: u16, b: u16| {
            let first = |tag: u16| entries.iter().position(|e| e.tag == tag);
            match (first(a), first(b)) {
                (Some(i), Some(j)) => Some(entries[i.max(j)]),
                (Some(i), None) | (None, Some(i)) => Some(entries[i]),
                (None, None) => None,
            }
        };
        let offsets_entry = last_of(TAG_STRIP_OFFSETS, TAG_TILE_OFFSETS);
        let counts_entry = last_of(TAG_STRIP_BYTE_COUNTS, TAG_TILE_BYTE_COUNTS);
        if offsets_entry.is_none() && !(compression == COMPRESSION_OJPEG && !tiled && nstrips == 1)
        {
            return Err("missing required StripOffsets/TileOffsets".into());
        }

        let mut dir = Dir {
            offset,
            next,
            subfile_type,
            subifds,
            width,
            height,
            spp,
            bits,
            sample_format,
            compression,
            photometric,
            planar_separate,
            tiled,
            tile_w,
            tile_h,
            rows_per_strip,
            extra_samples,
            nstrips,
            striles: Striles::Stored {
                offsets: Vec::new(),
                counts: Vec::new(),
            },
            nodata,
            msk_flags,
        };
        let offsets = self.strile_array(offsets_entry.as_ref(), nstrips);
        let counts = self.strile_array(counts_entry.as_ref(), nstrips);
        let file_len = self.src.len;

        if compression != COMPRESSION_OJPEG {
            let estimate = if counts_entry.is_none() {
                if (!planar_separate && nstrips > 1)
                    || (planar_separate && nstrips != u64::from(spp))
                {
                    return Err("missing required StripByteCounts".into());
                }
                true
            } else {
                nstrips == 1 && !tiled && {
                    let bytecount = counts.first().copied().unwrap_or(0);
                    let off = offsets.first().copied().unwrap_or(0);
                    byte_count_looks_bad(&dir, off, bytecount, file_len, sub)
                }
            };
            let counts = if estimate {
                self.estimate_byte_counts(&dir, &entries, &offsets, file_len, sub)?
            } else {
                counts
            };
            dir.striles = Striles::Stored { offsets, counts };
        } else {
            dir.striles = Striles::Stored { offsets, counts };
        }

        // Split a single uncompressed strip into ~8 KiB strips; expose huge strips as
        // 512 MiB ones.
        if !planar_separate && compression == COMPRESSION_NONE && !tiled {
            if dir.nstrips == 1 {
                chop_single_uncompressed_strip(&mut dir, file_len, sub);
            }
            let rps = dir.effective_rows_per_strip();
            if dir.vstrip_size(rps, sub) > 0x7FFF_FFFF {
                try_chop_big_strips(&mut dir, file_len, sub);
            }
        }

        if width == 0 || dir.scanline_size(sub) == 0 {
            return Err("cannot handle zero scanline size".into());
        }
        let chunk = if tiled {
            dir.vsize(u64::from(tile_w), u64::from(tile_h), sub)
        } else {
            dir.vstrip_size(dir.effective_rows_per_strip(), sub)
        };
        if chunk == 0 {
            return Err("cannot handle zero strip/tile size".into());
        }
        Ok(dir)
    }

    /// `EstimateStripByteCounts()`.
    fn estimate_byte_counts(
        &mut self,
        dir: &Dir,
        entries: &[Entry],
        offsets: &[u64],
        file_len: u64,
        sub: (u16, u16),
    ) -> Result<Vec<u64>, String> {
        let n = usize::try_from(dir.nstrips).map_err(|_| "too many strips")?;
        if offsets.len() < n {
            return Err("cannot read the strip offsets".into());
        }
        if dir.compression != COMPRESSION_NONE {
            let mut space: u64 = if self.big {
                16 + 8 + entries.len() as u64 * 20 + 8
            } else {
                8 + 2 + entries.len() as u64 * 12 + 4
            };
            let inline = if self.big { 8 } else { 4 };
            for e in entries {
                let width = type_size(e.typ).ok_or("unknown tag type")?;
                let size = width.checked_mul(e.count).ok_or("overflow")?;
                if size > inline {
                    space = space.checked_add(size).ok_or("overflow")?;
                }
            }
            let mut space = if file_len < space {
                file_len
            } else {
                file_len - space
            };
            if dir.planar_separate {
                space /= u64::from(dir.spp);
            }
            let mut counts = vec![space; n];
            let last = n - 1;
            let off = offsets[last];
            if off.checked_add(space).is_none() {
                return Err("overflow".into());
            }
            if off + space > file_len {
                counts[last] = file_len.saturating_sub(off);
            }
            Ok(counts)
        } else if dir.tiled {
            let size = dir.vsize(u64::from(dir.tile_w), u64::from(dir.tile_h), sub);
            Ok(vec![size; n])
        } else {
            let strips_per_image = if dir.planar_separate {
                dir.nstrips / u64::from(dir.spp)
            } else {
                dir.nstrips
            };
            let rows = u64::from(dir.height) / strips_per_image.max(1);
            let size = dir.scanline_size(sub).checked_mul(rows).ok_or("overflow")?;
            Ok(vec![size; n])
        }
    }
}

impl Dir {
    /// `min(td_rowsperstrip, td_imagelength)` as libtiff uses it for strip sizes.
    fn effective_rows_per_strip(&self) -> u64 {
        u64::from(self.rows_per_strip.unwrap_or(u32::MAX).min(self.height))
    }
}

fn valid_subsampling(sub: (u16, u16)) -> bool {
    matches!(sub.0, 1 | 2 | 4) && matches!(sub.1, 1 | 2 | 4)
}

/// libtiff's `ByteCountLooksBad()` for a single-strip image.
fn byte_count_looks_bad(
    dir: &Dir,
    offset: u64,
    bytecount: u64,
    file_len: u64,
    sub: (u16, u16),
) -> bool {
    if offset == 0 {
        return false;
    }
    if bytecount == 0 {
        return true;
    }
    if dir.compression != COMPRESSION_NONE {
        return false;
    }
    if offset <= file_len && bytecount > file_len - offset {
        return true;
    }
    match dir.scanline_size(sub).checked_mul(u64::from(dir.height)) {
        None => true,
        Some(needed) => bytecount < needed,
    }
}

/// libtiff's `ChopUpSingleUncompressedStrip()`.
fn chop_single_uncompressed_strip(dir: &mut Dir, file_len: u64, sub: (u16, u16)) {
    let (offset, bytecount) = dir.striles.get(0);
    let row_block: u32 = if dir.photometric == PHOTOMETRIC_YCBCR {
        u32::from(sub.1)
    } else {
        1
    };
    let row_block_bytes = dir.vstrip_size(u64::from(row_block), sub);
    let (strip_bytes, rows_per_strip) = if row_block_bytes > STRIP_SIZE_DEFAULT {
        (row_block_bytes, row_block)
    } else if let Some(blocks) = STRIP_SIZE_DEFAULT.checked_div(row_block_bytes) {
        let Some(rows) = u32::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(row_block))
        else {
            return;
        };
        (blocks * row_block_bytes, rows)
    } else {
        return;
    };
    // Never increase the number of rows per strip.
    if rows_per_strip >= dir.rows_per_strip.unwrap_or(u32::MAX) {
        return;
    }
    let nstrips = u64::from(dir.height).div_ceil(u64::from(rows_per_strip));
    if nstrips == 0 {
        return;
    }
    // libtiff compares with the byte count here (it reads it into its `offset` variable).
    if nstrips > 1_000_000
        && (bytecount >= file_len || strip_bytes > (file_len - bytecount) / (nstrips - 1))
    {
        return;
    }
    alloc_chopped(
        dir,
        offset,
        offset.checked_add(bytecount),
        nstrips,
        strip_bytes,
        rows_per_strip,
    );
}

/// libtiff's `TryChopUpUncompressedBigTiff()`.
fn try_chop_big_strips(dir: &mut Dir, file_len: u64, sub: (u16, u16)) {
    let strip_size = dir.vstrip_size(dir.effective_rows_per_strip(), sub);
    let row_block: u32 = if dir.photometric == PHOTOMETRIC_YCBCR {
        u32::from(sub.1)
    } else {
        1
    };
    let row_block_bytes = dir.vstrip_size(u64::from(row_block), sub);
    if row_block_bytes == 0 || row_block_bytes > 0x7FFF_FFFF {
        return;
    }
    let n = dir.nstrips;
    let rps = u64::from(dir.rows_per_strip.unwrap_or(u32::MAX));
    for i in 0..n {
        let (off, count) = dir.striles.get(i);
        if i == n - 1 {
            let rows = u64::from(dir.height).saturating_sub(i.saturating_mul(rps));
            if count < dir.vstrip_size(rows, sub) {
                return;
            }
        } else {
            if count != strip_size {
                return;
            }
            if i > 0 {
                let (prev_off, prev_count) = dir.striles.get(i - 1);
                if off != prev_off.wrapping_add(prev_count) {
                    return;
                }
            }
        }
    }
    let blocks = (512 * 1024 * 1024 / row_block_bytes).max(1);
    let Some(rows_per_strip) = u32::try_from(blocks)
        .ok()
        .and_then(|b| b.checked_mul(row_block))
    else {
        return;
    };
    let strip_bytes = blocks * row_block_bytes;
    let nstrips = u64::from(dir.height).div_ceil(u64::from(rows_per_strip));
    if nstrips == 0 {
        return;
    }
    let (last_off, last_count) = dir.striles.get(n - 1);
    if nstrips > 1_000_000 && (last_off > file_len || last_count > file_len - last_off) {
        return;
    }
    let (first, _) = dir.striles.get(0);
    alloc_chopped(
        dir,
        first,
        last_off.checked_add(last_count),
        nstrips,
        strip_bytes,
        rows_per_strip,
    );
}

/// libtiff's `allocChoppedUpStripArrays()`; `end` is the end of the last original strip.
fn alloc_chopped(
    dir: &mut Dir,
    offset: u64,
    end: Option<u64>,
    nstrips: u64,
    strip_bytes: u64,
    rows_per_strip: u32,
) {
    let Some(end) = end.filter(|&e| e >= offset) else {
        return;
    };
    dir.striles = Striles::Chopped {
        offset,
        total: end - offset,
        strip_bytes,
        n: nstrips,
    };
    dir.nstrips = nstrips;
    dir.rows_per_strip = Some(rows_per_strip);
}

/// `TIFFIsCODECConfigured()` in the reference build (Debian's GDAL 3.6 on libtiff 4.5): the
/// compression codes GDAL can open.
pub(crate) fn codec_configured(compression: u16) -> bool {
    matches!(
        compression,
        1..=8
            | 32766
            | 32771
            | 32773
            | 32809
            | 32909
            | 32946
            | 34661
            | 34676
            | 34677
            | 34887
            | 34925
            | 50000
            | 50001
    )
}
