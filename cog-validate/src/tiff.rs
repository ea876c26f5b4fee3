//! The TIFF structure reader: the header, the IFD entries and their values (classic TIFF and
//! BigTIFF, both byte orders), read as stored, with no interpretation of what they mean
//! (that is `libtiff`'s and `gdal`'s part).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

#[derive(Debug)]
pub(crate) enum OpenError {
    Io(io::Error),
    NotTiff(String),
    Malformed(String),
}

pub(crate) const TAG_NEW_SUBFILE_TYPE: u16 = 254;
pub(crate) const TAG_IMAGE_WIDTH: u16 = 256;
pub(crate) const TAG_IMAGE_LENGTH: u16 = 257;
pub(crate) const TAG_BITS_PER_SAMPLE: u16 = 258;
pub(crate) const TAG_COMPRESSION: u16 = 259;
pub(crate) const TAG_PHOTOMETRIC: u16 = 262;
pub(crate) const TAG_STRIP_OFFSETS: u16 = 273;
pub(crate) const TAG_SAMPLES_PER_PIXEL: u16 = 277;
pub(crate) const TAG_ROWS_PER_STRIP: u16 = 278;
pub(crate) const TAG_STRIP_BYTE_COUNTS: u16 = 279;
pub(crate) const TAG_PLANAR_CONFIG: u16 = 284;
pub(crate) const TAG_TILE_WIDTH: u16 = 322;
pub(crate) const TAG_TILE_LENGTH: u16 = 323;
pub(crate) const TAG_TILE_OFFSETS: u16 = 324;
pub(crate) const TAG_TILE_BYTE_COUNTS: u16 = 325;
pub(crate) const TAG_SUB_IFDS: u16 = 330;
pub(crate) const TAG_EXTRA_SAMPLES: u16 = 338;
pub(crate) const TAG_SAMPLE_FORMAT: u16 = 339;
pub(crate) const TAG_YCBCR_SUBSAMPLING: u16 = 530;
pub(crate) const TAG_GDAL_METADATA: u16 = 42112;
pub(crate) const TAG_GDAL_NODATA: u16 = 42113;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    pub(crate) tag: u16,
    pub(crate) typ: u16,
    pub(crate) count: u64,
    /// The value/offset field as stored (4 bytes used in classic TIFF).
    pub(crate) field: [u8; 8],
}

pub(crate) struct Source {
    pub(crate) file: File,
    pub(crate) len: u64,
}

impl Source {
    pub(crate) fn open(path: &Path) -> io::Result<Source> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Source { file, len })
    }

    /// Up to `n` bytes at `offset`, fewer at the end of the file.
    pub(crate) fn read_at(&mut self, offset: u64, n: usize) -> io::Result<Vec<u8>> {
        if offset >= self.len {
            return Ok(Vec::new());
        }
        let n = (n as u64).min(self.len - offset) as usize;
        self.file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0; n];
        let mut got = 0;
        while got < n {
            match self.file.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
}

pub(crate) struct Tiff<'s> {
    pub(crate) src: &'s mut Source,
    pub(crate) le: bool,
    pub(crate) big: bool,
    pub(crate) first_ifd: u64,
}

impl<'s> Tiff<'s> {
    pub(crate) fn open(src: &'s mut Source) -> Result<Tiff<'s>, OpenError> {
        let head = src.read_at(0, 16).map_err(OpenError::Io)?;
        if head.len() < 4 {
            return Err(OpenError::NotTiff(format!(
                "{} bytes long, too short for a TIFF header",
                head.len()
            )));
        }
        let (le, big) = match &head[..4] {
            [0x49, 0x49, 0x2A, 0x00] => (true, false),
            [0x4D, 0x4D, 0x00, 0x2A] => (false, false),
            [0x49, 0x49, 0x2B, 0x00] => (true, true),
            [0x4D, 0x4D, 0x00, 0x2B] => (false, true),
            magic => {
                return Err(OpenError::NotTiff(format!("bad magic bytes {magic:02x?}")));
            }
        };
        let mut tiff = Tiff {
            src,
            le,
            big,
            first_ifd: 0,
        };
        if big {
            if head.len() < 16 {
                return Err(OpenError::Malformed("truncated BigTIFF header".into()));
            }
            if tiff.u16(&head[4..6]) != 8 {
                return Err(OpenError::Malformed("bad BigTIFF offset size".into()));
            }
            if tiff.u16(&head[6..8]) != 0 {
                return Err(OpenError::Malformed("bad BigTIFF header".into()));
            }
            tiff.first_ifd = tiff.u64(&head[8..16]);
        } else {
            if head.len() < 8 {
                return Err(OpenError::Malformed("truncated TIFF header".into()));
            }
            tiff.first_ifd = u64::from(tiff.u32(&head[4..8]));
        }
        Ok(tiff)
    }

    pub(crate) fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    }

