pub mod pending;
pub mod plan;
pub mod scheduler;
pub mod store;
