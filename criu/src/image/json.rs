//! crit JSON (filled below)
