//! The script's checks: `validate()` of `validate_cloud_optimized_geotiff.py` on GDAL's view
//! of the file (side-car overviews, tiling, IFD order, overview sizes, data order, GDAL's
//! ghost area) and, with the full check, `full_check_band()` on the blocks (leaders,
//! trailers, block order, mask interleaving).

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::gdal::{
    BandRef, Dataset, GMF_PER_DATASET, Image, MaskInfo, find_sibling, find_side_car_without_listing,
};
use crate::numbers::py_int;
use crate::tiff::{OpenError, Source};
use crate::{CogDetails, CogReport, CogValidateError, LevelOffsets};

/// Validate `path` as a Cloud Optimized GeoTIFF, like
/// `validate_cloud_optimized_geotiff.py [--full-check=yes|no] path`.
///
/// `full_check` also checks the block leaders/trailers, block order and mask interleaving
/// declared in GDAL's ghost area (it reads one word around each block).
pub fn validate_cog(path: &Path, full_check: bool) -> Result<CogReport, CogValidateError> {
    let fail = |e: OpenError| match e {
        OpenError::Io(source) => CogValidateError::Io {
            path: path.to_path_buf(),
            source,
        },
        OpenError::NotTiff(reason) => CogValidateError::NotTiff {
            path: path.to_path_buf(),
            reason,
        },
        OpenError::Malformed(reason) => CogValidateError::Malformed {
            path: path.to_path_buf(),
            reason,
        },
    };
    let malformed = |reason: String| CogValidateError::Malformed {
        path: path.to_path_buf(),
        reason,
    };

    let mut src = Source::open(path).map_err(OpenError::Io).map_err(fail)?;
    let ds = Dataset::load(&mut src).map_err(fail)?;

    // Side-car files, as GDAL finds them and lists them in GetFileList() (only if it can open
    // them). Without internal overviews, GDAL looks for `.ovr` when the script asks for the
    // overview count, before it has listed the directory: `path.ovr`, then `path.OVR`.
    // Otherwise `.ovr` (and `.msk` in any case) is looked up when the script asks for the
    // file list, in the directory listing, case-insensitively.
    let ovr_path = if ds.overviews.is_empty() {
        find_side_car_without_listing(path, "ovr")
    } else {
        find_sibling(path, "ovr")
    };
    let ovr = ovr_path.and_then(|p| Dataset::load_path(&p).map(|d| (p, d)));
    let msk = find_sibling(path, "msk").and_then(|p| Dataset::load_path(&p).map(|d| (p, d)));
    let in_file_list = |found: &Option<(PathBuf, Dataset)>, ext: &str| {
        let mut exact = path.as_os_str().to_os_string();
        exact.push(".");
        exact.push(ext);
        found.as_ref().is_some_and(|(p, _)| p.as_os_str() == exact)
    };
    let ovr_in_file_list = in_file_list(&ovr, "ovr");
    let msk_in_file_list = in_file_list(&msk, "msk");
    let msk_ds = msk.as_ref().map(|(_, d)| d);

    let main = LevelBand {
        image: &ds.main,
        mask: ds.base_mask(msk_ds),
    };
    // GTiffRasterBand::GetOverviewCount(): internal overviews, else those of the .ovr file.
    let mut levels: Vec<LevelBand<'_>> = Vec::new();
    if !ds.overviews.is_empty() {
        for i in 0..ds.overviews.len() {
            levels.push(LevelBand {
                image: &ds.overviews[i].image,
                mask: ds.overview_mask(i, msk_ds),
            });
        }
    } else if let Some((_, ext)) = &ovr {
        levels.push(LevelBand {
            image: &ext.main,
            mask: ext.base_mask(None),
        });
        for i in 0..ext.overviews.len() {
            levels.push(LevelBand {
                image: &ext.overviews[i].image,
                mask: ext.overview_mask(i, None),
            });
        }
    }
    let ovr_count = levels.len();

    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    if ovr_in_file_list {
        errors.push("Overviews found in external .ovr file. They should be internal".to_string());
    }

    let (main_w, main_h) = (u64::from(ds.main.width), u64::from(ds.main.height));
    if main_w > 512 || main_h > 512 {
        if u64::from(ds.main.block_w) == main_w && main_w > 1024 {
            errors.push("The file is greater than 512xH or Wx512, but is not tiled".to_string());
        }
        if ovr_count == 0 {
            warnings.push(
                "The file is greater than 512xH or Wx512, it is recommended to include internal \
                 overviews"
                    .to_string(),
            );
        }
    }

    let mut ifd_offsets = vec![ds.main.ifd_offset];
    let mut ghost = Ghost::default();
    if ds.main.ifd_offset != 8 && ds.main.ifd_offset != 16 {
        // GDAL's hidden structural metadata.
        let head = src.read_at(0, 4).map_err(OpenError::Io).map_err(fail)?;
        let bigtiff = head == [0x49, 0x49, 0x2B, 0x00] || head == [0x4D, 0x4D, 0x00, 0x2B];
        let mut expected: u64 = if bigtiff { 16 } else { 8 };
        let got = src
            .read_at(expected, GHOST_PATTERN_LEN)
            .map_err(OpenError::Io)
            .map_err(fail)?;
        if got.len() == GHOST_PATTERN_LEN && got.starts_with(GHOST_PREFIX) {
            let digits: String = got[GHOST_PREFIX.len()..GHOST_PREFIX.len() + 6]
                .iter()
                .map(|&b| char::from(b))
                .collect();
            let size = py_int(&digits)
                .ok_or_else(|| malformed(format!("invalid ghost area size {digits:?}")))?;
            let size = u64::try_from(size)
                .map_err(|_| malformed(format!("negative ghost area size {size}")))?;
            let start = expected + GHOST_PATTERN_LEN as u64;
            let want = usize::try_from(size).unwrap_or(usize::MAX);
            let mut md = src
                .read_at(start, want)
                .map_err(OpenError::Io)
                .map_err(fail)?;
            if md.len() != want {
                // VSIFReadL(size, 1, f) reads one item of `size` bytes, or nothing.
                md.clear();
            }
            ghost = Ghost {
                block_order_row_major: contains(&md, b"BLOCK_ORDER=ROW_MAJOR"),
                leader_size_as_uint4: contains(&md, b"BLOCK_LEADER=SIZE_AS_UINT4"),
                trailer_last_4_bytes_repeated: contains(
                    &md,
                    b"BLOCK_TRAILER=LAST_4_BYTES_REPEATED",
                ),
                mask_interleaved_with_imagery: contains(&md, b"MASK_INTERLEAVED_WITH_IMAGERY=YES"),
            };
            if contains(&md, b"KNOWN_INCOMPATIBLE_EDITION=YES") {
                errors.push("KNOWN_INCOMPATIBLE_EDITION=YES is declared in the file".to_string());
            }
            expected = start + size;
            // The IFD starts on a 2-byte boundary.
            expected += expected % 2;
        }
        if expected != ifd_offsets[0] {
            errors.push(format!(
                "The offset of the main IFD should be {expected}. It is {} instead",
                ifd_offsets[0]
            ));
        }
    }

    for (i, level) in levels.iter().enumerate() {
        let (w, h) = (level.image.width, level.image.height);
        if i == 0 {
            if w > ds.main.width || h > ds.main.height {
                errors.push("First overview has larger dimension than main band".to_string());
            }
        } else {
            let prev = levels[i - 1].image;
            if w > prev.width || h > prev.height {
                errors.push(format!(
                    "Overview of index {i} has larger dimension than overview of index {}",
                    i - 1
                ));
            }
        }
        if level.image.block_w == w && w > 1024 {
            errors.push(format!("Overview of index {i} is not tiled"));
        }
        let offset = level.image.ifd_offset;
        let prev = *ifd_offsets.last().expect("main IFD offset");
        ifd_offsets.push(offset);
        if offset < prev {
            if i == 0 {
                errors.push(format!(
                    "The offset of the IFD for overview of index {i} is {offset}, whereas it \
                     should be greater than the one of the main image, which is at byte {prev}"
                ));
            } else {
                errors.push(format!(
                    "The offset of the IFD for overview of index {i} is {offset}, whereas it \
                     should be greater than the one of index {}, which is at byte {prev}",
                    i - 1
                ));
            }
        }
    }

    // The imagery should start with the smallest overview and end with the full resolution.
    let mut data_offsets = vec![BandRef::new(&ds.main, 1).first_block_offset()];
    for level in &levels {
        data_offsets.push(BandRef::new(level.image, 1).first_block_offset());
    }
    let last = data_offsets.len() - 1;
    if data_offsets[last] != 0 && data_offsets[last] < ifd_offsets[last] {
        if ovr_count > 0 {
            errors.push(
                "The offset of the first block of the smallest overview should be after its IFD"
                    .to_string(),
            );
        } else {
            errors.push(
                "The offset of the first block of the image should be after its IFD".to_string(),
            );
        }
    }
    for i in (1..data_offsets.len().saturating_sub(1)).rev() {
        if data_offsets[i] != 0 && data_offsets[i] < data_offsets[i + 1] {
            errors.push(format!(
                "The offset of the first block of overview of index {} should be after the one \
                 of the overview of index {i}",
                i - 1
            ));
        }
    }
    if data_offsets.len() >= 2 && data_offsets[0] != 0 && data_offsets[0] < data_offsets[1] {
        errors.push(format!(
            "The offset of the first block of the main resolution image should be after the one \
             of the overview of index {}",
            ovr_count as i64 - 1
        ));
    }

    if full_check && ghost.any() {
        let mut check = FullCheck {
            src: &mut src,
            errors: &mut errors,
            ghost,
            pos: 0,
        };
        let per_dataset_mask =
            |level: &LevelBand<'_>| level.mask.flags == GMF_PER_DATASET && !msk_in_file_list;
        check
            .band(
                "Main resolution image",
                &main,
                ghost.mask_interleaved_with_imagery,
            )
            .map_err(malformed)?;
        if per_dataset_mask(&main)
            && let Some(mask) = main.mask.band
        {
            check
                .band_only("Mask band of main resolution image", mask)
                .map_err(malformed)?;
        }
        for (i, level) in levels.iter().enumerate() {
            check
                .band(
                    &format!("Overview {i}"),
                    level,
                    ghost.mask_interleaved_with_imagery,
                )
                .map_err(malformed)?;
            if per_dataset_mask(level)
                && let Some(mask) = level.mask.band
            {
                check
                    .band_only(&format!("Mask band of overview {i}"), mask)
                    .map_err(malformed)?;
            }
        }
    }

    let (main_data, ovr_data) = data_offsets.split_first().expect("main data offset");
    Ok(CogReport {
        errors,
        warnings,
        details: CogDetails {
            ifd_offsets: LevelOffsets {
                main: ifd_offsets[0],
                overviews: ifd_offsets[1..].to_vec(),
            },
            data_offsets: LevelOffsets {
                main: *main_data,
                overviews: ovr_data.to_vec(),
            },
        },
    })
}

