//! Crafted files: small TIFFs written byte by byte (both byte orders, BigTIFF, SubIFDs, strips,
//! bad leaders, data and IFDs out of order), and what the script says of them.

use std::path::{Path, PathBuf};

use crate::*;

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

pub(super) fn write_crafted(dir: &Path) -> Vec<PathBuf> {
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
        let report =
            validate_cog(&tmp.path().join(name), true).unwrap_or_else(|e| panic!("{name}: {e}"));
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
