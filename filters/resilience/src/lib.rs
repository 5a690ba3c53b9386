//! portcullis-resilience