// ---------------------------------------------------------------------------------------------
// The script's checks on blocks.

const GHOST_PREFIX: &[u8] = b"GDAL_STRUCTURAL_METADATA_SIZE=";
/// `len("GDAL_STRUCTURAL_METADATA_SIZE=%06d bytes\n" % 0)`
const GHOST_PATTERN_LEN: usize = 43;

#[derive(Debug, Clone, Copy, Default)]
struct Ghost {
    block_order_row_major: bool,
    leader_size_as_uint4: bool,
    trailer_last_4_bytes_repeated: bool,
    mask_interleaved_with_imagery: bool,
}

impl Ghost {
    fn any(&self) -> bool {
        self.block_order_row_major
            || self.leader_size_as_uint4
            || self.trailer_last_4_bytes_repeated
            || self.mask_interleaved_with_imagery
    }
}

/// A level (full resolution or overview) and what `GetMaskBand()`/`GetMaskFlags()` say of it.
struct LevelBand<'a> {
    image: &'a Image,
    mask: MaskInfo<'a>,
}

struct FullCheck<'s, 'e> {
    src: &'s mut Source,
    errors: &'e mut Vec<String>,
    ghost: Ghost,
    /// Position of the script's file handle.
    pos: u64,
}

impl FullCheck<'_, '_> {
    /// `gdal.VSIFSeekL(f, at, 0); gdal.VSIFReadL(n, 1, f)`: all `n` bytes or nothing (one
    /// item of `n` bytes). A seek the system refuses (a negative position, or one past what
    /// the file system allows) leaves the handle where it was, and the read happens there; a
    /// position beyond 64-bit integers makes the script raise.
    fn py_read(&mut self, at: i128, n: usize) -> Result<Vec<u8>, String> {
        if at > i128::from(i64::MAX) {
            return Err(format!("cannot seek to {at}"));
        }
        if let Ok(at) = u64::try_from(at)
            && self.src.file.seek(SeekFrom::Start(at)).is_ok()
        {
            self.pos = at;
        }
        let data = self.src.read_at(self.pos, n).map_err(|e| e.to_string())?;
        self.pos += data.len() as u64;
        Ok(if data.len() == n { data } else { Vec::new() })
    }

