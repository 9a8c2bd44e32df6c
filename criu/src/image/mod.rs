//! (filled by its own work)
