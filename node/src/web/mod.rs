//! The web console's pages and the pieces they are built from.

pub mod card;
pub mod holder_text;
