//! Controlled self-improvement (issue 14, in progress): a worker that
//! proposes challenger packs and never promotes them. So far:
//! [`scope`], what a proposal may change, checked before anything is
//! evaluated.

pub mod scope;
