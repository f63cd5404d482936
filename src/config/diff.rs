//! Pure diff of two configs: which services to start, stop, restart or update in place.