    /// `full_check_band()` on a level band, with its mask when the ghost area says masks are
    /// interleaved with the imagery.
    fn band(&mut self, name: &str, level: &LevelBand<'_>, interleaved: bool) -> Result<(), String> {
        let band = BandRef::new(level.image, 1);
        let mask = if interleaved {
            match level.mask.band {
                Some(mask) if mask.block_size() != band.block_size() => {
                    self.errors.push(format!(
                        "{name}: mask block size is different from its imagery band"
                    ));
                    None
                }
                // A nodata/all-valid mask: same block size, no block offsets.
                other => Some(other),
            }
        } else {
            None
        };
        self.run(name, band, mask)
    }

    /// `full_check_band()` on a mask band (never with a mask of its own).
    fn band_only(&mut self, name: &str, band: BandRef<'_>) -> Result<(), String> {
        self.run(name, band, None)
    }

    /// `mask`: `None` when the mask is not checked, `Some(None)` for a mask without offsets.
    fn run(
        &mut self,
        name: &str,
        band: BandRef<'_>,
        mask: Option<Option<BandRef<'_>>>,
    ) -> Result<(), String> {
        let g = self.ghost;
        let (bw, bh) = band.block_size();
        let xblocks = u64::from(band.image.width).div_ceil(u64::from(bw));
        let yblocks = u64::from(band.image.height).div_ceil(u64::from(bh));
        let band_end = band.image.striles.known_len().min(band.image.nstrips);
        let mask_end = match mask {
            Some(Some(m)) => m.image.striles.known_len().min(m.image.nstrips),
            _ => 0,
        };
        let mut last_offset: u64 = 0;
        for y in 0..yblocks {
            // Past the stored offsets no block exists: nothing more can be reported.
            let row_start_band = band.block_index(0, y);
            let row_start_mask = match mask {
                Some(Some(m)) => m.block_index(0, y),
                _ => None,
            };
            if row_start_band.is_none_or(|id| id >= band_end)
                && row_start_mask.is_none_or(|id| id >= mask_end)
            {
                break;
            }
            for x in 0..xblocks {
                let (mut offset, bytecount) = band.block(x, y).unwrap_or((0, 0));
                if offset > 0 {
                    if g.block_order_row_major && offset < last_offset {
                        self.errors.push(format!(
                            "{name}: offset of block ({x}, {y}) is smaller than previous block"
                        ));
                    }
                    if g.leader_size_as_uint4 {
                        let leader = self.py_read(i128::from(offset) - 4, 4)?;
                        if leader.len() != 4 {
                            // struct.unpack() raises: the script stops there.
                            return Err(format!(
                                "{name}: cannot read the leader of block ({x}, {y})"
                            ));
                        }
                        let leader_size = u32::from_le_bytes(leader[..4].try_into().expect("4"));
                        if u64::from(leader_size) != bytecount {
                            self.errors.push(format!(
                                "{name}: for block ({x}, {y}), size in leader bytes is \
                                 {leader_size} instead of {bytecount}"
                            ));
                        }
                    }
                    if g.trailer_last_4_bytes_repeated && bytecount >= 4 {
                        let at = i128::from(offset) + i128::from(bytecount) - 4;
                        let last = self.py_read(at, 8)?;
                        let (a, b) = last.split_at(last.len().min(4));
                        if a != b {
                            self.errors.push(format!(
                                "{name}: for block ({x}, {y}), trailer bytes are invalid"
                            ));
                        }
                    }
                }
                if let Some(mask) = mask {
                    let offset_mask = mask.and_then(|m| m.block(x, y)).map_or(0, |(o, _)| o);
                    if offset > 0 && offset_mask > 0 {
                        let expected = u128::from(offset)
                            + u128::from(bytecount)
                            + if g.leader_size_as_uint4 { 4 } else { 0 }
                            + if g.trailer_last_4_bytes_repeated {
                                4
                            } else {
                                0
                            };
                        if u128::from(offset_mask) != expected {
                            self.errors.push(format!(
                                "Mask of {name}: for block ({x}, {y}), offset is {offset_mask}, \
                                 whereas {expected} was expected"
                            ));
                        }
                    } else if offset == 0 && offset_mask > 0 {
                        if g.block_order_row_major && offset_mask < last_offset {
                            self.errors.push(format!(
                                "Mask of {name}: offset of block ({x}, {y}) is smaller than \
                                 previous block"
                            ));
                        }
                        offset = offset_mask;
                    }
                }
                last_offset = offset;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
