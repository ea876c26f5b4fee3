//! XYZ tiling of a raster: Web Mercator arithmetic, warping, pixels, and the `tiled_raster`
//! task handlers.

pub mod mercator;
pub mod publish;
pub mod render;
pub mod tasks;
pub mod warp;