    pub(crate) fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    }

    pub(crate) fn u64(&self, b: &[u8]) -> u64 {
        let a: [u8; 8] = b[..8].try_into().expect("8 bytes");
        if self.le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    }

    /// `TIFFFetchDirectory()`: the entries and the offset of the next IFD.
    pub(crate) fn fetch_directory(&mut self, offset: u64) -> Result<(Vec<Entry>, u64), String> {
        if offset == 0 {
            return Err("no IFD (offset 0)".into());
        }
        let (count_len, entry_len, next_len) = if self.big { (8, 20, 8) } else { (2, 12, 4) };
        let head = self
            .src
            .read_at(offset, count_len)
            .map_err(|e| e.to_string())?;
        if head.len() < count_len {
            return Err("cannot read the directory count".into());
        }
        let n = if self.big {
            self.u64(&head)
        } else {
            u64::from(self.u16(&head))
        };
        if n > 4096 {
            return Err("sanity check on directory count failed".into());
        }
        if n == 0 {
            return Err("empty directory".into());
        }
        let n = n as usize;
        let body = self
            .src
            .read_at(offset + count_len as u64, n * entry_len + next_len)
            .map_err(|e| e.to_string())?;
        if body.len() < n * entry_len {
            return Err("cannot read the directory".into());
        }
        let mut entries = Vec::with_capacity(n);
        for raw in body[..n * entry_len].chunks_exact(entry_len) {
            let mut field = [0u8; 8];
            let count = if self.big {
                field.copy_from_slice(&raw[12..20]);
                self.u64(&raw[4..12])
            } else {
                field[..4].copy_from_slice(&raw[8..12]);
                u64::from(self.u32(&raw[4..8]))
            };
            entries.push(Entry {
                tag: self.u16(&raw[0..2]),
                typ: self.u16(&raw[2..4]),
                count,
                field,
            });
        }
        let rest = &body[n * entry_len..];
        let next = if rest.len() < next_len {
            0
        } else if self.big {
            self.u64(rest)
        } else {
            u64::from(self.u32(rest))
        };
        Ok((entries, next))
    }

    /// The raw bytes of an entry's values; `None` if they cannot be read.
    pub(crate) fn entry_bytes(&mut self, e: &Entry, max_count: u64) -> Option<Vec<u8>> {
        let size = type_size(e.typ)?;
        let count = e.count.min(max_count);
        let inline = if self.big { 8 } else { 4 };
        let total = e.count.checked_mul(size)?;
        if total <= inline {
            return Some(e.field[..(count * size) as usize].to_vec());
        }
        let at = if self.big {
            self.u64(&e.field)
        } else {
            u64::from(self.u32(&e.field))
        };
        let want = usize::try_from(count.checked_mul(size)?).ok()?;
        self.src.read_at(at, want).ok()
    }

    pub(crate) fn decode(&self, typ: u16, b: &[u8]) -> Option<i128> {
        Some(match typ {
            1 | 7 => i128::from(b[0]),
            6 => i128::from(b[0] as i8),
            3 => i128::from(self.u16(b)),
            8 => i128::from(self.u16(b) as i16),
            4 | 13 => i128::from(self.u32(b)),
            9 => i128::from(self.u32(b) as i32),
            16 | 18 => i128::from(self.u64(b)),
            17 => i128::from(self.u64(b) as i64),
            _ => return None,
        })
    }

    /// All values of an integer entry (libtiff's `TIFFReadDirEntry*Array`).
    pub(crate) fn entry_ints(&mut self, e: &Entry) -> Option<Vec<i128>> {
        if !matches!(e.typ, 1 | 3 | 4 | 6 | 8 | 9 | 13 | 16 | 17 | 18) {
            return None;
        }
        let size = type_size(e.typ)? as usize;
        let bytes = self.entry_bytes(e, e.count)?;
        if (bytes.len() as u64) < e.count * size as u64 {
            return None;
        }
        bytes
            .chunks_exact(size)
            .map(|c| self.decode(e.typ, c))
            .collect()
    }

    /// A single unsigned value (`TIFFReadDirEntryLong` / `Short`): count 1, in range.
    pub(crate) fn scalar(&mut self, e: &Entry, max: u64) -> Option<u64> {
        if e.count != 1 {
            return None;
        }
        let v = self.entry_ints(e)?.pop()?;
        (0..=i128::from(max)).contains(&v).then_some(v as u64)
    }

    /// One value per sample, all equal (`TIFFReadDirEntryPersampleShort`), or a single value.
    pub(crate) fn per_sample_short(&mut self, e: &Entry, spp: u16) -> Option<u16> {
        if e.count == 1 {
            return self.scalar(e, 0xFFFF).map(|v| v as u16);
        }
        if e.count < u64::from(spp) {
            return None;
        }
        let values = self.entry_ints(e)?;
        let first = *values.first()?;
        if values[..usize::from(spp)].iter().any(|&v| v != first) || !(0..=0xFFFF).contains(&first)
        {
            return None;
        }
        Some(first as u16)
    }
}

pub(crate) fn type_size(typ: u16) -> Option<u64> {
    Some(match typ {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}
