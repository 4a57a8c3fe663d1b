//! What a run reports: JSON objects, plain-text tables and lines, SVG plots.

pub mod json;
pub mod svg;
pub mod text;
