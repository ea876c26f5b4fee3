//! XYZ tiling of a raster: Web Mercator arithmetic, warping, pixels, and the `tiled_raster`
//! task handlers.

pub mod mercator;
pub mod render;
pub mod warp;
pub mod publish;
pub mod tasks;
