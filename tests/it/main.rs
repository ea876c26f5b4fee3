//! Tessera's integration tests: one binary, one module per area.
//!
//! - `architecture`: the crate layering and who may name which SDK (docs/ARCHITECTURE.md)
//! - `jcs`: RFC 8785 vectors and ID golden values
//! - `scheduling`: property test of the runtime over random DAGs (in-memory backend)
//! - `cli`: the `tessera` binary on a real SQLite file
//! - `crash`: SIGKILL of a worker process mid-job loses nothing (SQLite and Azure)
//! - `chaos`: three workers SIGKILLed again and again; the event log stays complete
//! - `azure`: the Azure backend on Azurite: CLI, bad configuration, storage restart
//! - `azure_conformance`: the backend conformance suite on the Azure backend (Azurite)
//! - `http`: `tessera serve` with a real HTTP client: submit, errors, paging, auth, SSE, drain
//! - `functions`: `tessera functions` under a protocol-level Functions host (`test_support::functions_host`) on Azurite
//! - `keyless`: Entra ID from a fake App Service token endpoint to a fake Blob endpoint; `--server` with a function key
//! - `infra`: the Bicep deployment (parsed with pycep-parser) against the code's names, settings and roles; checkov over infra/
//! - `geo`: `list_container`, `cog_conversion` (checked by GDAL's COG validator), `sync_container`
//! - `tiles`: `tiled_raster` against `gdal2tiles.py`, bad input
//! - `golden`: the golden corpus (issue 13): tiles against `gdal2tiles.py`, STAC against
//!   `gdalinfo -json`, raster by raster

mod architecture;
mod azure;
mod azure_conformance;
mod chaos;
mod cli;
mod crash;
mod dashboard;
mod functions;
mod geo;
mod golden;
mod http;
mod infra;
mod jcs;
mod keyless;
mod scheduling;
mod support;
mod tiles;
