pub mod diagnostic;
pub mod gitrepo;
pub mod schema;
pub mod yaml;
