//! Cloud Optimized GeoTIFF validation: a pure-Rust port of GDAL's
//! `validate_cloud_optimized_geotiff.py` (as shipped with GDAL 3.6), check for check, with the
//! same error and warning texts in the same order and the same `details`. See
//! `shared/design/geo.md`, section "COG validity".
//!
//! The script asks GDAL about the file's structure; to give the same answers without GDAL this
//! crate reads the TIFF itself (classic and BigTIFF, both byte orders) and reproduces what the
//! script can observe of libtiff 4.5 and GDAL 3.6:
//!
//! * which IFDs are overviews and masks (`GTiffDataset::ScanDirectories`): reduced-resolution
//!   IFDs of the main chain or of the first IFD's SubIFDs, at most 30, with the main image's
//!   band count; the mask IFD of the main image and of each overview;
//! * block sizes and `BLOCK_OFFSET_x_y` / `BLOCK_SIZE_x_y` (a block exists when its byte count
//!   is not zero), with libtiff's reading of the tags (first of repeated tags wins, RowsPerStrip
//!   giving a default tile size, on-demand loading of offsets in 4 KiB pages), its splitting of
//!   a single uncompressed strip into ~8 KiB strips, its estimate of missing or bogus strip
//!   byte counts, and GDAL's one-row blocks for tall single-strip images;
//! * external overviews: without internal overviews, GDAL uses `path.ovr` (or `path.OVR`); and
//!   the script reports an error whenever a readable `path.ovr` exists, since GDAL then lists
//!   it in `GetFileList()` (there found case-insensitively among the directory's files);
//! * mask bands (`GetMaskFlags`/`GetMaskBand`): internal mask, `path.msk` (if it declares
//!   `INTERNAL_MASK_FLAGS_1`), nodata value, alpha band, or all valid;
//! * GDAL's ghost area (`GDAL_STRUCTURAL_METADATA_SIZE=` right after the header) and the full
//!   check's reads exactly as the script does them (all-or-nothing reads, seeks that fail).
//!
//! Where the script raises (GDAL cannot open the file, or the script itself dies on a
//! malformed ghost area or an unreadable block leader), [`validate_cog`] returns an error.
//!
//! Known approximations (none of them matters for files written by GDAL): the compression
//! codecs GDAL can open are those of Debian's GDAL 3.6 build; photometric interpretations that
//! need libtiff's RGBA interface are recognised by their tag value only; an `.ovr` file is only
//! understood if it is a TIFF (GDAL opens any raster format); overviews of overviews
//! (`x.ovr.ovr`), `.msk` files for `.ovr` overviews, `NODATA_VALUES` and color interpretations in GDAL
//! metadata, and `.aux.xml` side-car files are ignored.
//!
//! The modules, from the bytes up: `tiff` reads the structure (header, IFD entries, values)
//! as stored; `libtiff` and `gdal` are the quirks, what libtiff's `TIFFReadDirectory()` and
//! GDAL's GTiff driver make of it; `checks` is the script's checks on GDAL's view; `numbers`
//! reads numbers in text as Python and GDAL do.
//!
//! The agreement is checked by `agrees_with_gdal_validate_script` (`tests/script.rs`), which
//! runs the script (through GDAL's Python bindings) on the fixtures, on files written by GDAL
//! and on crafted files; set `COG_VALIDATE_EXTRA_DIR` to a directory to compare its TIFFs as
//! well.

use std::io;
use std::path::PathBuf;

use serde::Serialize;

mod checks;
mod gdal;
mod libtiff;
mod numbers;
mod tiff;

pub use checks::validate_cog;

/// What the validator found: the script's errors and warnings (same texts, same order) and
/// the structure details it reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CogReport {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub details: CogDetails,
}

impl CogReport {
    /// A COG is valid when there is no error; warnings (e.g. no overviews) do not count.
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    /// What the script prints as "the size of all IFD headers" for a valid file without
    /// warnings: the smallest offset of a first data block. `None` when no level has any data
    /// block (the script then prints the file size).
    pub fn headers_size(&self) -> Option<u64> {
        let d = &self.details.data_offsets;
        let min = std::iter::once(d.main)
            .chain(d.overviews.iter().copied())
            .min()
            .unwrap_or(0);
        (min != 0).then_some(min)
    }
}

/// The script's `details` dictionary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CogDetails {
    /// Offset of the IFD of the full-resolution image and of each overview.
    pub ifd_offsets: LevelOffsets,
    /// Offset of the first existing data block of each level (0 when the level has none).
    pub data_offsets: LevelOffsets,
}

/// One value for the full-resolution image (`main`) and one per overview (`overview_<i>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LevelOffsets {
    pub main: u64,
    pub overviews: Vec<u64>,
}

/// The file could not be validated at all: where the script raises instead of reporting.
/// Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CogValidateError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Not a TIFF file at all (no TIFF or BigTIFF magic bytes).
    #[error("{} is not a TIFF file: {reason}", .path.display())]
    NotTiff { path: PathBuf, reason: String },
    /// A TIFF file GDAL cannot open (truncated, corrupt IFD, unsupported layout), or one on
    /// which the script dies (malformed ghost area, unreadable block leader).
    #[error("{} is not a readable TIFF file: {reason}", .path.display())]
    Malformed { path: PathBuf, reason: String },
}

#[cfg(test)]
mod tests;
