//! The golden corpus: the shared rasters, and rasters derived from them with GDAL's own tools
//! at test time (deterministic commands, into the test's container). What each one is and
//! the commands are listed in `tests/fixtures/golden/README.md`.

use std::path::{Path, PathBuf};

use services::testing::gdal_tool;

use crate::support::fixture;

/// How a raster of the corpus is made.
pub enum Make {
    /// A shared fixture, copied as it is.
    Shared(&'static str),
    /// Derived with GDAL's tools: writes the raster to the given path.
    Gdal(fn(&Path)),
}

/// What gdal2tiles tiles for the reference: the raster itself, or (where gdal2tiles refuses
/// it) the VRT its error message suggests.
#[derive(Clone, Copy)]
pub enum Reference {
    Source,
    /// "Please convert this file to RGB/RGBA": `gdal_translate -of vrt -expand rgba`.
    ExpandRgba,
    /// "Please convert this file to 8-bit": `gdal_translate -of VRT -ot Byte -scale`.
    ScaleToByte,
}

pub struct Raster {
    /// Its blob name in the test container.
    pub name: &'static str,
    pub make: Make,
    pub reference: Reference,
    /// The zooms compared (the raster's native zoom, gdal2tiles' default maximum, and the
    /// two below; see tests/fixtures/golden/README.md).
    pub zooms: (u32, u32),
}

impl Raster {
    /// Make the raster as `dir/name`.
    pub fn make_in(&self, dir: &Path) -> PathBuf {
        let path = dir.join(self.name);
        match self.make {
            Make::Shared(file) => {
                std::fs::copy(fixture(file), &path).unwrap();
            }
            Make::Gdal(make) => make(&path),
        }
        path
    }

    /// The input of gdal2tiles for the reference tiles, made next to `source`.
    pub fn reference_input(&self, source: &Path, dir: &Path) -> PathBuf {
        let args: &[&str] = match self.reference {
            Reference::Source => return source.to_path_buf(),
            Reference::ExpandRgba => &["-of", "vrt", "-expand", "rgba"],
            Reference::ScaleToByte => &["-of", "VRT", "-ot", "Byte", "-scale"],
        };
        let vrt = dir.join("temp.vrt");
        let mut all: Vec<&str> = vec!["-q"];
        all.extend(args);
        all.extend([path_str(source), path_str(&vrt)]);
        gdal_tool("gdal_translate", all);
        vrt
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

fn shared(name: &'static str) -> String {
    fixture(name).to_str().unwrap().to_owned()
}

/// labels.tif (classes 0-2, nodata 255) with a colour table attached by `gdalattachpct.py`
/// (`tests/fixtures/golden/labels_palette.txt`; entry 255 is transparent).
pub fn palette(dst: &Path) {
    let table = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/labels_palette.txt");
    gdal_tool(
        "gdalattachpct.py",
        [path_str(&table), &shared("labels.tif"), path_str(dst)],
    );
}

/// A hill shade of dem-hills.tiff (`gdaldem hillshade -compute_edges`, nodata 0) whose nodata
/// is moved to 255 by `gdal_calc.py` (valid 255 become 254).
pub fn hillshade_nodata_255(dst: &Path) {
    let dir = dst.parent().unwrap();
    let shade = dir.join("hillshade_nodata0.tif");
    gdal_tool(
        "gdaldem",
        [
            "hillshade",
            "-q",
            "-compute_edges",
            &shared("dem-hills.tiff"),
            path_str(&shade),
        ],
    );
    let outfile = format!("--outfile={}", path_str(dst));
    gdal_tool(
        "gdal_calc.py",
        [
            "--quiet",
            "-A",
            path_str(&shade),
            "--calc=numpy.where(A==0,255,numpy.minimum(A,254))",
            "--NoDataValue=255",
            "--type=Byte",
            &outfile,
        ],
    );
    std::fs::remove_file(shade).unwrap();
}

/// RGB.byte.tif's three bands plus its nodata mask as an alpha band, downsampled to 25 % with
/// `average` by `gdal_translate`, so the alpha has soft edges (about 11 000 pixels between 1
/// and 254); no nodata.
pub fn rgba_soft_alpha(dst: &Path) {
    gdal_tool(
        "gdal_translate",
        [
            "-q",
            "-b",
            "1",
            "-b",
            "2",
            "-b",
            "3",
            "-b",
            "mask",
            "-colorinterp",
            "red,green,blue,alpha",
            "-co",
            "ALPHA=YES",
            "-a_nodata",
            "none",
            "-outsize",
            "25%",
            "25%",
            "-r",
            "average",
            &shared("RGB.byte.tif"),
            path_str(dst),
        ],
    );
}

/// A global EPSG:4326 raster reaching the poles: world.byte.tif (latitudes ±75) stretched to
/// -180 90 180 -90 by `gdal_translate -a_ullr`.
pub fn global_4326(dst: &Path) {
    gdal_tool(
        "gdal_translate",
        [
            "-q",
            "-a_ullr",
            "-180",
            "90",
            "180",
            "-90",
            &shared("world.byte.tif"),
            path_str(dst),
        ],
    );
}

/// RGB.byte.tif warped by `gdalwarp` to EPSG:3857 with the non-square 200.32 x 199.94 m
/// pixels of the issue (nodata 0 kept).
pub fn rgb_3857(dst: &Path) {
    gdal_tool(
        "gdalwarp",
        [
            "-q",
            "-t_srs",
            "EPSG:3857",
            "-tr",
            "200.32",
            "199.94",
            "-co",
            "COMPRESS=DEFLATE",
            &shared("RGB.byte.tif"),
            path_str(dst),
        ],
    );
}

/// See [`services::testing::make_geostationary`].
pub fn geostationary(dst: &Path) {
    services::testing::make_geostationary(dst);
}
