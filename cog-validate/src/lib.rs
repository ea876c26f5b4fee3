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
//! The agreement is checked by `agrees_with_gdal_validate_script` below, which runs the script
//! (through GDAL's Python bindings) on the fixtures, on files written by GDAL and on crafted
//! files; set `COG_VALIDATE_EXTRA_DIR` to a directory to compare its TIFFs as well.

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
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    // -----------------------------------------------------------------------------------------
    // Fixtures.

    /// The GeoTIFF fixtures: `shared/fixtures/geotiff` next to the workspace
    /// (`$TESSERA_SHARED_DIR/fixtures/geotiff` when that is set), else the repository's copy in
    /// `tests/fixtures/geotiff`. Fails, never skips, when neither exists.
    fn fixtures_dir() -> PathBuf {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let shared = match std::env::var_os("TESSERA_SHARED_DIR") {
            Some(dir) => PathBuf::from(dir),
            None => workspace.join("../shared"),
        };
        let candidates = [
            shared.join("fixtures/geotiff"),
            workspace.join("tests/fixtures/geotiff"),
        ];
        candidates
            .iter()
            .find(|dir| dir.join("invalid-cog").is_dir())
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "GeoTIFF fixtures not found: looked for {} and {} (set TESSERA_SHARED_DIR \
                     to the `shared` directory that holds fixtures/geotiff)",
                    candidates[0].display(),
                    candidates[1].display()
                )
            })
    }

    /// The fixtures and what `validate_cloud_optimized_geotiff.py --full-check=yes` (GDAL
    /// 3.6.2) says of them: valid, number of errors, number of warnings.
    const FIXTURES: &[(&str, bool, usize, usize)] = &[
        ("RGB.byte.tif", false, 2, 1),
        ("RGBA.uint16.tif", true, 0, 1),
        ("byte.tif", false, 2, 0),
        ("cogeo.tif", true, 0, 0),
        ("dem-hills.tiff", false, 2, 0),
        ("float_nan.tif", false, 2, 0),
        ("image_nodata.tif", true, 0, 0),
        ("labels.tif", true, 0, 0),
        ("slc_no_georef.tif", false, 1, 1),
        ("world.byte.tif", true, 0, 1),
        ("invalid-cog/image_external.tif", false, 3, 0),
        (
            "invalid-cog/image_known_incompatible_ghost_headers.tif",
            false,
            1,
            0,
        ),
        ("invalid-cog/image_sorted.tif", false, 5, 0),
    ];

    #[test]
    fn fixture_verdicts_match_the_script() {
        let dir = fixtures_dir();
        for &(name, valid, n_errors, n_warnings) in FIXTURES {
            let report =
                validate_cog(&dir.join(name), true).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(report.is_valid(), valid, "{name}: {report:#?}");
            assert_eq!(report.errors.len(), n_errors, "{name}: {report:#?}");
            assert_eq!(report.warnings.len(), n_warnings, "{name}: {report:#?}");
        }
    }

    #[test]
    fn fixture_messages_and_details() {
        let dir = fixtures_dir();
        let cogeo = validate_cog(&dir.join("cogeo.tif"), true).unwrap();
        assert_eq!(
            cogeo.details,
            CogDetails {
                ifd_offsets: LevelOffsets {
                    main: 8,
                    overviews: vec![1104, 1504, 1904, 2304, 2704, 3104],
                },
                data_offsets: LevelOffsets {
                    main: 131731,
                    overviews: vec![78783, 45387, 26312, 15344, 8738, 4548],
                },
            }
        );
        assert_eq!(cogeo.headers_size(), Some(4548));

        let external = validate_cog(&dir.join("invalid-cog/image_external.tif"), true).unwrap();
        assert_eq!(
            external.errors[0],
            "Overviews found in external .ovr file. They should be internal"
        );
        // The overviews are those of the .ovr file.
        assert_eq!(external.details.ifd_offsets.overviews, vec![8, 326, 548]);

        let ghost = dir.join("invalid-cog/image_known_incompatible_ghost_headers.tif");
        let ghost = validate_cog(&ghost, true).unwrap();
        assert_eq!(
            ghost.errors,
            vec!["KNOWN_INCOMPATIBLE_EDITION=YES is declared in the file"]
        );

        let sorted = validate_cog(&dir.join("invalid-cog/image_sorted.tif"), false).unwrap();
        assert_eq!(
            sorted.errors[..2],
            [
                "The offset of the main IFD should be 8. It is 642088 instead",
                "Overview of index 1 has larger dimension than overview of index 0",
            ]
        );

        let slc = validate_cog(&dir.join("slc_no_georef.tif"), true).unwrap();
        assert_eq!(
            slc.errors,
            vec!["The file is greater than 512xH or Wx512, but is not tiled"]
        );
        assert_eq!(
            slc.warnings,
            vec![
                "The file is greater than 512xH or Wx512, it is recommended to include internal \
                 overviews"
            ]
        );
    }

    // -----------------------------------------------------------------------------------------
    // Crafted files.

    /// One image of a crafted TIFF.
    #[derive(Clone)]
    struct Img {
        w: u32,
        h: u32,
        /// Tile size; strips of `rps` rows when `None`.
        tile: Option<(u32, u32)>,
        rps: u32,
        subtype: Option<u32>,
        /// Bytes per block.
        block_len: usize,
    }

    impl Img {
        fn tiled(w: u32, h: u32, subtype: Option<u32>) -> Img {
            Img {
                w,
                h,
                tile: Some((256, 256)),
                rps: 0,
                subtype,
                block_len: 40,
            }
        }

        fn blocks(&self) -> usize {
            let (bw, bh) = self.tile.unwrap_or((self.w, self.rps));
            (self.w.div_ceil(bw) * self.h.div_ceil(bh)) as usize
        }
    }

    /// How a crafted TIFF is laid out.
    #[derive(Clone)]
    struct Layout {
        le: bool,
        big: bool,
        /// GDAL ghost area keys (e.g. "BLOCK_ORDER=ROW_MAJOR").
        ghost: Option<Vec<&'static str>>,
        /// Write a 4-byte size before each block and repeat its last 4 bytes after it.
        leaders: bool,
        /// Images chained from the header, in order.
        chain: Vec<usize>,
        /// SubIFDs of the first image of the chain.
        subifds: Vec<usize>,
        /// Order in which the images' blocks are written (after all IFDs).
        data_order: Vec<usize>,
        /// Corrupt the leader of the first block written.
        bad_leader: bool,
    }

    impl Layout {
        /// A COG layout: IFDs first, smallest overview's data first.
        fn cog(n: usize) -> Layout {
            Layout {
                le: true,
                big: false,
                ghost: Some(vec![
                    "LAYOUT=IFDS_BEFORE_DATA",
                    "BLOCK_ORDER=ROW_MAJOR",
                    "BLOCK_LEADER=SIZE_AS_UINT4",
                    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED",
                    "KNOWN_INCOMPATIBLE_EDITION=NO",
                ]),
                leaders: true,
                chain: (0..n).collect(),
                subifds: Vec::new(),
                data_order: (0..n).rev().collect(),
                bad_leader: false,
            }
        }
    }

    /// Write a TIFF with the given images and layout.
    fn build(images: &[Img], layout: &Layout) -> Vec<u8> {
        let big = layout.big;
        let put16 = |v: u16| {
            if layout.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let put32 = |v: u32| {
            if layout.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };
        let put64 = |v: u64| {
            if layout.le {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            }
        };

        let mut out = Vec::new();
        out.extend_from_slice(if layout.le { b"II" } else { b"MM" });
        if big {
            out.extend_from_slice(&put16(43));
            out.extend_from_slice(&put16(8));
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&[0; 8]);
        } else {
            out.extend_from_slice(&put16(42));
            out.extend_from_slice(&[0; 4]);
        }
        if let Some(keys) = &layout.ghost {
            let body: String = keys.iter().map(|k| format!("{k}\n")).collect();
            out.extend_from_slice(
                format!(
                    "GDAL_STRUCTURAL_METADATA_SIZE={:06} bytes\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            if out.len() % 2 == 1 {
                out.push(0);
            }
        }

        // Tags of each image: (tag, type, values). Offsets are patched in later.
        let off_type: u16 = if big { 16 } else { 4 };
        let tags = |i: usize, offsets: &[u64], counts: &[u64], subifds: &[u64]| {
            let im = &images[i];
            let mut t: Vec<(u16, u16, Vec<u64>)> = Vec::new();
            if let Some(s) = im.subtype {
                t.push((254, 4, vec![u64::from(s)]));
            }
            t.push((256, 4, vec![u64::from(im.w)]));
            t.push((257, 4, vec![u64::from(im.h)]));
            t.push((258, 3, vec![8]));
            t.push((259, 3, vec![1]));
            t.push((262, 3, vec![1]));
            match im.tile {
                Some((tw, th)) => {
                    t.push((322, 3, vec![u64::from(tw)]));
                    t.push((323, 3, vec![u64::from(th)]));
                    t.push((324, off_type, offsets.to_vec()));
                    t.push((325, 4, counts.to_vec()));
                }
                None => {
                    t.push((273, off_type, offsets.to_vec()));
                    t.push((278, 4, vec![u64::from(im.rps)]));
                    t.push((279, 4, counts.to_vec()));
                }
            }
            if !subifds.is_empty() {
                t.push((330, if big { 18 } else { 13 }, subifds.to_vec()));
            }
            t.sort_by_key(|x| x.0);
            t
        };
        let size_of = |typ: u16| match typ {
            3 => 2,
            4 | 13 => 4,
            _ => 8,
        };
        let ifd_len = |t: &[(u16, u16, Vec<u64>)]| {
            let (head, entry, inline) = if big { (8 + 8, 20, 8) } else { (2 + 4, 12, 4) };
            let extra: usize = t
                .iter()
                .map(|(_, typ, v)| size_of(*typ) * v.len())
                .filter(|&n| n > inline)
                .sum();
            head + entry * t.len() + extra
        };

        // Place IFDs, then data.
        let n_sub = |i: usize| {
            if layout.chain.first() == Some(&i) {
                layout.subifds.len()
            } else {
                0
            }
        };
        let zeros = |i: usize| vec![0u64; images[i].blocks()];
        let mut ifd_pos = vec![0u64; images.len()];
        let mut pos = out.len() as u64;
        for (i, at) in ifd_pos.iter_mut().enumerate() {
            *at = pos;
            pos += ifd_len(&tags(i, &zeros(i), &zeros(i), &vec![0; n_sub(i)])) as u64;
        }
        let mut block_pos: Vec<Vec<u64>> = images.iter().map(|im| vec![0; im.blocks()]).collect();
        let wrap = if layout.leaders { 8 } else { 0 };
        for &i in &layout.data_order {
            for at in block_pos[i].iter_mut() {
                *at = pos + if layout.leaders { 4 } else { 0 };
                pos += (images[i].block_len + wrap) as u64;
            }
        }
        let mut buf = out;
        buf.resize(pos as usize, 0);

        let first = layout.chain.first().map_or(0, |&i| ifd_pos[i]);
        if big {
            buf[8..16].copy_from_slice(&put64(first));
        } else {
            buf[4..8].copy_from_slice(&put32(first as u32));
        }
        for i in 0..images.len() {
            let counts = vec![images[i].block_len as u64; images[i].blocks()];
            let subs: Vec<u64> = if n_sub(i) > 0 {
                layout.subifds.iter().map(|&s| ifd_pos[s]).collect()
            } else {
                Vec::new()
            };
            let t = tags(i, &block_pos[i], &counts, &subs);
            let mut p = ifd_pos[i] as usize;
            let (entry, inline) = if big { (20, 8) } else { (12, 4) };
            let mut extra = p + if big { 8 } else { 2 } + entry * t.len() + if big { 8 } else { 4 };
            if big {
                buf[p..p + 8].copy_from_slice(&put64(t.len() as u64));
                p += 8;
            } else {
                buf[p..p + 2].copy_from_slice(&put16(t.len() as u16));
                p += 2;
            }
            for (tag, typ, values) in &t {
                let mut data = Vec::new();
                for &v in values {
                    match size_of(*typ) {
                        2 => data.extend_from_slice(&put16(v as u16)),
                        4 => data.extend_from_slice(&put32(v as u32)),
                        _ => data.extend_from_slice(&put64(v)),
                    }
                }
                buf[p..p + 2].copy_from_slice(&put16(*tag));
                buf[p + 2..p + 4].copy_from_slice(&put16(*typ));
                let field = if big {
                    buf[p + 4..p + 12].copy_from_slice(&put64(values.len() as u64));
                    p + 12
                } else {
                    buf[p + 4..p + 8].copy_from_slice(&put32(values.len() as u32));
                    p + 8
                };
                if data.len() <= inline {
                    buf[field..field + data.len()].copy_from_slice(&data);
                } else {
                    buf[extra..extra + data.len()].copy_from_slice(&data);
                    if big {
                        buf[field..field + 8].copy_from_slice(&put64(extra as u64));
                    } else {
                        buf[field..field + 4].copy_from_slice(&put32(extra as u32));
                    }
                    extra += data.len();
                }
                p += entry;
            }
            let chain_at = layout.chain.iter().position(|&c| c == i);
            let next = chain_at
                .and_then(|k| layout.chain.get(k + 1))
                .map_or(0, |&n| ifd_pos[n]);
            if big {
                buf[p..p + 8].copy_from_slice(&put64(next));
            } else {
                buf[p..p + 4].copy_from_slice(&put32(next as u32));
            }
        }
        // Block contents, leaders and trailers.
        let mut first_block = true;
        for &i in &layout.data_order {
            for (b, &at) in block_pos[i].iter().enumerate() {
                let at = at as usize;
                let len = images[i].block_len;
                for k in 0..len {
                    buf[at + k] = (i * 31 + b * 7 + k) as u8;
                }
                if layout.leaders {
                    let mut leader = (len as u32).to_le_bytes();
                    if layout.bad_leader && first_block {
                        leader = (len as u32 + 1).to_le_bytes();
                    }
                    buf[at - 4..at].copy_from_slice(&leader);
                    let last: [u8; 4] = buf[at + len - 4..at + len].try_into().unwrap();
                    buf[at + len..at + len + 4].copy_from_slice(&last);
                }
                first_block = false;
            }
        }
        buf
    }

    /// Crafted cases: name, images, layout.
    fn crafted_cases() -> Vec<(&'static str, Vec<Img>, Layout)> {
        let pyramid = vec![
            Img::tiled(1024, 768, None),
            Img::tiled(512, 384, Some(1)),
            Img::tiled(256, 192, Some(1)),
        ];
        let mut not_reduced = pyramid.clone();
        not_reduced[2].subtype = None;
        let mut wide = vec![Img::tiled(2048, 300, None), Img::tiled(1024, 150, Some(1))];
        wide[0].tile = Some((2048, 16));
        wide[1].tile = Some((1024, 16));
        let strips = vec![Img {
            w: 1100,
            h: 600,
            tile: None,
            rps: 8,
            subtype: None,
            block_len: 100,
        }];
        vec![
            ("cog_le.tif", pyramid.clone(), Layout::cog(3)),
            (
                "cog_be.tif",
                pyramid.clone(),
                Layout {
                    le: false,
                    ..Layout::cog(3)
                },
            ),
            (
                "cog_big_le.tif",
                pyramid.clone(),
                Layout {
                    big: true,
                    ..Layout::cog(3)
                },
            ),
            (
                "cog_big_be.tif",
                pyramid.clone(),
                Layout {
                    big: true,
                    le: false,
                    ..Layout::cog(3)
                },
            ),
            (
                "cog_bad_leader.tif",
                pyramid.clone(),
                Layout {
                    bad_leader: true,
                    ..Layout::cog(3)
                },
            ),
            (
                "no_ghost_no_leaders.tif",
                pyramid.clone(),
                Layout {
                    ghost: None,
                    leaders: false,
                    ..Layout::cog(3)
                },
            ),
            (
                "main_data_first.tif",
                pyramid.clone(),
                Layout {
                    data_order: vec![0, 1, 2],
                    ..Layout::cog(3)
                },
            ),
            // The main IFD written after the first overview's.
            (
                "overview_ifd_before_main.tif",
                vec![pyramid[1].clone(), pyramid[0].clone(), pyramid[2].clone()],
                Layout {
                    chain: vec![1, 0, 2],
                    data_order: vec![2, 0, 1],
                    ..Layout::cog(3)
                },
            ),
            (
                "subifd_overviews.tif",
                pyramid.clone(),
                Layout {
                    chain: vec![0],
                    subifds: vec![1, 2],
                    ..Layout::cog(3)
                },
            ),
            (
                "ghost_without_flags.tif",
                pyramid.clone(),
                Layout {
                    ghost: Some(vec!["LAYOUT=IFDS_BEFORE_DATA"]),
                    leaders: false,
                    ..Layout::cog(3)
                },
            ),
            ("page_not_overview.tif", not_reduced, Layout::cog(3)),
            ("tile_as_wide_as_image.tif", wide, Layout::cog(2)),
            (
                "strips_wide.tif",
                strips,
                Layout {
                    ghost: None,
                    leaders: false,
                    ..Layout::cog(1)
                },
            ),
        ]
    }

    fn write_crafted(dir: &Path) -> Vec<PathBuf> {
        crafted_cases()
            .into_iter()
            .map(|(name, images, layout)| {
                let path = dir.join(name);
                std::fs::write(&path, build(&images, &layout)).unwrap();
                path
            })
            .collect()
    }

    /// The crafted cases and what the script says of them (errors, exactly).
    #[test]
    fn crafted_files() {
        let tmp = tempfile::tempdir().unwrap();
        write_crafted(tmp.path());
        let check = |name: &str, errors: &[&str]| {
            let report = validate_cog(&tmp.path().join(name), true)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(report.errors, errors, "{name}: {report:#?}");
            report
        };
        for name in [
            "cog_le.tif",
            "cog_be.tif",
            "cog_big_le.tif",
            "cog_big_be.tif",
        ] {
            let r = check(name, &[]);
            assert!(r.warnings.is_empty(), "{name}");
            assert_eq!(r.details.ifd_offsets.overviews.len(), 2, "{name}");
        }
        check(
            "cog_bad_leader.tif",
            &["Overview 1: for block (0, 0), size in leader bytes is 41 instead of 40"],
        );
        check("no_ghost_no_leaders.tif", &[]);
        check(
            "main_data_first.tif",
            &[
                "The offset of the first block of overview of index 0 should be after the one of \
                 the overview of index 1",
                "The offset of the first block of the main resolution image should be after the \
                 one of the overview of index 1",
            ],
        );
        check(
            "overview_ifd_before_main.tif",
            &[
                "The offset of the main IFD should be 190. It is 348 instead",
                "The offset of the IFD for overview of index 0 is 190, whereas it should be \
                 greater than the one of the main image, which is at byte 348",
            ],
        );
        let sub = check("subifd_overviews.tif", &[]);
        assert_eq!(sub.details.ifd_offsets.overviews.len(), 2);
        check("ghost_without_flags.tif", &[]);
        let page = check("page_not_overview.tif", &[]);
        assert_eq!(page.details.ifd_offsets.overviews.len(), 1);
        check(
            "tile_as_wide_as_image.tif",
            &["The file is greater than 512xH or Wx512, but is not tiled"],
        );
        check(
            "strips_wide.tif",
            &["The file is greater than 512xH or Wx512, but is not tiled"],
        );
    }

    #[test]
    fn error_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = tmp.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };

        let missing = tmp.path().join("missing.tif");
        let err = validate_cog(&missing, true).unwrap_err();
        assert!(matches!(err, CogValidateError::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing.tif"), "{err}");

        for (name, bytes) in [
            ("empty.tif", &b""[..]),
            ("png.tif", &b"\x89PNG\r\n\x1a\n0000"[..]),
            ("text.tif", &b"hello world, not a tiff"[..]),
            ("mixed_order.tif", &b"IM\x2a\x00\x08\x00\x00\x00"[..]),
        ] {
            let path = write(name, bytes);
            let err = validate_cog(&path, true).unwrap_err();
            assert!(
                matches!(err, CogValidateError::NotTiff { .. }),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }

        let good = build(&[Img::tiled(300, 200, None)], &Layout::cog(1));
        assert!(
            validate_cog(&write("good.tif", &good), true)
                .unwrap()
                .is_valid()
        );
        // Cut inside the IFD, inside the header, and just after the header.
        for (name, len) in [
            ("cut_ifd.tif", 120),
            ("cut_header.tif", 6),
            ("cut_after_header.tif", 8),
        ] {
            let path = write(name, &good[..len]);
            let err = validate_cog(&path, true).unwrap_err();
            assert!(
                matches!(err, CogValidateError::Malformed { .. }),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
        // Header pointing past the end of the file.
        let mut far = good.clone();
        far[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
        let err = validate_cog(&write("ifd_past_end.tif", &far), true).unwrap_err();
        assert!(matches!(err, CogValidateError::Malformed { .. }), "{err}");
        // A BigTIFF header with a bad offset size.
        let err = validate_cog(
            &write(
                "bad_bigtiff.tif",
                b"II\x2b\x00\x04\x00\x00\x00\x10\0\0\0\0\0\0\0",
            ),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, CogValidateError::Malformed { .. }), "{err}");
        // A ghost area whose size is not a number (the script dies on it).
        let mut ghost = build(&[Img::tiled(300, 200, None)], &Layout::cog(1));
        ghost[8 + 30..8 + 36].copy_from_slice(b"12x456");
        let err = validate_cog(&write("bad_ghost.tif", &ghost), true).unwrap_err();
        assert!(matches!(err, CogValidateError::Malformed { .. }), "{err}");
    }

    // -----------------------------------------------------------------------------------------
    // Dev check: agreement with the reference script, run by GDAL's own Python bindings.

    const PYTHON: &str = "/usr/bin/python3";

    /// Prints one JSON line per file: warnings, errors, details, or the exception raised.
    const ORACLE: &str = r#"
import json, sys
from osgeo import gdal
from osgeo_utils.samples import validate_cloud_optimized_geotiff as v
for fn in sys.argv[1:]:
    try:
        w, e, d = v.validate(fn, full_check=True)
        out = {"file": fn, "warnings": w, "errors": e, "details": d}
    except Exception as ex:
        out = {"file": fn, "exception": "%s: %s" % (type(ex).__name__, ex)}
    print(json.dumps(out), flush=True)
"#;

    /// Extra cases written with GDAL itself: COGs with and without overviews, BigTIFF,
    /// masks, alpha, JPEG, striped and tiled GeoTIFFs, overviews added afterwards, side-car
    /// .ovr and .msk files.
    const GENERATOR: &str = r#"
import os, shutil, sys
from osgeo import gdal
gdal.UseExceptions()
src, out = sys.argv[1], sys.argv[2]
F = lambda n: os.path.join(src, n)
O = lambda n: os.path.join(out, n)
def tr(dst, source, **kw):
    gdal.Translate(O(dst), source, **kw)
def addo(name, levels, ro=False):
    ds = gdal.Open(O(name), gdal.GA_ReadOnly if ro else gdal.GA_Update)
    ds.BuildOverviews("NEAREST", levels)
    ds = None
rgb, rgba = F("RGB.byte.tif"), F("RGBA.uint16.tif")
tr("cog_ovr.tif", rgb, format="COG")
tr("cog_noovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
tr("cog_small.tif", F("byte.tif"), format="COG")
tr("cog_bigtiff.tif", rgb, format="COG", creationOptions=["BIGTIFF=YES"])
tr("cog_bigtiff_deflate.tif", rgb, format="COG", creationOptions=["BIGTIFF=YES", "COMPRESS=DEFLATE"])
tr("cog_jpeg.tif", rgb, format="COG", creationOptions=["COMPRESS=JPEG"])
tr("cog_alpha.tif", rgba, format="COG")
tr("cog_alpha_byte.tif", rgba, format="COG", outputType=gdal.GDT_Byte, scaleParams=[[]], width=1400, height=900)
tr("cog_sparse.tif", F("byte.tif"), format="COG", creationOptions=["SPARSE_OK=TRUE"], width=1200, height=1200, scaleParams=[[0, 255, 0, 0]])
tr("striped.tif", rgb, format="GTiff")
tr("striped_wide.tif", rgb, format="GTiff", width=1600, height=700)
tr("tiled_addo.tif", rgb, format="GTiff", creationOptions=["TILED=YES"])
addo("tiled_addo.tif", [2, 4, 8])
tr("tiled_fullwidth.tif", F("byte.tif"), format="GTiff", creationOptions=["TILED=YES", "BLOCKXSIZE=1536", "BLOCKYSIZE=16"], width=1536, height=600)
tr("split_deflate.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=2500", "COMPRESS=DEFLATE"], width=300, height=2500)
tr("onestrip_raw.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=2500"], width=300, height=2500)
tr("onestrip_small.tif", F("byte.tif"), format="GTiff", creationOptions=["BLOCKYSIZE=100"], width=300, height=100)
for name, opts in [("gtiff_cog_bigendian.tif", ["ENDIANNESS=BIG"]),
                   ("gtiff_cog_bigendian_bigtiff.tif", ["ENDIANNESS=BIG", "BIGTIFF=YES"]),
                   ("gtiff_cog_separate.tif", ["PHOTOMETRIC=MINISBLACK", "INTERLEAVE=BAND"])]:
    tr(name, O("tiled_addo.tif"), format="GTiff", creationOptions=["TILED=YES", "COPY_SRC_OVERVIEWS=YES"] + opts)
tr("extmask_src.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4)
gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", "YES")
tr("intmask_src.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4)
tr("intmask_addo.tif", rgba, format="GTiff", bandList=[1, 2, 3], maskBand=4, creationOptions=["TILED=YES"], width=1400, height=900)
addo("intmask_addo.tif", [2, 4])
tr("cog_mask.tif", O("intmask_src.tif"), format="COG")
tr("cog_mask_big.tif", O("intmask_src.tif"), format="COG", width=1400, height=900)
tr("cog_mask_nodata.tif", O("intmask_src.tif"), format="COG", noData=0, width=1400, height=900)
gdal.SetConfigOption("GDAL_TIFF_INTERNAL_MASK", None)
tr("cog_with_stray_ovr.tif", rgb, format="COG")
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_with_stray_ovr.tif.ovr"))
tr("cog_noovr_with_OVR.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_noovr_with_OVR.tif.OVR"))
tr("cog_noovr_with_Ovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_noovr_with_Ovr.tif.Ovr"))
tr("cog_ovr_with_Ovr.tif", rgb, format="COG")
shutil.copy(F("invalid-cog/image_external.tif.ovr"), O("cog_ovr_with_Ovr.tif.Ovr"))
tr("cog_with_bad_ovr.tif", rgb, format="COG", creationOptions=["OVERVIEWS=NONE"])
open(O("cog_with_bad_ovr.tif.ovr"), "w").write("not an overview")
tr("striped_ext.tif", rgb, format="GTiff")
addo("striped_ext.tif", [2, 4], ro=True)
tr("cog_with_msk.tif", rgb, format="COG")
tr("cog_with_MSK.tif", rgb, format="COG")
shutil.copy(O("extmask_src.tif.msk"), O("cog_with_MSK.tif.MSK"))
tr("cog_upper_mask.tif", F("RGBA.uint16.tif"), format="COG", bandList=[1, 2, 3])
shutil.copy(O("extmask_src.tif.msk"), O("cog_upper_mask.tif.MSK"))
tr("cog_with_plain_Msk.tif", rgb, format="COG")
tr("cog_with_plain_Msk.tif.Msk", O("cog_ovr.tif"), format="GTiff", bandList=[1])
tr("cog_with_msk.tif.msk", O("cog_ovr.tif"), format="GTiff", bandList=[1])
ds = gdal.Open(O("cog_ovr.tif"))
gdal.GetDriverByName("GTiff").CreateCopy(O("cog_edited.tif"), ds)
ds = None
tr("cog_to_edit.tif", rgb, format="COG", creationOptions=["COMPRESS=DEFLATE"])
ds = gdal.Open(O("cog_to_edit.tif"), gdal.GA_Update)
ds.GetRasterBand(1).Fill(7)
ds = None
"#;

    fn python_has_osgeo() -> Result<(), String> {
        let out = Command::new(PYTHON)
            .args([
                "-c",
                "from osgeo import gdal; from osgeo_utils.samples import validate_cloud_optimized_geotiff",
            ])
            .output()
            .map_err(|e| format!("cannot run {PYTHON}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Files to compare: fixtures, GDAL-generated cases, crafted cases, and every TIFF of
    /// `$COG_VALIDATE_EXTRA_DIR` when set.
    fn comparison_files(tmp: &Path) -> Vec<PathBuf> {
        let fixtures = fixtures_dir();
        let tiffs = |dir: &Path| {
            let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    let name = p
                        .file_name()
                        .unwrap()
                        .to_string_lossy()
                        .to_ascii_lowercase();
                    p.is_file() && (name.ends_with(".tif") || name.ends_with(".tiff"))
                })
                .collect();
            v.sort();
            v
        };
        let mut files = tiffs(&fixtures);
        files.extend(tiffs(&fixtures.join("invalid-cog")));

        let generated = tmp.join("generated");
        std::fs::create_dir(&generated).unwrap();
        let out = Command::new(PYTHON)
            .arg("-c")
            .arg(GENERATOR)
            .arg(&fixtures)
            .arg(&generated)
            .output()
            .expect("run the generator");
        assert!(
            out.status.success(),
            "generating the extra cases with GDAL failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        files.extend(tiffs(&generated));

        let crafted = tmp.join("crafted");
        std::fs::create_dir(&crafted).unwrap();
        files.extend(write_crafted(&crafted));

        if let Some(extra) = std::env::var_os("COG_VALIDATE_EXTRA_DIR") {
            files.extend(tiffs(Path::new(&extra)));
        }
        files
    }

    /// Where two reports differ, briefly.
    fn describe_difference(script: &CogReport, ours: &CogReport) -> String {
        let mut out = Vec::new();
        if script.errors != ours.errors {
            let at = script
                .errors
                .iter()
                .zip(&ours.errors)
                .position(|(a, b)| a != b)
                .unwrap_or(script.errors.len().min(ours.errors.len()));
            out.push(format!(
                "errors differ at #{at} ({} vs {} errors):\n   script: {:?}\n   ours:   {:?}",
                script.errors.len(),
                ours.errors.len(),
                script.errors.get(at),
                ours.errors.get(at)
            ));
        }
        if script.warnings != ours.warnings {
            out.push(format!(
                "warnings: script {:?}, ours {:?}",
                script.warnings, ours.warnings
            ));
        }
        if script.details != ours.details {
            out.push(format!(
                "details: script {:?}, ours {:?}",
                script.details, ours.details
            ));
        }
        out.join("\n  ")
    }

    #[test]
    fn agrees_with_gdal_validate_script() {
        if let Err(e) = python_has_osgeo() {
            panic!(
                "{PYTHON} cannot import GDAL's Python bindings and the COG validation script; \
                 install python3-gdal (apt-get install python3-gdal) to run this check:\n{e}"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let files = comparison_files(tmp.path());
        let out = Command::new(PYTHON)
            .arg("-c")
            .arg(ORACLE)
            .args(&files)
            .output()
            .expect("run the validation script");
        assert!(
            out.status.success(),
            "the validation script failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let answers: Vec<serde_json::Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(answers.len(), files.len(), "one answer per file:\n{stdout}");

        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect()
        };
        let levels = |v: &serde_json::Value| -> LevelOffsets {
            let map = v.as_object().unwrap();
            let overviews = (0..map.len() - 1)
                .map(|i| map[&format!("overview_{i}")].as_u64().unwrap())
                .collect();
            LevelOffsets {
                main: map["main"].as_u64().unwrap(),
                overviews,
            }
        };
        let mut mismatches = Vec::new();
        let mut table = Vec::new();
        for (file, answer) in files.iter().zip(&answers) {
            let ours = validate_cog(file, true);
            let name = file.display();
            if let Some(exception) = answer.get("exception") {
                table.push(format!(
                    "{name}: script raised, ours: {:?}",
                    ours.as_ref().err().map(ToString::to_string)
                ));
                if ours.is_ok() {
                    mismatches.push(format!(
                        "{name}: the script raised {exception}, we reported {ours:?}"
                    ));
                }
                continue;
            }
            let expected = CogReport {
                errors: strings(&answer["errors"]),
                warnings: strings(&answer["warnings"]),
                details: CogDetails {
                    ifd_offsets: levels(&answer["details"]["ifd_offsets"]),
                    data_offsets: levels(&answer["details"]["data_offsets"]),
                },
            };
            table.push(format!(
                "{name}: script {}, ours {}",
                if expected.is_valid() {
                    "valid"
                } else {
                    "invalid"
                },
                match &ours {
                    Ok(r) if r.is_valid() => "valid".to_string(),
                    Ok(_) => "invalid".to_string(),
                    Err(e) => format!("error ({e})"),
                }
            ));
            match ours {
                Ok(ours) if ours == expected => {}
                Ok(ours) => {
                    mismatches.push(format!("{name}: {}", describe_difference(&expected, &ours)))
                }
                Err(e) => mismatches.push(format!("{name}: script {expected:#?}, we failed: {e}")),
            }
        }
        println!("{}", table.join("\n"));
        assert!(
            mismatches.is_empty(),
            "{} of {} files disagree with the script:\n{}",
            mismatches.len(),
            files.len(),
            mismatches.join("\n")
        );
    }
}
